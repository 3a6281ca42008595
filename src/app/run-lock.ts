/**
 * The lock that keeps two rotation runs apart. On a home of its own (SQLite) it is the home's lock
 * file; on a home whose store is shared (PostgreSQL), the store's advisory lock, so that two cron
 * jobs on two nodes of one home never rotate one key twice.
 */
import { ConflictError } from '../kernel/errors.js';
import { acquireLock } from '../kernel/lock.js';
import { loadConfig } from '../store/config-file.js';
import { openStore } from '../store/open.js';

export interface RunLock {
  release(): Promise<void>;
}

export async function acquireRunLock(home: string, opts: { purpose: string; wait?: boolean; timeoutMs?: number }): Promise<RunLock> {
  if (!loadConfig(home).store?.url) {
    const l = await acquireLock(home, opts);
    return { release: async () => l.release() };
  }
  const store = await openStore(home);
  try {
    const held = await store.runLock!({ wait: opts.wait, timeoutMs: opts.timeoutMs });
    if (!held)
      throw new ConflictError('ERR_LOCKED', `another dsk run on a node of this home holds the rotation lock of its shared store (${opts.purpose} refused)`, {
        hint: 'wait for it to finish, or pass --wait; the lock of a killed run ends with its database session',
      });
    return {
      release: async () => {
        await held.release();
        await store.close();
      },
    };
  } catch (e) {
    await store.close();
    throw e;
  }
}
