/**
 * The file side of replacing a software master key, made crash-safe around one store commit.
 *
 *   1. the new fragment set is written to <home>/.master-next/key_fragments (new files only);
 *   2. one transaction re-seals every stored secret, re-MACs the audit chain, revokes every key and
 *      records the new key check value in the store's master state — the commit point;
 *   3. key_fragments is moved aside to .master-old-*, the new set renamed into place, and the old
 *      fragment files overwritten and removed.
 *
 * `completePendingReplacement` runs before every unseal: a staged set whose key check value the
 * store already records was committed, so the swap is finished; a staged set the store does not
 * record was abandoned before the commit and is deleted. The old fragments are destroyed only when
 * the new ones are in place, so at every instant exactly one fragment set opens the store's key.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { homePath } from '../kernel/home-layout.js';
import { readMetadata } from './fragments.js';

export const STAGING_DIR = '.master-next';
const OLD_PREFIX = '.master-old-';

export function stagingFragments(home: string): string {
  return path.join(home, STAGING_DIR, 'key_fragments');
}

/** Overwrites a file with zeros, syncs, and unlinks it. Best effort on copy-on-write filesystems. */
export function destroyFile(p: string): void {
  try {
    const size = fs.statSync(p).size;
    const fd = fs.openSync(p, 'r+');
    try {
      fs.writeSync(fd, Buffer.alloc(size), 0, size, 0);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // gone already, or not writable: still try to unlink
  }
  fs.rmSync(p, { force: true });
}

/** Destroys every fragment file listed in a (moved-aside) fragment directory, then the directory. */
function destroyFragmentDir(dir: string): void {
  try {
    const meta = readMetadata(dir);
    for (const e of meta.fragments) destroyFile(path.isAbsolute(e.file) ? e.file : path.join(dir, e.file));
  } catch {
    // metadata unreadable: destroy what is in the directory
  }
  if (fs.existsSync(dir)) for (const f of fs.readdirSync(dir)) destroyFile(path.join(dir, f));
  fs.rmSync(dir, { recursive: true, force: true });
}

/** Moves the committed new fragment set into place and destroys the old one. Idempotent. */
export function swapFragments(home: string): void {
  const next = stagingFragments(home);
  const live = homePath(home, 'fragments');
  if (fs.existsSync(next)) {
    if (fs.existsSync(live)) fs.renameSync(live, path.join(home, `${OLD_PREFIX}${crypto.randomBytes(4).toString('hex')}`));
    fs.renameSync(next, live);
    fs.rmSync(path.join(home, STAGING_DIR), { recursive: true, force: true });
  }
  for (const d of fs.readdirSync(home)) if (d.startsWith(OLD_PREFIX)) destroyFragmentDir(path.join(home, d));
}

/**
 * Finishes or discards a master replacement a crash interrupted. Call before unsealing, with the
 * key check value the store records for the current master key (null: never replaced).
 */
export function completePendingReplacement(home: string, recordedKcv: string | null): void {
  const staging = path.join(home, STAGING_DIR);
  const hasOld = fs.existsSync(home) && fs.readdirSync(home).some((d) => d.startsWith(OLD_PREFIX));
  if (!fs.existsSync(staging) && !hasOld) return;
  const expected = recordedKcv;
  let stagedKcv: string | null = null;
  try {
    stagedKcv = readMetadata(stagingFragments(home)).key_check_value;
  } catch {
    stagedKcv = null;
  }
  if (stagedKcv && expected === stagedKcv) swapFragments(home);
  else {
    if (fs.existsSync(staging)) destroyFragmentDir(stagingFragments(home));
    fs.rmSync(staging, { recursive: true, force: true });
    if (hasOld) swapFragments(home);
  }
}
