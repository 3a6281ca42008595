/**
 * The gateway's writer thread. Usage counters and batched refusal rows are committed here, on a
 * store connection of its own, because a commit with synchronous=FULL waits for several fsyncs
 * (tens of milliseconds on a busy disk) and would otherwise stall every request in flight once a
 * second. Counters and rows of one batch commit together in one transaction; then audit_log/HEAD
 * moves to the new head, as after every CLI transaction.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openStore } from '../store/open.js';
import { appendAudit } from '../audit/writer.js';
import { publishHead } from '../audit/head.js';
import { systemClock } from '../kernel/clock.js';
import type { SideBatch } from './side-writes.js';

export interface FlushBatch {
  seq: number;
  counts: [string, number, number][];
  rows: { action: string; actor: string; source_ip: string; key_id: string | null; details: Record<string, unknown> }[];
  /** anomaly and alert rows, learned key sources (side-writes.ts) */
  side?: SideBatch | null;
}

const { home, auditKey } = workerData as { home: string; auditKey: Uint8Array };
const store = await openStore(home);
const key = Buffer.from(auditKey);

parentPort!.on('message', async (b: FlushBatch | 'close') => {
  if (b === 'close') {
    await store.close();
    key.fill(0);
    parentPort!.postMessage({ closed: true });
    return;
  }
  try {
    await store.transaction(async (tx) => {
      for (const [id, n, last] of b.counts) await tx.usage.bump(id, n, last);
      for (const r of b.rows) await appendAudit(tx, r, systemClock, key);
      if (b.side?.sources.length) await tx.keySources.learn(b.side.sources);
      for (const r of b.side?.rows ?? []) await appendAudit(tx, r, systemClock, key);
    });
    if (b.rows.length || b.side?.rows.length) {
      // Like every writer, move audit_log/HEAD after the commit (once per flush), so rows the
      // gateway wrote cannot be cut off the end unnoticed. A failure leaves HEAD behind, not wrong.
      try {
        await publishHead(store, home, key, systemClock.now());
      } catch {
        // the next flush (or any writer) moves it
      }
    }
    parentPort!.postMessage({ seq: b.seq, ok: true });
  } catch (e) {
    parentPort!.postMessage({ seq: b.seq, ok: false, error: (e as Error).message });
  }
});
