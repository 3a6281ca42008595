/**
 * The home's run lock (`dsk.lock`): one rotation at a time, so two cron runs never rotate the same
 * key twice. The file is created with O_EXCL and holds the owner's pid and process start time.
 *
 * A lock whose pid is dead, or whose pid now belongs to a different process (pid reuse: the start
 * time differs), is stale: a run killed with SIGKILL never removes its lock, and the next run must
 * not be blocked by it. Takeover renames the stale file aside first, so of two processes that
 * both see the same stale lock only one wins; the loser finds the winner's fresh lock and backs off.
 */
import fs from 'node:fs';
import crypto from 'node:crypto';
import { homePath } from './home-layout.js';
import { ConflictError } from './errors.js';
import { ioError } from './files.js';

interface LockInfo {
  pid: number;
  start: string | null;
  host: string;
  acquired_at: string;
  purpose: string;
}

/** The kernel's start time of a process (clock ticks since boot), to tell a reused pid apart. */
export function processStartTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 2 (comm) may contain spaces and parentheses; fields after the last ')' are fixed.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return rest[19] ?? null; // field 22 overall
  } catch {
    return null;
  }
}

function alive(info: LockInfo): boolean {
  try {
    process.kill(info.pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ESRCH') return false;
  }
  const start = processStartTime(info.pid);
  return !(info.start && start && start !== info.start);
}

function readLock(p: string): LockInfo | null {
  try {
    return JSON.parse(fs.readFileSync(p, 'utf8')) as LockInfo;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    // Unparseable: a writer died between create and write. Treat as stale.
    return { pid: -1, start: null, host: '', acquired_at: '', purpose: 'unknown' };
  }
}

export interface Lock {
  path: string;
  release(): void;
}

function tryAcquire(p: string, purpose: string, now: number): Lock | LockInfo {
  const info: LockInfo = { pid: process.pid, start: processStartTime(process.pid), host: process.env.HOSTNAME ?? '', acquired_at: new Date(now).toISOString(), purpose };
  let fd: number;
  try {
    fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw ioError(e, p);
    const held = readLock(p);
    if (held && held.pid !== -1 && alive(held)) return held;
    // Stale: move it aside atomically; only the process whose rename succeeds retries at once.
    const aside = `${p}.stale-${crypto.randomBytes(4).toString('hex')}`;
    try {
      fs.renameSync(p, aside);
    } catch {
      return held ?? tryAcquire(p, purpose, now);
    }
    const moved = readLock(aside);
    if (moved && held && moved.pid !== -1 && (moved.pid !== held.pid || moved.start !== held.start) && alive(moved)) {
      // We moved someone's fresh lock; put it back if the slot is still free.
      try {
        fs.linkSync(aside, p);
      } catch {
        // another process holds it now; the moved owner will find its lock gone only at release
      }
      fs.rmSync(aside, { force: true });
      return moved;
    }
    fs.rmSync(aside, { force: true });
    return tryAcquire(p, purpose, now);
  }
  try {
    fs.writeSync(fd, JSON.stringify(info) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  let released = false;
  return {
    path: p,
    release() {
      if (released) return;
      released = true;
      const cur = readLock(p);
      if (cur && cur.pid === info.pid && cur.start === info.start) fs.rmSync(p, { force: true });
    },
  };
}

/**
 * Takes the home's lock. With `wait`, polls until the holder finishes (or `timeoutMs` passes);
 * without, a held lock is a conflict (exit 6).
 */
export async function acquireLock(home: string, opts: { purpose: string; wait?: boolean; timeoutMs?: number; now?: () => number } = { purpose: 'rotate' }): Promise<Lock> {
  const p = homePath(home, 'lock');
  const now = opts.now ?? Date.now;
  const deadline = Date.now() + (opts.timeoutMs ?? 24 * 3_600_000);
  for (;;) {
    const r = tryAcquire(p, opts.purpose, now());
    if ('release' in r) return r;
    if (!opts.wait || Date.now() >= deadline)
      throw new ConflictError('ERR_LOCKED', `another dsk run holds the lock on this home (pid ${r.pid}, ${r.purpose}, since ${r.acquired_at})`, { hint: 'wait for it to finish, or pass --wait; a lock left by a killed run is taken over automatically' });
    await new Promise((res) => setTimeout(res, 100));
  }
}

export type LockState = { state: 'free' } | { state: 'held' | 'stale'; pid: number; purpose: string; acquired_at: string };

/** Who holds the home's lock, without taking it (dsk doctor): a dead or reused pid is stale. */
export function inspectLock(home: string): LockState {
  const info = readLock(homePath(home, 'lock'));
  if (!info) return { state: 'free' };
  const live = info.pid !== -1 && alive(info);
  return { state: live ? 'held' : 'stale', pid: info.pid, purpose: info.purpose, acquired_at: info.acquired_at };
}
