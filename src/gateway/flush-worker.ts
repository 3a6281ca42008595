/**
 * The gateway's writer thread. Usage counters and batched refusal rows are committed here, on a
 * store connection of its own, because a commit with synchronous=FULL waits for several fsyncs
 * (tens of milliseconds on a busy disk) and would otherwise stall every request in flight once a
 * second. Counters and rows of one batch commit together in one transaction; then audit_log/HEAD
 * moves to the new head, as after every CLI transaction.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { appendAudit } from '../audit/writer.js';
import { publishHead } from '../audit/head.js';
import { systemClock } from '../kernel/clock.js';
import type { SideBatch } from './side-writes.js';
import type { UsageRow } from '../store/store.js';
import type { PeriodTotals, QuotaMark } from './quota-tracker.js';

export interface FlushBatch {
  /** the sink that sent it, and its number there: a batch is applied once however often it is sent */
  writer: string;
  seq: number;
  counts: [string, number, number][];
  rows: { action: string; actor: string; source_ip: string; key_id: string | null; details: Record<string, unknown> }[];
  /** anomaly and alert rows, learned key sources (side-writes.ts) */
  side?: SideBatch | null;
  /** counters per key, hour and model (usage-meter.ts) */
  hourly: UsageRow[];
  /** quota levels crossed (quota-tracker.ts): one audit row each, the first time any gateway sends it */
  marks: QuotaMark[];
  /** periods whose per-key totals to read back after this batch, in its transaction (quota-tracker.ts) */
  totals: PeriodTotals[];
}

const { home, auditKey } = workerData as { home: string; auditKey: Uint8Array };
const key = Buffer.from(auditKey);
// Opened on the first batch, and again after a batch found it unusable: a store that is unreachable
// when the thread starts, or goes away later, fails those batches (kept by the sink) rather than the thread.
let opened: Promise<Store> | null = null;
const store = (): Promise<Store> =>
  (opened ??= openStore(home).catch((e) => {
    opened = null;
    throw e;
  }));
const forget = async () => {
  const s = opened;
  opened = null;
  await (await s?.catch(() => null))?.close().catch(() => {});
};

parentPort!.on('message', async (b: FlushBatch | 'close') => {
  if (b === 'close') {
    await forget();
    key.fill(0);
    parentPort!.postMessage({ closed: true });
    return;
  }
  let wrote = 0;
  const totals: PeriodTotals[] = [];
  try {
    const s = await store();
    const applied = await s.transaction(async (tx) => {
      if (!(await tx.usage.firstApply(b.writer, b.seq, systemClock.now()))) return false;
      for (const [id, n, last] of b.counts) await tx.usage.bump(id, n, last);
      for (const r of b.rows) await appendAudit(tx, r, systemClock, key);
      if (b.side?.sources.length) await tx.keySources.learn(b.side.sources);
      for (const r of b.side?.rows ?? []) await appendAudit(tx, r, systemClock, key);
      if (b.hourly.length) await tx.usage.addHourly(b.hourly);
      for (const m of b.marks) {
        if (!(await tx.usage.markQuota(m.key_id, m.kind, m.period_start, m.level, systemClock.now()))) continue;
        await appendAudit(tx, quotaAuditRow(m), systemClock, key);
        wrote++;
      }
      for (const p of b.totals) {
        const rows = [];
        for (const id of p.keys) rows.push(...(await tx.usage.totalsSince(p.start, id)));
        totals.push({ ...p, rows });
      }
      return true;
    });
    if (applied && (b.rows.length || b.side?.rows.length || wrote)) {
      // Like every writer, move audit_log/HEAD after the commit (once per flush), so rows the
      // gateway wrote cannot be cut off the end unnoticed. A failure leaves HEAD behind, not wrong.
      try {
        await publishHead(s, home, key, systemClock.now());
      } catch {
        // the next flush (or any writer) moves it
      }
    }
    parentPort!.postMessage({ seq: b.seq, ok: true, totals });
  } catch (e) {
    // unreachable rather than busy: reconnect on the next batch
    if ((e as { exitCode?: number }).exitCode === 7) await forget();
    parentPort!.postMessage({ seq: b.seq, ok: false, error: (e as Error).message });
  }
});

/** QUOTA_WARNING at 80%, QUOTA_EXCEEDED at 100%. */
function quotaAuditRow(m: QuotaMark) {
  return {
    action: m.level >= 100 ? 'QUOTA_EXCEEDED' : 'QUOTA_WARNING',
    actor: `key:${m.key_id}`,
    source_ip: null,
    key_id: m.key_id,
    details: { kind: m.kind, level: m.level, used: m.used, limit: m.limit, period: m.period, period_start: new Date(m.period_start).toISOString(), resets_at: m.resets_at, via: 'dsk serve' },
  };
}
