/**
 * Shamir fragments of a 256-bit master key, each sealed for one custodian.
 *
 * Splitting and combining use `shamir-secret-sharing` (Privy; audited by Cure53 and Zellic; GF(2^8),
 * share layout {y1..y32, x} as in Vault). We add what it leaves to the caller: integrity of each
 * fragment (AES-256-GCM), binding to store, position and threshold (GCM associated data), and a key
 * check value for the rebuilt key.
 *
 * KDF salt: one random salt per store, shared by its fragments. Each passphrase then costs one KDF
 * run and can be tried against every fragment with a cheap GCM check, so custodians may present
 * their passphrases in any order. The trade-off: an attacker holding all fragments tests one guess
 * against all N at once (at most N-fold speed-up); custodian passphrases must be distinct, which
 * init enforces.
 */
import fs from 'node:fs';
import path from 'node:path';
import { split, combine } from 'shamir-secret-sharing';
import { AuthError, IntegrityError, NotFoundError, UsageError } from '../kernel/errors.js';
import { constantTimeEqual, open, seal, sha256Hex, wipe } from '../kernel/crypto.js';
import { readTextIfExists, writePrivateFile } from '../kernel/files.js';
import { checkKdfParams, deriveKek, type KdfParams } from './kdf.js';

export const METADATA_FORMAT = 'dsk-fragments/1';
export const FRAGMENT_FORMAT = 'dsk-fragment/1';
export const MASTER_KEY_BYTES = 32;
export const MIN_PASSPHRASE_LENGTH = 8;

export interface FragmentEntry {
  index: number;
  file: string; // absolute, or relative to the key_fragments directory
  sha256: string;
}

export interface FragmentMetadata {
  format: typeof METADATA_FORMAT;
  store_id: string;
  threshold: number;
  shares: number;
  kdf: KdfParams;
  key_check_value: string;
  created_at: string;
  fragments: FragmentEntry[];
}

interface FragmentFile {
  format: typeof FRAGMENT_FORMAT;
  store_id: string;
  index: number;
  threshold: number;
  shares: number;
  sealed: string;
}

export interface Passphrase {
  /** Where it came from, for error messages: "file /path" or "prompt #2". Never the passphrase. */
  source: string;
  value: Buffer;
}

function aad(storeId: string, index: number, threshold: number, shares: number): Buffer {
  return Buffer.from(`${FRAGMENT_FORMAT}\0${storeId}\0${index}\0${threshold}\0${shares}`);
}

/**
 * The directories fragments are written to (init) or also looked for in (unseal), resolved. Each
 * must be an existing directory: a mistyped path is reported before any custodian is asked for a
 * passphrase, rather than surfacing later as missing fragments.
 */
export function assertFragmentDirs(dirs: readonly string[], purpose: 'write' | 'read'): string[] {
  return dirs.map((d) => {
    const abs = path.resolve(d);
    let isDir = false;
    try {
      isDir = fs.statSync(abs).isDirectory();
    } catch {
      // missing or unreadable: refused below like a file in its place
    }
    if (!isDir)
      throw new UsageError('ERR_FRAGMENT_DIR', `fragment directory ${d} is not a directory`, { hint: purpose === 'write' ? 'create it first (mode 0700)' : 'give the directory that now holds the fragments' });
    return abs;
  });
}

export function validateSplit(shares: number, threshold: number): void {
  if (!Number.isInteger(shares) || shares < 2 || shares > 255) throw new UsageError('ERR_SHARES', `shares must be between 2 and 255, got ${shares}`);
  if (!Number.isInteger(threshold) || threshold < 2 || threshold > shares)
    throw new UsageError('ERR_THRESHOLD', `threshold must be between 2 and the number of shares (${shares}), got ${threshold}`);
}

export function validatePassphrases(list: Passphrase[], shares: number): void {
  if (list.length !== shares)
    throw new UsageError('ERR_PASSPHRASE_COUNT', `need ${shares} custodian passphrases (one per fragment), got ${list.length}`, { hint: 'give one passphrase per custodian' });
  list.forEach((p, i) => {
    if (p.value.length < MIN_PASSPHRASE_LENGTH)
      throw new UsageError('ERR_PASSPHRASE_SHORT', `passphrase #${i + 1} (${p.source}) is shorter than ${MIN_PASSPHRASE_LENGTH} characters`);
    for (let j = 0; j < i; j++)
      if (constantTimeEqual(p.value, list[j].value))
        throw new UsageError('ERR_PASSPHRASE_DUPLICATE', `custodians #${j + 1} and #${i + 1} have the same passphrase; each custodian needs their own`);
  });
}

/**
 * Splits `masterKey` and writes one sealed fragment per custodian. `dirs` receive fragments
 * round-robin; entries are recorded relative to `fragmentsDir` when they live there.
 * Returns the written paths (for clean-up by the caller on failure) and the entries.
 */
export async function writeFragments(opts: {
  masterKey: Buffer;
  storeId: string;
  threshold: number;
  passphrases: Passphrase[];
  kdf: KdfParams;
  fragmentsDir: string;
  dirs: string[];
  written: string[];
}): Promise<FragmentEntry[]> {
  const { masterKey, storeId, threshold, passphrases, kdf, fragmentsDir, dirs, written } = opts;
  const shares = passphrases.length;
  const parts = await split(new Uint8Array(masterKey), shares, threshold);
  const keks = await Promise.all(passphrases.map((p) => deriveKek(p.value, kdf)));
  const entries: FragmentEntry[] = [];
  try {
    for (let i = 0; i < shares; i++) {
      const index = i + 1;
      const dir = dirs[i % dirs.length];
      const file: FragmentFile = {
        format: FRAGMENT_FORMAT,
        store_id: storeId,
        index,
        threshold,
        shares,
        sealed: seal(keks[i], Buffer.from(parts[i]), aad(storeId, index, threshold, shares)).toString('base64'),
      };
      const text = JSON.stringify(file, null, 2) + '\n';
      const dest = path.join(dir, `frag${index}.enc`);
      writePrivateFile(dest, text, { exclusive: true });
      written.push(dest);
      const rel = path.resolve(dir) === path.resolve(fragmentsDir) ? path.basename(dest) : path.resolve(dest);
      entries.push({ index, file: rel, sha256: sha256Hex(text) });
    }
  } finally {
    wipe(...keks, ...parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength)));
  }
  return entries;
}

export function readMetadata(fragmentsDir: string): FragmentMetadata {
  const p = path.join(fragmentsDir, 'metadata.json');
  const text = readTextIfExists(p);
  if (text == null) throw new NotFoundError('ERR_NO_METADATA', `${p} not found`, { hint: 'is this a home created with the software backend or with recovery fragments?' });
  let m: FragmentMetadata;
  try {
    m = JSON.parse(text);
  } catch {
    throw new IntegrityError('ERR_METADATA', `${p} is damaged: not valid JSON`, { hint: 'restore it from a backup of the home' });
  }
  if (m === null || typeof m !== 'object' || m.format !== METADATA_FORMAT || typeof m.store_id !== 'string' || !Array.isArray(m.fragments))
    throw new IntegrityError('ERR_METADATA', `${p} is damaged: not a dsk fragment metadata file`, { hint: 'restore it from a backup of the home' });
  if (!Number.isInteger(m.threshold) || !Number.isInteger(m.shares) || m.threshold < 2 || m.threshold > m.shares || m.fragments.length !== m.shares)
    throw new IntegrityError('ERR_METADATA', `${p}: threshold/shares are inconsistent`, { hint: 'restore it from a backup of the home' });
  const badEntry = m.fragments.findIndex((e) => e === null || typeof e !== 'object' || typeof e.file !== 'string' || !Number.isInteger(e.index) || typeof e.sha256 !== 'string');
  if (badEntry !== -1 || typeof m.key_check_value !== 'string')
    throw new IntegrityError('ERR_METADATA', `${p} is damaged: ${badEntry !== -1 ? `fragment entry ${badEntry + 1} is malformed` : 'key_check_value is missing'}`, { hint: 'restore it from a backup of the home' });
  m.kdf = checkKdfParams(m.kdf, p);
  return m;
}

interface LoadedFragment {
  index: number;
  path: string;
  sealed: Buffer;
}

/** Reads the fragment files, checking each against metadata. Returns usable ones and problems. */
function loadFragments(meta: FragmentMetadata, fragmentsDir: string, extraDirs: string[]) {
  const usable: LoadedFragment[] = [];
  const problems: IntegrityError[] = [];
  const missing: string[] = [];
  for (const entry of meta.fragments) {
    const candidates = [path.isAbsolute(entry.file) ? entry.file : path.join(fragmentsDir, entry.file), ...extraDirs.map((d) => path.join(d, `frag${entry.index}.enc`))];
    let found = false;
    for (const p of candidates) {
      const text = readTextIfExists(p);
      if (text == null) continue;
      found = true;
      if (!constantTimeEqual(sha256Hex(text), entry.sha256)) {
        problems.push(new IntegrityError('ERR_FRAGMENT_TAMPERED', `fragment ${p} does not match its checksum in metadata.json: it was modified or replaced`, { hint: 'restore this fragment from its custodian or a backup' }));
        continue;
      }
      let f: FragmentFile;
      try {
        f = JSON.parse(text);
      } catch {
        problems.push(new IntegrityError('ERR_FRAGMENT_TAMPERED', `fragment ${p} is not valid JSON`));
        continue;
      }
      if (f.store_id !== meta.store_id) {
        problems.push(new IntegrityError('ERR_FRAGMENT_FOREIGN', `fragment ${p} belongs to another store (${String(f.store_id).slice(0, 12)}…)`));
        continue;
      }
      if (f.index !== entry.index || f.threshold !== meta.threshold || f.shares !== meta.shares) {
        problems.push(new IntegrityError('ERR_FRAGMENT_POSITION', `fragment ${p} is fragment #${f.index} of ${f.threshold}-of-${f.shares}, expected #${entry.index} of ${meta.threshold}-of-${meta.shares}`));
        continue;
      }
      usable.push({ index: entry.index, path: p, sealed: Buffer.from(String(f.sealed), 'base64') });
      break;
    }
    if (!found) missing.push(candidates[0]);
  }
  return { usable, problems, missing };
}

/**
 * Which fragment files are present and intact, without any passphrase (dsk doctor): each one's
 * checksum, store and position are checked as unsealing would check them.
 */
export function fragmentFileHealth(meta: FragmentMetadata, fragmentsDir: string): { intact: number[]; problems: string[]; missing: string[] } {
  const { usable, problems, missing } = loadFragments(meta, fragmentsDir, []);
  return { intact: usable.map((u) => u.index), problems: problems.map((p) => p.message), missing };
}

/**
 * Rebuilds the master key from any `threshold` fragments. Passphrases may come in any order.
 * The caller checks the result against the key check value.
 */
export async function openFragments(meta: FragmentMetadata, fragmentsDir: string, passphrases: Passphrase[], extraDirs: string[] = []): Promise<Buffer> {
  const { usable, problems, missing } = loadFragments(meta, fragmentsDir, extraDirs);
  if (passphrases.length === 0)
    throw new AuthError('ERR_NO_PASSPHRASE', `unsealing needs ${meta.threshold} custodian passphrases and none was given`, { hint: `${meta.threshold} of ${meta.shares} custodians must each give their passphrase` });
  const keks = await Promise.all(passphrases.map((p) => deriveKek(p.value, meta.kdf)));
  const opened = new Map<number, { share: Buffer; by: number }>();
  const failures: string[] = [];
  try {
    for (let j = 0; j < passphrases.length; j++) {
      let hit = false;
      for (const frag of usable) {
        const share = open(keks[j], frag.sealed, aad(meta.store_id, frag.index, meta.threshold, meta.shares));
        if (!share) continue;
        hit = true;
        const prior = opened.get(frag.index);
        if (prior) {
          wipe(share);
          throw new AuthError('ERR_DUPLICATE_FRAGMENT', `passphrases #${prior.by + 1} and #${j + 1} (${passphrases[j].source}) both open fragment #${frag.index}; each must be a different custodian's`, { hint: 'remove the duplicate and add another custodian\'s passphrase' });
        }
        opened.set(frag.index, { share, by: j });
        break;
      }
      if (!hit) failures.push(`#${j + 1} (${passphrases[j].source})`);
    }
    if (opened.size < meta.threshold) {
      if (problems.length) throw problems[0];
      // With fragment files missing, a passphrase that opens nothing may be right but its fragment absent.
      const why = !failures.length
        ? `only ${opened.size} of the ${meta.threshold} needed fragments opened`
        : missing.length
          ? `${failures.join(', ')} opens none of the fragments present (a wrong passphrase, or its fragment is missing)`
          : `wrong passphrase: ${failures.join(', ')} opens none of the fragments`;
      if (!missing.length) throw new AuthError('ERR_UNSEAL', `cannot unseal: ${why}`, { hint: `${meta.threshold} of ${meta.shares} custodians must each give their passphrase` });
      // The cause says why the passphrases fell short, so a caller can point at where fragments are looked for.
      const cause = new NotFoundError('ERR_FRAGMENT_MISSING', `missing fragment files: ${missing.join(', ')}`);
      throw new AuthError('ERR_UNSEAL', `cannot unseal: ${why}; ${cause.message}`, { hint: "name the directory where the missing fragments are now, or add another custodian's passphrase", cause });
    }
    const shares = [...opened.values()].slice(0, meta.threshold).map((o) => new Uint8Array(o.share));
    const key = Buffer.from(await combine(shares));
    for (const s of shares) s.fill(0);
    if (key.length !== MASTER_KEY_BYTES) throw new IntegrityError('ERR_FRAGMENT_TAMPERED', 'rebuilt key has the wrong length: fragments are inconsistent');
    return key;
  } finally {
    for (const o of opened.values()) wipe(o.share);
    wipe(...keks);
  }
}
