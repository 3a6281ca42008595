/**
 * One slice of a parallel `dsk audit verify` (see verifyChainParallel): walks rows (lo, hi] of the
 * chain, trusting the slice's first prev_hash; the parent checks that the slices link up.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openStore } from '../store/open.js';
import { walkChain } from './verify.js';

const { home, lo, hi, key } = workerData as { home: string; lo: number; hi: number; key: Uint8Array | null };
const store = await openStore(home, { readonly: true });
const auditKey = key ? Buffer.from(key) : null;
try {
  const first = await store.events.firstPrevHash(lo, hi);
  const chunks = (async function* () {
    for await (const c of store.events.chunks(lo, hi)) {
      yield c;
      parentPort!.postMessage({ progress: c.length });
    }
  })();
  const w = await walkChain({ chunks, start: { seq: lo + 1, prev_hash: first ?? '', from: 'genesis' }, auditKey });
  parentPort!.postMessage({ ...w, first_prev: first });
} finally {
  auditKey?.fill(0);
  if (key) key.fill(0);
  await store.close();
}
