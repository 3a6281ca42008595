/**
 * Usage counters and refusal rows on their way to the store. Accepted requests add to an in-memory
 * counter per key; once a second (and on close) the counters and the aggregated refusal rows go to
 * the writer thread (flush-worker.ts), which commits them in one transaction on a connection of
 * its own, so the request path never waits for an fsync.
 *
 * Protocol: each batch carries a sequence number; the worker answers {seq, ok}. A batch that fails
 * (store locked, disk full) is merged back and goes out again with the next one, so counts and
 * rows are kept, not lost. The thread opens the store on its first batch and reopens it after a
 * batch found it unreachable, so an outage fails batches, not the thread. If the thread dies all
 * the same, counting goes on in memory and nothing more is sent.
 */
import { Worker } from 'node:worker_threads';
import type { FlushBatch } from './flush-worker.js';
import { auditRowOf, type AggregatedRow, type RefusalBatch } from './refusals.js';

interface PendingBatch {
  counts: FlushBatch['counts'];
  raw: AggregatedRow[];
  done: () => void;
}

export class UsageSink {
  readonly #usage = new Map<string, { n: number; last: number }>();
  readonly #writer: Worker;
  readonly #pending = new Map<number, PendingBatch>();
  readonly #settled = new Map<number, Promise<void>>();
  readonly #timer: NodeJS.Timeout;
  #seq = 0;
  #dead = false;
  /** the last batch the writer answered failed (or the writer thread died) */
  failing = false;

  constructor(
    homeDir: string,
    auditKey: Buffer,
    private readonly refusals: RefusalBatch,
    flushMs: number,
  ) {
    const workerFile = import.meta.url.endsWith('.ts') ? '../../dist/gateway/flush-worker.js' : './flush-worker.js';
    this.#writer = new Worker(new URL(workerFile, import.meta.url), { workerData: { home: homeDir, auditKey: new Uint8Array(auditKey) } });
    this.#writer.unref();
    this.#writer.on('message', (m: { seq?: number; ok?: boolean }) => this.#settle(m));
    this.#writer.on('error', () => this.#died());
    this.#timer = setInterval(() => void this.flush(), flushMs);
    this.#timer.unref();
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

  #settle(m: { seq?: number; ok?: boolean }): void {
    if (m.seq === undefined) return;
    const b = this.#pending.get(m.seq);
    this.#pending.delete(m.seq);
    if (!b) return;
    this.failing = !m.ok;
    if (!m.ok) {
      this.#restoreCounts(b.counts);
      this.refusals.restore(b.raw);
    }
    b.done();
  }

  #died(): void {
    this.#dead = true;
    this.failing = true;
    for (const [seq, b] of this.#pending) {
      this.#pending.delete(seq);
      this.refusals.restore(b.raw);
      b.done();
    }
  }

  /** Accepted requests not yet written to the store (in memory or in a batch the writer has not answered). */
  get heldRequests(): number {
    let n = 0;
    for (const u of this.#usage.values()) n += u.n;
    for (const b of this.#pending.values()) for (const c of b.counts) n += c[1];
    return n;
  }

  /** Aggregated audit rows not yet written. */
  get heldRows(): number {
    let n = this.refusals.size;
    for (const b of this.#pending.values()) n += b.raw.length;
    return n;
  }

  /** Sends what is pending to the writer; resolves when every batch sent so far is settled. */
  flush(): Promise<void> {
    if (!this.#dead && (this.#usage.size || this.refusals.size)) {
      const counts = [...this.#usage.entries()].map(([id, u]) => [id, u.n, u.last] as [string, number, number]);
      this.#usage.clear();
      const raw = this.refusals.take();
      const rows = raw.map(auditRowOf);
      const seq = ++this.#seq;
      const settled = new Promise<void>((done) => this.#pending.set(seq, { counts, raw, done }));
      this.#settled.set(seq, settled);
      void settled.then(() => this.#settled.delete(seq));
      this.#writer.postMessage({ seq, counts, rows } satisfies FlushBatch);
    }
    return Promise.all([...this.#settled.values()]).then(() => undefined);
  }

  /** Stops the timer; close() or terminate() follows. */
  stop(): void {
    clearInterval(this.#timer);
  }

  /** The last flushes, then the writer closes its connection and the thread ends. */
  async close(): Promise<void> {
    this.stop();
    await this.flush(); // waits for batches already sent; a failed one is merged back …
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
