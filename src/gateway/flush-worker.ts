/**
 * The gateway's writer thread. Usage counters and batched refusal rows are committed here, on a
 * connection of its own, because a commit with synchronous=FULL waits for several fsyncs (tens of
 * milliseconds on a busy disk) and would otherwise stall every request in flight once a second.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase, inTransaction } from '../store/sqlite.js';
import { AuditWriter } from '../audit/writer.js';
import { systemClock } from '../kernel/clock.js';

export interface FlushBatch {
  seq: number;
  counts: [string, number, number][];
  rows: { action: string; actor: string; source_ip: string; key_id: string | null; details: Record<string, unknown> }[];
}

const { home, auditKey } = workerData as { home: string; auditKey: Uint8Array };
const db = openDatabase(home);
const writer = new AuditWriter(db, systemClock, Buffer.from(auditKey));
const bump = db.prepare('UPDATE keys SET use_count = use_count + ?, last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?');

parentPort!.on('message', (b: FlushBatch | 'close') => {
  if (b === 'close') {
    db.close();
    parentPort!.postMessage({ closed: true });
    return;
  }
  try {
    inTransaction(db, () => {
      for (const [id, n, last] of b.counts) bump.run(n, last, id);
      for (const r of b.rows) writer.append(r);
    });
    parentPort!.postMessage({ seq: b.seq, ok: true });
  } catch (e) {
    parentPort!.postMessage({ seq: b.seq, ok: false, error: (e as Error).message });
  }
});
