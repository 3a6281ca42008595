/**
 * One slice of a parallel `dsk audit verify` (see verifyChainParallel): walks rows (lo, hi] of the
 * chain, trusting the slice's first prev_hash; the parent checks that the slices link up.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openDatabase } from '../store/sqlite.js';
import { chunkedRows, walkChain } from './verify.js';

const { home, lo, hi, key } = workerData as { home: string; lo: number; hi: number; key: Uint8Array | null };
const db = openDatabase(home, { readonly: true });
const auditKey = key ? Buffer.from(key) : null;
try {
  const first = db.prepare('SELECT prev_hash FROM audit.events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT 1').get(lo, hi) as { prev_hash: string } | undefined;
  const w = walkChain({ rows: chunkedRows(db, lo, hi), start: { seq: lo + 1, prev_hash: first?.prev_hash ?? '', from: 'genesis' }, auditKey });
  parentPort!.postMessage({ ...w, first_prev: first?.prev_hash ?? null });
} finally {
  auditKey?.fill(0);
  if (key) key.fill(0);
  db.close();
}
