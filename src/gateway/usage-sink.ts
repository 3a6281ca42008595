/**
 * Usage counters and refusal rows on their way to the store. Accepted requests add to an in-memory
 * counter per key; once a second (and on close) the counters, the aggregated refusal rows, the
 * hourly token counters, quota marks and the monitoring side writes go to the writer thread
 * (flush-worker.ts), which commits them in one transaction on a connection of its own, so the
 * request path never waits for an fsync.
 *
 * Protocol: each batch carries this sink's writer id and a sequence number; the worker answers
 * {seq, ok}. A batch that fails (store locked or unreachable, disk full) is kept as it is and sent
 * again, with the same number, at the next flush, so counts and rows are kept, not lost; and the
 * worker records (writer, seq) in the batch's own transaction (store `flushes`), so a batch whose
 * commit succeeded although its answer was lost (a connection broken at COMMIT) is not applied
 * twice. The thread opens the store on its first batch and reopens it after a batch found it
 * unreachable, so an outage fails batches, not the thread. If the thread dies all the same,
 * counting goes on in memory and nothing more is sent.
 */
import { randomUUID } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import type { FlushBatch } from './flush-worker.js';
import { auditRowOf, type AggregatedRow, type RefusalBatch } from './refusals.js';
import type { SideBatch, SideWrites } from './side-writes.js';
import type { HourlyUsage } from './usage-meter.js';
import type { PeriodTotals, QuotaTracker } from './quota-tracker.js';

interface Batch {
  seq: number;
  counts: FlushBatch['counts'];
  raw: AggregatedRow[];
  side: SideBatch | null;
  hourly: FlushBatch['hourly'];
  marks: FlushBatch['marks'];
}
type PendingBatch = Batch & { done: () => void };

export class UsageSink {
  readonly #usage = new Map<string, { n: number; last: number }>();
  readonly #writer: Worker;
  readonly #pending = new Map<number, PendingBatch>();
  readonly #settled = new Map<number, Promise<void>>();
  readonly #timer: NodeJS.Timeout;
  /** failed batches, resent as they are (same seq): see the protocol above */
  #retry: Batch[] = [];
  /** names this sink's flushes in the store's `flushes` table */
  readonly #writerId = randomUUID();
  #seq = 0;
  #dead = false;
  #side: SideWrites | null = null;
  /** the last batch the writer answered failed (or the writer thread died) */
  failing = false;

  constructor(
    homeDir: string,
    auditKey: Buffer,
    private readonly refusals: RefusalBatch,
    flushMs: number,
    private readonly hourly?: HourlyUsage,
    private readonly quotas?: QuotaTracker,
  ) {
    const workerFile = import.meta.url.endsWith('.ts') ? '../../dist/gateway/flush-worker.js' : './flush-worker.js';
    this.#writer = new Worker(new URL(workerFile, import.meta.url), { workerData: { home: homeDir, auditKey: new Uint8Array(auditKey) } });
    this.#writer.unref();
    this.#writer.on('message', (m: { seq?: number; ok?: boolean; totals?: PeriodTotals[] }) => this.#settle(m));
    this.#writer.on('error', () => this.#died());
    this.#timer = setInterval(() => void this.flush(), flushMs);
    this.#timer.unref();
  }

  /** Other writes to commit with each flush (anomaly and alert rows, learned sources). */
  carry(side: SideWrites): void {
    this.#side = side;
  }

  /** One accepted request of key `keyId` at `nowMs`. */
  count(keyId: string, nowMs: number): void {
    const u = this.#usage.get(keyId);
    if (u) (u.n++, (u.last = nowMs));
    else this.#usage.set(keyId, { n: 1, last: nowMs });
  }

  #restoreCounts(counts: FlushBatch['counts']): void {
    for (const [id, n, last] of counts) {
      const e = this.#usage.get(id);
      this.#usage.set(id, e ? { n: e.n + n, last: Math.max(e.last, last) } : { n, last });
    }
  }

  #settle(m: { seq?: number; ok?: boolean; totals?: PeriodTotals[] }): void {
    if (m.seq === undefined) return;
    const b = this.#pending.get(m.seq);
    this.#pending.delete(m.seq);
    if (!b) return;
    this.failing = !m.ok;
    // A failed batch keeps its number and its quota counts stay "sent" until it commits.
    if (!m.ok) this.#retry.push({ seq: b.seq, counts: b.counts, raw: b.raw, side: b.side, hourly: b.hourly, marks: b.marks });
    else this.quotas?.committed(m.seq, m.totals ?? []);
    b.done();
  }

  #died(): void {
    this.#dead = true;
    this.failing = true;
    for (const [seq, b] of this.#pending) {
      this.#pending.delete(seq);
      this.#retry.push(b);
      b.done();
    }
    // nothing more can be written: keep what was held where /metrics counts it
    for (const b of this.#retry.splice(0)) {
      this.#restoreCounts(b.counts);
      this.refusals.restore(b.raw);
      if (b.side) this.#side?.restore(b.side);
      this.hourly?.restore(b.hourly);
      this.quotas?.restoreMarks(b.marks);
      this.quotas?.failed(b.seq);
    }
  }

  /** Accepted requests not yet written to the store (in memory or in a batch the writer has not answered). */
  get heldRequests(): number {
    let n = 0;
    for (const u of this.#usage.values()) n += u.n;
    for (const b of [...this.#pending.values(), ...this.#retry]) for (const c of b.counts) n += c[1];
    return n;
  }

  /** Aggregated audit rows not yet written. */
  get heldRows(): number {
    let n = this.refusals.size;
    for (const b of [...this.#pending.values(), ...this.#retry]) n += b.raw.length + (b.side?.rows.length ?? 0);
    return n;
  }

  /** Sends what is pending to the writer (failed batches again first); resolves when every batch sent so far is settled. */
  flush(): Promise<void> {
    if (!this.#dead) {
      for (const b of this.#retry.splice(0)) this.#send(b);
      // with quotas, a batch goes out every time even if empty: it reads back the store's totals
      const quotaReads = (this.quotas?.periodsToRead().length ?? 0) > 0;
      if (this.#usage.size || this.refusals.size || this.hourly?.size || this.quotas?.pendingMarks || this.#side?.size || quotaReads) {
        const counts = [...this.#usage.entries()].map(([id, u]) => [id, u.n, u.last] as [string, number, number]);
        this.#usage.clear();
        const seq = ++this.#seq;
        this.quotas?.sent(seq);
        this.#send({ seq, counts, raw: this.refusals.take(), side: this.#side?.take() ?? null, hourly: this.hourly?.take() ?? [], marks: this.quotas?.takeMarks() ?? [] });
      }
    }
    return Promise.all([...this.#settled.values()]).then(() => undefined);
  }

  #send(b: Batch): void {
    const settled = new Promise<void>((done) => this.#pending.set(b.seq, { ...b, done }));
    this.#settled.set(b.seq, settled);
    void settled.then(() => this.#settled.delete(b.seq));
    const totals = this.quotas?.periodsToRead() ?? [];
    this.#writer.postMessage({ writer: this.#writerId, seq: b.seq, counts: b.counts, rows: b.raw.map(auditRowOf), side: b.side, hourly: b.hourly, marks: b.marks, totals } satisfies FlushBatch);
  }

  /** Stops the timer; close() or terminate() follows. */
  stop(): void {
    clearInterval(this.#timer);
  }

  /** The last flushes, then the writer closes its connection and the thread ends. */
  async close(): Promise<void> {
    this.stop();
    await this.flush(); // waits for batches already sent; a failed one is kept …
    await this.flush(); // … and retried once here
    if (!this.#dead)
      await new Promise<void>((r) => {
        this.#writer.once('message', () => r());
        this.#writer.once('error', () => r());
        this.#writer.postMessage('close');
      });
    await this.#writer.terminate();
  }

  /** Ends the thread without flushing (start-up failed: nothing was counted). */
  async terminate(): Promise<void> {
    this.stop();
    await this.#writer.terminate();
  }
}
