/**
 * Reading a backup archive as a stream: decrypt when it is an age file, then every tar entry
 * against the manifest (first entry): only the paths it lists, each exactly once, each with its
 * size and SHA-256, none missing, and the end-of-archive marker present. With a `sink` directory
 * each file is also written there (0600, directories 0700); without one the archive is only checked.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { AuthError, IntegrityError } from '../kernel/errors.js';
import { ioError } from '../kernel/files.js';
import { untar } from '../kernel/tar.js';
import { decryptStream, isAgeFile } from '../kernel/age.js';
import { noProgress, type Progress } from '../kernel/progress.js';
import { MANIFEST_MAX_BYTES, MANIFEST_NAME, parseManifest, type BackupManifest } from './backup-manifest.js';

export interface ReadOptions {
  /** the text of an age identity file, for an encrypted archive */
  identity: string | null;
  /** write each file under this directory (a restore's staging directory) */
  sink: string | null;
  progress?: Progress;
}

function bad(what: string): IntegrityError {
  return new IntegrityError('ERR_BACKUP_DAMAGED', `the backup archive is damaged: ${what}; nothing was restored`, { hint: 'use another copy of the backup' });
}

/** Whether the file is age-encrypted (its first line is age's). */
export function archiveIsEncrypted(file: string): boolean {
  const head = Buffer.alloc(32);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw ioError(e, file);
  }
  try {
    const n = fs.readSync(fd, head, 0, head.length, 0);
    return isAgeFile(head.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
}

export async function readArchive(file: string, o: ReadOptions): Promise<{ manifest: BackupManifest; encrypted: boolean; sha256: string }> {
  const progress = o.progress ?? noProgress;
  const encrypted = archiveIsEncrypted(file);
  if (encrypted && o.identity === null)
    throw new AuthError('ERR_BACKUP_ENCRYPTED', `${file} is encrypted (age) and no identity was given`, { hint: 'give the age identity file whose public key the backup was encrypted to' });
  const size = fs.statSync(file).size;
  let read = 0;
  const whole = crypto.createHash('sha256');
  const raw = (async function* () {
    for await (const c of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
      whole.update(c as Buffer);
      read += (c as Buffer).length;
      progress('read', read, size);
      yield c as Buffer;
    }
  })();
  const bytes = encrypted ? decryptStream(o.identity!, raw) : raw;
  let manifest: BackupManifest | null = null;
  const pending = new Map<string, { size: number; sha256: string }>();
  for await (const e of untar(bytes)) {
    if (!manifest) {
      if (e.name !== MANIFEST_NAME) throw bad(`its first entry is ${JSON.stringify(e.name)}, not the manifest (${MANIFEST_NAME})`);
      if (e.size > MANIFEST_MAX_BYTES) throw bad('its manifest is too large');
      const parts: Buffer[] = [];
      for await (const c of e.body) parts.push(c);
      manifest = parseManifest(Buffer.concat(parts).toString('utf8'));
      for (const f of manifest.files) pending.set(f.path, f);
      continue;
    }
    const want = pending.get(e.name);
    if (!want) throw bad(`it holds ${JSON.stringify(e.name)}, which its manifest does not list (or lists once)`);
    pending.delete(e.name);
    if (e.size !== want.size) throw bad(`${e.name} is ${e.size} bytes, the manifest says ${want.size}`);
    const hash = crypto.createHash('sha256');
    const fd = o.sink ? openSinkFile(o.sink, e.name) : null;
    try {
      for await (const c of e.body) {
        hash.update(c);
        if (fd !== null) writeFull(fd, c, path.join(o.sink!, e.name));
      }
      if (fd !== null) fs.fsyncSync(fd);
    } finally {
      if (fd !== null) fs.closeSync(fd);
    }
    if (hash.digest('hex') !== want.sha256) throw bad(`${e.name} does not match its SHA-256 in the manifest`);
  }
  if (!manifest) throw bad('it holds no manifest');
  if (pending.size) throw bad(`${[...pending.keys()].join(', ')} ${pending.size === 1 ? 'is' : 'are'} missing (truncated?)`);
  return { manifest, encrypted, sha256: whole.digest('hex') };
}

function openSinkFile(sink: string, rel: string): number {
  const p = path.join(sink, ...rel.split('/'));
  try {
    fs.mkdirSync(path.dirname(p), { recursive: true, mode: 0o700 });
    return fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  } catch (e) {
    throw ioError(e, p);
  }
}

function writeFull(fd: number, b: Buffer, file: string): void {
  try {
    for (let off = 0; off < b.length; ) off += fs.writeSync(fd, b, off, b.length - off);
  } catch (e) {
    throw ioError(e, file);
  }
}
