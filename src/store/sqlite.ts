/**
 * The SQLite store: keys.db (keys, usage, lineage) with audit_log/audit.db attached as `audit`.
 *
 * Atomicity across the two files: SQLite commits a transaction that writes to several attached
 * databases atomically through a super-journal, but only in rollback-journal modes; in WAL mode
 * each file commits on its own (https://sqlite.org/lang_attach.html). A key change and its audit
 * row must commit together or not at all, so both files use journal_mode=DELETE with
 * synchronous=FULL (fsync of journal and database before the commit returns; durable like
 * WAL+FULL). Writers take the write lock up front (BEGIN IMMEDIATE) and wait up to busy_timeout.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { homePath } from '../kernel/home-layout.js';
import { ioError } from '../kernel/files.js';
import { ConflictError, UnavailableError } from '../kernel/errors.js';

export type DB = Database.Database;

export const KEYS_SCHEMA_VERSION = 1;
export const AUDIT_SCHEMA_VERSION = 1;

const KEYS_SCHEMA = `
CREATE TABLE IF NOT EXISTS keys (
  id              TEXT PRIMARY KEY,
  name            TEXT NOT NULL,
  owner           TEXT,
  role            TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('active','grace','retired','revoked','expired')),
  key_hash        TEXT NOT NULL UNIQUE,
  salt            TEXT NOT NULL,
  secret_sealed   BLOB NOT NULL,
  created_at      INTEGER NOT NULL,
  expires_at      INTEGER,
  rotate_every_ms INTEGER,
  max_uses        INTEGER,
  use_count       INTEGER NOT NULL DEFAULT 0,
  last_used_at    INTEGER,
  replaces        TEXT,
  replaced_by     TEXT,
  grace_until     INTEGER,
  revoked_at      INTEGER,
  revoke_reason   TEXT,
  retired_at      INTEGER,
  updated_at      INTEGER NOT NULL,
  options         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS keys_status ON keys(status);
CREATE INDEX IF NOT EXISTS keys_name ON keys(name);
CREATE INDEX IF NOT EXISTS keys_replaces ON keys(replaces);
`;

/** CLI operators (src/app/operators.ts): role, sealed TOTP secret, replay guard, lockout. */
export const OPERATORS_SCHEMA = `
CREATE TABLE IF NOT EXISTS operators (
  name          TEXT PRIMARY KEY,
  role          TEXT NOT NULL,
  totp_sealed   BLOB,
  enrolled_at   INTEGER,
  created_at    INTEGER NOT NULL,
  created_by    TEXT NOT NULL,
  last_otp_step INTEGER,
  lock_until    INTEGER
);
CREATE TABLE IF NOT EXISTS operator_failures (
  name TEXT NOT NULL,
  at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS operator_failures_name ON operator_failures(name, at);
`;

const AUDIT_SCHEMA = `
CREATE TABLE IF NOT EXISTS audit.events (
  seq       INTEGER PRIMARY KEY,
  ts        TEXT NOT NULL,
  action    TEXT NOT NULL,
  actor     TEXT NOT NULL,
  source_ip TEXT,
  key_id    TEXT,
  details   TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash      TEXT NOT NULL,
  mac       TEXT
);
CREATE INDEX IF NOT EXISTS audit.events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS audit.events_action ON events(action, ts);
CREATE INDEX IF NOT EXISTS audit.events_actor ON events(actor, ts);
CREATE INDEX IF NOT EXISTS audit.events_key ON events(key_id, ts);
CREATE INDEX IF NOT EXISTS audit.events_ip ON events(source_ip, ts);
`;

export interface OpenOptions {
  readonly?: boolean;
  /** milliseconds to wait for another writer */
  busyTimeoutMs?: number;
}

/** Opens (creating when `create`) the keys and audit databases of a home. */
export function openDatabase(home: string, opts: OpenOptions & { create?: boolean } = {}): DB {
  const keysPath = homePath(home, 'keysDb');
  const auditPath = homePath(home, 'auditDb');
  if (opts.create) {
    fs.mkdirSync(path.dirname(auditPath), { recursive: true, mode: 0o700 });
    for (const p of [keysPath, auditPath]) {
      if (!fs.existsSync(p)) fs.closeSync(fs.openSync(p, 'wx', 0o600));
    }
  }
  let db: DB;
  try {
    db = new Database(keysPath, { readonly: !!opts.readonly, fileMustExist: true });
  } catch (e) {
    throw ioError(e, keysPath);
  }
  try {
    db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? busyTimeoutMs()}`);
    db.prepare('ATTACH DATABASE ? AS audit').run(auditPath);
    if (!opts.readonly) {
      db.pragma('journal_mode = DELETE');
      db.pragma('audit.journal_mode = DELETE');
      db.pragma('synchronous = FULL');
      db.pragma('audit.synchronous = FULL');
      db.pragma('foreign_keys = ON');
    }
    if (opts.create) {
      db.exec(KEYS_SCHEMA);
      db.exec(AUDIT_SCHEMA);
      db.exec(OPERATORS_SCHEMA);
      db.pragma(`user_version = ${KEYS_SCHEMA_VERSION}`);
      db.pragma(`audit.user_version = ${AUDIT_SCHEMA_VERSION}`);
    }
  } catch (e) {
    db.close();
    throw mapSqliteError(e, 'the store (keys.db + audit_log/audit.db)');
  }
  return db;
}

/** Runs `fn` in one BEGIN IMMEDIATE transaction across keys and audit. */
export function inTransaction<T>(db: DB, fn: () => T): T {
  try {
    return db.transaction(fn).immediate();
  } catch (e) {
    throw mapSqliteError(e, 'the store (keys.db + audit_log/audit.db)');
  }
}

/**
 * Maps SQLite failures to the brief's exit codes. Every failure to write (locked past the busy
 * timeout, read-only, disk full, I/O error) is exit 7: the transaction was rolled back, so the
 * change and its audit row were both dropped (fail closed, as Vault does).
 */
export function mapSqliteError(e: unknown, where: string): Error {
  const code = (e as { code?: string })?.code ?? '';
  const nothing = 'nothing was changed';
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY') || code === 'SQLITE_LOCKED' || code.startsWith('SQLITE_LOCKED'))
    return new ConflictError('ERR_STORE_BUSY', `${where} stayed locked by another process for ${busyTimeoutMs() / 1000}s (${code}); ${nothing}`, { hint: 'try again in a moment; a long-running dsk or sqlite3 process may hold the lock', cause: e });
  if (code === 'SQLITE_FULL')
    return new UnavailableError('ERR_STORE_FULL', `cannot write ${where}: no space left on device (${code}); ${nothing}`, { hint: 'free disk space, then retry', cause: e });
  if (code.startsWith('SQLITE_READONLY') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH')
    return new UnavailableError('ERR_STORE_UNWRITABLE', `cannot write ${where}: it is read-only (${code}); ${nothing}`, { hint: 'check that keys.db, audit_log/audit.db and their directories are writable by this user', cause: e });
  if (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR') || code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT')
    return new UnavailableError('ERR_STORE_UNWRITABLE', `cannot use ${where}: I/O error (${code}); ${nothing}`, { hint: 'check the disk, and that no stray file or directory sits at audit_log/audit.db-journal or keys.db-journal', cause: e });
  return e instanceof Error ? e : new Error(String(e));
}

/** How long a writer waits for another one; DSK_BUSY_TIMEOUT_MS overrides (operations, tests). */
export function busyTimeoutMs(): number {
  const v = Number(process.env.DSK_BUSY_TIMEOUT_MS);
  return Number.isSafeInteger(v) && v >= 0 ? v : 10_000;
}
