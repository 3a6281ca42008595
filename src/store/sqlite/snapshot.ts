/**
 * A consistent copy of a live SQLite home's two databases, through SQLite's online backup API
 * (https://sqlite.org/backup.html) as better-sqlite3 exposes it.
 *
 * Consistency across keys.db and audit.db: the backup API copies one database at a time and
 * restarts when another connection writes to it. dsk's files run in rollback-journal mode, where a
 * read transaction holds a SHARED lock that no writer can commit past. So the copy opens one read
 * transaction over both files, reads each (taking both SHARED locks), runs `during` (the caller
 * reads audit_log/HEAD and the small files of the home there, so they match the databases) and
 * then copies both databases page by page inside that transaction: the two copies are of the same
 * instant, and a key change is never copied without its audit row. Writers (the gateway's flushes,
 * `rotate --due`) wait for the copy (up to their busy timeout, 10 s by default) instead of failing
 * or restarting it; docs/operations.md gives the copy rate.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { homePath } from '../../kernel/home-layout.js';
import { IntegrityError } from '../../kernel/errors.js';
import { ioError } from '../../kernel/files.js';
import { mapSqliteError, busyTimeoutMs } from './engine.js';

/** Pages copied per step of the backup API: 4 MiB with SQLite's default 4 KiB pages. */
const PAGES_PER_STEP = 1024;

export interface SnapshotProgress {
  (copiedPages: number, totalPages: number): void;
}

/**
 * Copies keys.db to dest/keys.db and audit_log/audit.db to dest/audit_log/audit.db (mode 0600) as
 * of one instant; `during` runs at that instant, while writers are held off.
 */
export async function snapshotSqlite<T>(home: string, dest: string, during: () => T, progress?: SnapshotProgress): Promise<T> {
  const where = 'the store (keys.db + audit_log/audit.db)';
  let db: InstanceType<typeof Database>;
  try {
    db = new Database(homePath(home, 'keysDb'), { fileMustExist: true });
  } catch (e) {
    throw ioError(e, homePath(home, 'keysDb'));
  }
  try {
    db.pragma(`busy_timeout = ${busyTimeoutMs()}`);
    db.prepare('ATTACH DATABASE ? AS audit').run(homePath(home, 'auditDb'));
    db.exec('BEGIN');
    const pages = (schema: string) => db.pragma(`${schema}.page_count`, { simple: true }) as number;
    // The first read of each schema takes its SHARED lock (and rolls back a hot journal first).
    db.prepare('SELECT count(*) FROM main.sqlite_master').get();
    db.prepare('SELECT count(*) FROM audit.sqlite_master').get();
    const total = pages('main') + pages('audit');
    const result = during();
    fs.mkdirSync(path.join(dest, path.dirname(homePath('', 'auditDb'))), { recursive: true, mode: 0o700 });
    let before = 0;
    for (const [schema, file] of [['main', homePath(dest, 'keysDb')], ['audit', homePath(dest, 'auditDb')]] as const) {
      fs.closeSync(fs.openSync(file, 'wx', 0o600));
      // `attached` is in better-sqlite3's API (docs/api.md#backupdestination-options) but not in its type definitions
      const opts = { attached: schema, progress: (p: { totalPages: number; remainingPages: number }) => (progress?.(before + p.totalPages - p.remainingPages, total), PAGES_PER_STEP) };
      await db.backup(file, opts as Database.BackupOptions);
      before += pages(schema);
      fs.chmodSync(file, 0o600);
      progress?.(before, total);
    }
    db.exec('COMMIT');
    return result;
  } catch (e) {
    // SQLite's failures get the store's codes; a file the copy could not create (EACCES, ENOSPC) the file's
    throw ((e as { code?: string }).code ?? '').startsWith('SQLITE') ? mapSqliteError(e, where) : ioError(e, dest);
  } finally {
    db.close();
  }
}

/**
 * SQLite's integrity_check on both databases of a snapshotted or restored home; throws naming the
 * first problem. `quick`: quick_check (every page and record, but not that indexes match their
 * tables; several times faster), for a copy whose bytes were already proven equal to a checked one.
 */
export function checkSqliteIntegrity(home: string, opts: { quick?: boolean } = {}): void {
  const pragma = opts.quick ? 'quick_check' : 'integrity_check';
  for (const [file, label] of [[homePath(home, 'keysDb'), 'keys.db'], [homePath(home, 'auditDb'), 'audit_log/audit.db']] as const) {
    let db: InstanceType<typeof Database>;
    try {
      db = new Database(file, { readonly: true, fileMustExist: true });
    } catch (e) {
      throw ioError(e, file);
    }
    try {
      const rows = db.pragma(pragma) as Record<string, string>[];
      const first = rows[0]?.[pragma];
      if (rows.length !== 1 || first !== 'ok') throw new IntegrityError('ERR_STORE_DAMAGED', `${label} fails SQLite's ${pragma}: ${first ?? 'no result'}`, { hint: 'use another copy of the backup' });
    } catch (e) {
      if (e instanceof IntegrityError) throw e;
      const code = (e as { code?: string }).code ?? '';
      if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) throw new IntegrityError('ERR_STORE_DAMAGED', `${label} is damaged (${code})`, { hint: 'use another copy of the backup', cause: e });
      throw mapSqliteError(e, label);
    } finally {
      db.close();
    }
  }
}
