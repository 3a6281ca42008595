/**
 * The only module that writes files holding anything sensitive. Every write is: create a temporary
 * file with O_EXCL and mode 0600 in the destination directory, write, fsync, then rename (or link,
 * when the destination must not exist) so a reader never sees a half-written file.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { ConflictError, IntegrityError, NotFoundError, UnavailableError, UsageError } from './errors.js';

export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

/** `.<name>.<pid>-<random>.tmp` beside the destination: the pid lets a later run tell a leftover from a live write. */
function tmpName(dest: string): string {
  return path.join(path.dirname(dest), `.${path.basename(dest)}.${process.pid}-${crypto.randomBytes(6).toString('hex')}.tmp`);
}

const TMP_WITH_PID = /^\..+\.(\d+)-[0-9a-f]{12}\.tmp$/;
/** The name older dsk releases used, without the writer's pid. */
const TMP_LEGACY = /^\..+\.[0-9a-f]{12}\.tmp$/;
/** A legacy temporary file this old cannot belong to a write in progress (writes take milliseconds). */
const LEGACY_TMP_AGE_MS = 10 * 60_000;

export function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Removes temporary files that writePrivateFile left in `dir` when its process was killed between
 * creating and renaming them (kill -9, power cut): those of a dead pid, and unnamed ones older than
 * ten minutes. A temporary file of a live process is a write in progress and stays. Returns the
 * names removed. Best effort: a file that cannot be removed is left for the next run.
 */
export function removeLeftoverTempFiles(dir: string, now = Date.now()): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const n of names) {
    const m = TMP_WITH_PID.exec(n);
    let stale = false;
    if (m) stale = !pidAlive(Number(m[1]));
    else if (TMP_LEGACY.test(n)) {
      try {
        stale = now - fs.lstatSync(path.join(dir, n)).mtimeMs > LEGACY_TMP_AGE_MS;
      } catch {
        stale = false;
      }
    }
    if (!stale) continue;
    try {
      fs.unlinkSync(path.join(dir, n));
      removed.push(n);
    } catch {
      // read-only home, or removed by another run: the next run tries again
    }
  }
  return removed;
}

function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  }
}

/**
 * Atomically writes `data` to `dest` with mode 0600. `exclusive`: fail (exit 6) if dest exists.
 * `syncDir: false` skips the directory fsync: the rename may then be lost in a power cut (the old
 * file stays), but the new content is on disk before it becomes visible, so it is never torn.
 */
export function writePrivateFile(dest: string, data: string | Buffer, opts: { exclusive?: boolean; syncDir?: boolean } = {}): void {
  const tmp = tmpName(dest);
  let fd: number;
  try {
    fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, FILE_MODE);
  } catch (e) {
    throw ioError(e, path.dirname(dest));
  }
  try {
    writeAll(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fs.fsyncSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw ioError(e, dest);
  }
  fs.closeSync(fd);
  try {
    if (opts.exclusive) {
      fs.linkSync(tmp, dest);
      fs.unlinkSync(tmp);
    } else {
      fs.renameSync(tmp, dest);
    }
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    if ((e as NodeJS.ErrnoException).code === 'EEXIST')
      throw new ConflictError('ERR_FILE_EXISTS', `${dest} already exists`, { hint: 'choose another path or remove the file first' });
    throw ioError(e, dest);
  }
  if (opts.syncDir !== false) fsyncDir(path.dirname(dest));
}

/**
 * writePrivateFile for content that does not fit in memory (a backup archive): the same temporary
 * name, O_EXCL 0600, full writes, fsync and rename (or link when `exclusive`). Returns the bytes
 * written and their SHA-256. On any failure (ENOSPC half-way) the temporary file is removed.
 */
export async function writePrivateStream(dest: string, src: AsyncIterable<Uint8Array>, opts: { exclusive?: boolean } = {}): Promise<{ bytes: number; sha256: string }> {
  const tmp = tmpName(dest);
  let fd: number;
  try {
    fd = fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, FILE_MODE);
  } catch (e) {
    throw ioError(e, path.dirname(dest));
  }
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  try {
    try {
      for await (const c of src) {
        const b = Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.byteLength);
        writeAll(fd, b);
        hash.update(b);
        bytes += b.length;
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (opts.exclusive) {
      fs.linkSync(tmp, dest);
      fs.unlinkSync(tmp);
    } else fs.renameSync(tmp, dest);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    if ((e as NodeJS.ErrnoException).code === 'EEXIST')
      throw new ConflictError('ERR_FILE_EXISTS', `${dest} already exists`, { hint: 'choose another path or remove the file first' });
    throw (e as { exitCode?: number }).exitCode ? e : ioError(e, dest);
  }
  fsyncDir(path.dirname(dest));
  return { bytes, sha256: hash.digest('hex') };
}

/** Streams a file's SHA-256 and size. */
export async function hashFile(p: string): Promise<{ bytes: number; sha256: string }> {
  const hash = crypto.createHash('sha256');
  let bytes = 0;
  try {
    for await (const c of fs.createReadStream(p, { highWaterMark: 1 << 20 })) {
      hash.update(c as Buffer);
      bytes += (c as Buffer).length;
    }
  } catch (e) {
    throw ioError(e, p);
  }
  return { bytes, sha256: hash.digest('hex') };
}

export { fsyncDir };

/**
 * write(2) may write less than asked: at most 0x7ffff000 bytes per call on Linux, and less near a
 * file-size limit or on some filesystems. One writeSync would then leave a silently truncated file
 * (an audit archive over 2 GiB), so loop until every byte is written; a write that can make no
 * progress throws (EFBIG, ENOSPC) and the temporary file is removed.
 */
function writeAll(fd: number, buf: Buffer): void {
  let off = 0;
  while (off < buf.length) {
    const n = fs.writeSync(fd, buf, off, Math.min(buf.length - off, MAX_WRITE));
    if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
    off += n;
  }
}

/** The most one write(2) call moves on Linux; larger buffers go in several calls. */
const MAX_WRITE = 0x7ffff000;

export function ioError(e: unknown, where: string): Error {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return new NotFoundError('ERR_NOT_FOUND', `${where}: no such file or directory`, { cause: e });
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
    return new UnavailableError('ERR_NOT_WRITABLE', `${where}: permission denied or read-only`, { hint: 'check the ownership and mode of the path', cause: e });
  if (code === 'ENOSPC' || code === 'EFBIG' || code === 'EDQUOT') return new UnavailableError('ERR_DISK_FULL', `${where}: no space left on device (or over a file-size limit or quota)`, { cause: e });
  if (code === 'EEXIST') return new ConflictError('ERR_FILE_EXISTS', `${where} already exists`, { cause: e });
  return e instanceof Error ? e : new Error(String(e));
}

/** Refuses a file or directory that group or others may read or write, as ssh does. */
export function assertPrivate(p: string, kind: 'home' | 'file'): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    throw ioError(e, p);
  }
  if ((st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(3, '0');
    throw new IntegrityError('ERR_UNSAFE_PERMISSIONS', `${p} is accessible by group or others (mode ${mode}); refusing to use it`, { hint: `run: chmod ${kind === 'home' ? '700' : '600'} ${p}` });
  }
}

export function readTextIfExists(p: string): string | null {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw ioError(e, p);
  }
}

/** Creates the parent directories of a new home (0700); returns the first one it made, to remove if the home is not finished. */
export function makeHomeParent(home: string): string | undefined {
  const parent = path.dirname(home);
  try {
    return fs.mkdirSync(parent, { recursive: true, mode: 0o700 });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST' || code === 'ENOTDIR') throw new UsageError('ERR_HOME_PARENT', `cannot create ${home}: a parent path is not a directory`, { hint: 'choose another home directory' });
    throw ioError(e, parent);
  }
}
