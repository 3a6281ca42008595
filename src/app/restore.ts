/**
 * dsk restore: a backup archive into a new home, all or nothing.
 *
 * The target must not exist (or be an empty directory). The archive is read into a private staging
 * directory beside the target (`.<name>.restore-<random>`, 0700): every entry against the manifest's
 * size and SHA-256, then SQLite's integrity check and the audit chain against the copied HEAD, and
 * dsk.json must belong to the home the manifest names. Only when all of that passes are the files
 * fsynced and the directory renamed into place; any failure (a damaged or truncated archive, a
 * wrong identity, a full disk) removes the staging directory, so the target is never half written.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { IntegrityError, UsageError } from '../kernel/errors.js';
import { fsyncDir, ioError, makeHomeParent } from '../kernel/files.js';
import { homePath } from '../kernel/home-layout.js';
import { noProgress, type Progress } from '../kernel/progress.js';
import { configFromText } from '../store/config-file.js';
import { assertNoHome, openUnsealed, type Env } from './home.js';
import type { UnsealInputs } from '../master/unseal.js';
import { readHead } from '../audit/head.js';
import { verifyChainParallel } from '../audit/verify.js';
import { checkStagedHome } from './backup-check.js';
import { readArchive } from './backup-read.js';
import type { BackupManifest } from './backup-manifest.js';

export interface RestoreOptions {
  archive: string;
  home: string;
  identity: string | null;
  progress?: Progress;
  /** custodians' passphrases or the HSM PIN: the MACs are checked too, before the rename */
  unseal?: { inputs: UnsealInputs; env: Env };
}

export interface RestoreResult {
  home: string;
  home_id: string;
  backend: string;
  created_at: string;
  producer: string;
  encrypted: boolean;
  fragments_included: boolean;
  audit: BackupManifest['audit'];
  /** true when the staging copy was unsealed and every MAC (and HEAD's) checked before the rename */
  macs_checked: boolean;
  authenticated_through: number | null;
  files: string[];
}

/** Checks made before reading the archive: an existing target, a missing archive. */
export function preflightRestore(o: Pick<RestoreOptions, 'archive' | 'home'>): void {
  assertNoHome(path.resolve(o.home));
  try {
    if (!fs.statSync(o.archive).isFile()) throw Object.assign(new Error('not a file'), { code: 'ENOENT' });
  } catch (e) {
    throw ioError(e, o.archive);
  }
}

export async function restoreBackup(o: RestoreOptions): Promise<RestoreResult> {
  const progress = o.progress ?? noProgress;
  const home = path.resolve(o.home);
  preflightRestore({ ...o, home });
  const parent = path.dirname(home);
  const createdParent = makeHomeParent(home);
  const staging = path.join(parent, `.${path.basename(home)}.restore-${crypto.randomBytes(4).toString('hex')}`);
  try {
    try {
      fs.mkdirSync(staging, { mode: 0o700 });
    } catch (e) {
      throw ioError(e, parent);
    }
    const { manifest, encrypted } = await readArchive(o.archive, { identity: o.identity, sink: staging, progress });
    const config = configFromText(fs.readFileSync(homePath(staging, 'config'), 'utf8'), 'dsk.json in the backup');
    if (config.home_id !== manifest.home_id)
      throw new IntegrityError('ERR_BACKUP_DAMAGED', `the backup archive is damaged: its dsk.json belongs to home ${config.home_id}, its manifest to ${manifest.home_id}; nothing was restored`, { hint: 'use another copy of the backup' });
    const audit = await checkStagedHome(staging, { quick: true, progress });
    if (audit.last_seq !== manifest.audit.last_seq || audit.head_hash !== manifest.audit.head_hash)
      throw new IntegrityError('ERR_BACKUP_DAMAGED', `the backup archive is damaged: its audit chain ends at seq ${audit.last_seq}, its manifest says ${manifest.audit.last_seq}; nothing was restored`, { hint: 'use another copy of the backup' });
    const macs = o.unseal ? await checkMacs(staging, o.unseal, progress) : null;
    syncTree(staging);
    if (fs.existsSync(home)) {
      assertNoHome(home);
      fs.rmdirSync(home);
    }
    try {
      fs.renameSync(staging, home);
    } catch (e) {
      throw ioError(e, home);
    }
    fsyncDir(parent);
    return {
      home,
      home_id: manifest.home_id,
      backend: manifest.backend,
      created_at: manifest.created_at,
      producer: manifest.producer,
      encrypted,
      fragments_included: manifest.fragments_included,
      audit,
      macs_checked: macs !== null,
      authenticated_through: macs?.authenticated_through ?? null,
      files: manifest.files.map((f) => f.path),
    };
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    if (createdParent) fs.rmSync(createdParent, { recursive: true, force: true });
    throw e;
  }
}

/**
 * Unseals the staging copy (the same custodians or token as the original home) and walks the chain
 * with the audit key: a row or HEAD rewritten by someone without the key (hashes recomputed, so
 * the structure check passed) is refused here, before anything is put in place.
 */
async function checkMacs(staging: string, u: NonNullable<RestoreOptions['unseal']>, progress: Progress): Promise<{ authenticated_through: number | null }> {
  const h = await openUnsealed(staging, u.env, u.inputs);
  try {
    const rep = await verifyChainParallel(staging, h.store, readHead(staging), h.auditKey, undefined, undefined, (d, t) => progress('verify', d, t));
    if (rep.breach)
      throw new IntegrityError('ERR_BACKUP_CHAIN', `the audit chain in the backup is broken at seq ${rep.breach.seq} (${rep.breach.kind}): ${rep.breach.message}; nothing was restored`, { hint: 'use another copy of the backup' });
    return { authenticated_through: rep.authenticated_through };
  } finally {
    await h.close();
  }
}

/** The restored directories are fsynced before the rename makes them the home (files were fsynced as written). */
function syncTree(dir: string): void {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) syncTree(path.join(dir, e.name));
  fsyncDir(dir);
}
