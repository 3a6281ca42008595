/**
 * dsk audit archive: move rows older than a date out of the live chain into a verifiable archive
 * file (format: audit/archive.ts), leaving a keyed AUDIT_ARCHIVE checkpoint row.
 *
 * Order of work: verify the live chain; write the archive (fsync, exclusive create); then, in one
 * transaction, check the rows are still the ones written, append AUDIT_ARCHIVE and delete them.
 * A crash before the commit leaves the rows in place and a spare archive file; never a gap.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConflictError, IntegrityError } from '../kernel/errors.js';
import { verifyChain } from '../audit/verify.js';
import { readHead } from '../audit/head.js';
import { writeArchive, type ArchiveResult } from '../audit/archive.js';
import { noProgress, type Progress } from '../kernel/progress.js';
import type { Home } from './home.js';

/** Archives rows older than `before` into the new file `out` (the home must be unsealed: the checkpoint is keyed). */
export async function archiveBefore(h: Home, before: number, out: string, progress: Progress = noProgress): Promise<ArchiveResult> {
  const { auditKey } = h.requireUnsealed();
  const report = await verifyChain(h.store, readHead(h.dir), auditKey, (d, t) => progress('verify', d, t));
  if (report.breach) throw new IntegrityError('ERR_AUDIT_CHAIN', `refusing to archive a broken chain: ${report.breach.message}`, { hint: 'run dsk audit verify and investigate first' });
  const firstSeq = report.first_seq;
  const firstLater = await h.store.events.firstSeqAtOrAfter(new Date(before).toISOString());
  // Archive the longest prefix older than the cutoff (clocks of several writers may disagree a little).
  const lastSeq = firstLater === null ? report.last_seq : firstLater - 1;
  if (firstSeq === null || lastSeq === null || lastSeq < firstSeq) return { archived: 0, file: null, first_seq: null, last_seq: null, last_hash: null, sha256: null, checkpoint_seq: null };
  if (fs.existsSync(out)) throw new ConflictError('ERR_FILE_EXISTS', `${out} already exists`, { hint: 'choose a new file name for each archive' });
  const w = await writeArchive(h.store, { homeId: h.config.home_id, firstSeq, lastSeq, out, auditKey, now: h.env.clock.now(), progress: (d) => progress('archive', d, lastSeq - firstSeq + 1) });
  let checkpoint: number;
  try {
    checkpoint = await h.tx(async (t) => {
      const first = (await t.events.bounds()).first;
      if (first !== firstSeq || (await t.events.hashAt(lastSeq)) !== w.last_hash) throw new ConflictError('ERR_AUDIT_CHANGED', 'the audit log changed while archiving (another archive ran?)', { hint: 'run the archive again' });
      // Append first, so the checkpoint chains onto the newest row even when every row is archived.
      const row = await t.audit({ action: 'AUDIT_ARCHIVE', details: { first_seq: firstSeq, last_seq: lastSeq, first_prev_hash: w.first_prev_hash, last_hash: w.last_hash, rows: w.rows, file: path.basename(out), sha256: w.sha256 } });
      await t.events.deleteThrough(lastSeq);
      return row.seq;
    });
  } catch (e) {
    fs.rmSync(out, { force: true });
    throw e;
  }
  return { archived: w.rows, file: path.resolve(out), first_seq: firstSeq, last_seq: lastSeq, last_hash: w.last_hash, sha256: w.sha256, checkpoint_seq: checkpoint };
}
