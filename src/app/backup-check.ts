/**
 * The checks a copy of a home passes before it becomes a backup, and before a restore puts it in
 * place: SQLite's integrity check of both databases (the quick form on restore, where the manifest's
 * SHA-256 already proved the bytes equal to the copy the backup checked in full), then the audit chain walked from its start
 * and compared with the copied audit_log/HEAD. Structure only: the MACs need the master key, and
 * neither a backup nor a restore unseals (the first unsealed `dsk audit verify` checks them).
 */
import { IntegrityError } from '../kernel/errors.js';
import { noProgress, type Progress } from '../kernel/progress.js';
import { openStore } from '../store/open.js';
import { checkStoreIntegrity } from '../store/snapshot.js';
import { readHead } from '../audit/head.js';
import { verifyChainParallel } from '../audit/verify.js';
import type { BackupManifest } from './backup-manifest.js';

export async function checkStagedHome(dir: string, opts: { quick?: boolean; progress?: Progress } = {}): Promise<BackupManifest['audit']> {
  const progress = opts.progress ?? noProgress;
  checkStoreIntegrity(dir, { quick: opts.quick });
  const store = await openStore(dir, { readonly: true });
  try {
    const rep = await verifyChainParallel(dir, store, readHead(dir), null, undefined, undefined, (done, total) => progress('check', done, total));
    if (rep.breach)
      throw new IntegrityError('ERR_BACKUP_CHAIN', `the audit chain in the copy is broken at seq ${rep.breach.seq} (${rep.breach.kind}): ${rep.breach.message}`, {
        hint: 'run dsk audit verify on the home it came from and investigate before trusting it',
      });
    return { rows: rep.rows, first_seq: rep.first_seq, last_seq: rep.last_seq, head_hash: rep.head_hash };
  } finally {
    await store.close();
  }
}
