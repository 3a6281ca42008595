/**
 * Over 300 lines: open, version checks, the transaction mutex and the error mapping of one connection belong together.
 *
 * The SQLite engine: keys.db (keys, usage, lineage, operators, master state) with
 * audit_log/audit.db attached as `audit`, on one better-sqlite3 connection.
 *
 * Atomicity across the two files: SQLite commits a transaction that writes to several attached
 * databases atomically through a super-journal, but only in rollback-journal modes; in WAL mode
 * each file commits on its own (https://sqlite.org/lang_attach.html). A key change and its audit
 * row must commit together or not at all, so both files use journal_mode=DELETE with
 * synchronous=FULL (fsync of journal and database before the commit returns; durable like
 * WAL+FULL). Writers take the write lock up front (BEGIN IMMEDIATE) and wait up to busy_timeout;
 * that lock also serialises every appender of the audit chain across processes.
 *
 * better-sqlite3 is synchronous and the Store API is not: a transaction's fn may await between
 * statements. An in-process mutex therefore serialises transactions on the connection, and reads
 * outside a transaction wait for it too, so they never see another caller's uncommitted writes
 * (the same guarantee a server engine gives). A read or a transaction started from inside a
 * running transaction on the same store would wait for itself: it throws instead (found through
 * AsyncLocalStorage), naming the mistake.
 */
import fs from 'node:fs';
import path from 'node:path';
import { AsyncLocalStorage } from 'node:async_hooks';
import Database from 'better-sqlite3';
import { homePath } from '../../kernel/home-layout.js';
import { assertPrivate, ioError } from '../../kernel/files.js';
import { ConflictError, IntegrityError, UnavailableError } from '../../kernel/errors.js';
import type { AuditFilter, AuditReads, AuditRow, AuditTuple, AuditWrites, DeliveryReads, DeliveryWrites, KeyReads, KeySourceReads, KeySourceWrites, KeyWrites, MasterStateReads, MasterStateWrites, NonceClaims, OpenStoreOptions, OperatorReads, OperatorWrites, Store, StoreTx, UsageReads, UsageWrites } from '../store.js';
import { SCHEMA_VERSION } from '../migrations.js';
import { checkVersions, migrate, versions } from './migrations.js';
import { Statements, type DB } from './statements.js';
import { SqliteKeys } from './keys.js';
import { SqliteOperators } from './operators.js';
import { SqliteEvents } from './events.js';
import { SqliteMasterState } from './master-state.js';
import { SqliteDeliveries } from './deliveries.js';
import { SqliteKeySources } from './key-sources.js';
import { SqliteUsage } from './usage.js';
import { SqliteNonces } from './nonces.js';

const WHERE = 'the store (keys.db + audit_log/audit.db)';
const CHUNK = 20_000;

/** Which store's transaction the current async context runs in. */
const inside = new AsyncLocalStorage<SqliteStore>();

class Mutex {
  #tail: Promise<void> = Promise.resolve();
  acquire(): Promise<() => void> {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const prev = this.#tail;
    this.#tail = prev.then(() => held);
    return prev.then(() => release);
  }
}

type Call = <R>(f: () => R) => Promise<R>;
type Lifted<T, K extends keyof T> = { [P in K]: T[P] extends (...a: infer A) => infer R ? (...a: A) => Promise<R> : never };

/** Async methods over a synchronous table, each call made through `call`. */
function lift<T extends object, K extends keyof T>(obj: T, names: readonly K[], call: Call): Lifted<T, K> {
  const out = {} as Record<K, unknown>;
  for (const n of names) {
    const f = obj[n] as unknown as (...a: unknown[]) => unknown;
    out[n] = (...a: unknown[]) => call(() => f.apply(obj, a));
  }
  return out as Lifted<T, K>;
}

const KEY_READS = ['get', 'list', 'all', 'countByStatus', 'countLive', 'sealedSecrets', 'expiredBy', 'graceEndedBy', 'rotationDue', 'expiringWithin', 'nearUseLimit', 'version'] as const;
const KEY_WRITES = [...KEY_READS, 'insert', 'revoke', 'expire', 'retire', 'startGrace', 'reissued', 'reseal', 'setOptions'] as const;
const OP_READS = ['get', 'list', 'countEnrolled'] as const;
const OP_WRITES = [...OP_READS, 'insert', 'remove', 'acceptCode', 'recordFailure', 'lock', 'confirmEnrolment', 'resetSecret'] as const;
const EV_READS = ['last', 'lastKeyedSeq', 'bounds', 'count', 'hashAt', 'firstPrevHash', 'firstSeqAtOrAfter', 'hasAction', 'withAction', 'macs', 'query', 'stats'] as const;
const USAGE_READS = ['totalsSince', 'report'] as const;
const EV_WRITES = [...EV_READS, 'insert', 'deleteThrough', 'setMac'] as const;

export class SqliteStore implements Store {
  readonly engine = 'sqlite';
  readonly schemaVersion = SCHEMA_VERSION;
  readonly keys: KeyReads;
  readonly operators: OperatorReads;
  readonly events: AuditReads;
  readonly masterState: MasterStateReads;
  readonly deliveries: DeliveryReads;
  readonly keySources: KeySourceReads;
  readonly usage: UsageReads;
  readonly nonces: NonceClaims;
  #db: DB;
  #mutex = new Mutex();
  #keys: SqliteKeys;
  #operators: SqliteOperators;
  #events: SqliteEvents;
  #master: SqliteMasterState;
  #deliveries: SqliteDeliveries;
  #keySources: SqliteKeySources;
  #usage: SqliteUsage;
  #nonces: SqliteNonces;
  #closed = false;

  private constructor(
    db: DB,
    readonly readonly: boolean,
    home: string,
  ) {
    this.#db = db;
    const st = new Statements(db);
    this.#keys = new SqliteKeys(st);
    this.#operators = new SqliteOperators(st);
    this.#events = new SqliteEvents(st);
    this.#master = new SqliteMasterState(st);
    this.#deliveries = new SqliteDeliveries(st);
    this.#keySources = new SqliteKeySources(st);
    this.#usage = new SqliteUsage(st);
    const read: Call = (f) => this.#read(f);
    this.keys = lift(this.#keys, KEY_READS, read);
    this.operators = lift(this.#operators, OP_READS, read);
    this.events = { ...lift(this.#events, EV_READS, read), ...this.#iterators(read) };
    this.masterState = lift(this.#master, ['keyCheckValue'] as const, read);
    this.deliveries = lift(this.#deliveries, ['pending'] as const, read);
    this.keySources = lift(this.#keySources, ['all'] as const, read);
    this.usage = lift(this.#usage, USAGE_READS, read);
    this.#nonces = new SqliteNonces(home, () => this.#db.pragma('busy_timeout', { simple: true }) as number);
    this.nonces = lift(this.#nonces, ['claim'] as const, read);
  }

  /** Opens (creating when `create`) the keys and audit databases of a home, migrating them to SCHEMA_VERSION. */
  static open(home: string, opts: OpenStoreOptions = {}): SqliteStore {
    let db: DB;
    try {
      db = connect(home, opts);
    } catch (e) {
      // A process killed mid-write leaves a hot journal that only a writable handle may roll back;
      // until then every read-only command (status, keys list, doctor) would fail.
      if (!opts.readonly || !hotJournal(e)) throw e;
      SqliteStore.open(home, { ...opts, readonly: false }).#db.close();
      return SqliteStore.open(home, opts);
    }
    try {
      if (checkVersions(db)) {
        if (opts.readonly) {
          // A read-only handle cannot upgrade the schema: do it through a short-lived writable one.
          db.close();
          SqliteStore.open(home, { ...opts, readonly: false }).#db.close();
          return SqliteStore.open(home, opts);
        }
        migrate(db);
      }
    } catch (e) {
      if (db.open) db.close();
      throw mapSqliteError(e, WHERE);
    }
    return new SqliteStore(db, !!opts.readonly, home);
  }

  /** The schema version each file records, read without migrating (dsk doctor); a newer one is refused as at open. */
  static schemaVersions(home: string): { keys: number; audit: number } {
    const db = connect(home, { readonly: true });
    try {
      return versions(db);
    } finally {
      db.close();
    }
  }

  async transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    if (inside.getStore() === this) throw new Error('internal: a transaction was opened inside a transaction on the same store; pass the StoreTx down instead');
    const release = await this.#mutex.acquire();
    try {
      this.#assertOpen();
      let live = true;
      const call: Call = async (f) => {
        if (!live) throw new Error('internal: a StoreTx was used after its transaction ended');
        return f();
      };
      try {
        this.#db.exec('BEGIN IMMEDIATE');
        const result = await inside.run(this, () => fn(this.#tx(call)));
        live = false;
        this.#db.exec('COMMIT');
        return result;
      } catch (e) {
        live = false;
        if (this.#db.inTransaction) {
          try {
            this.#db.exec('ROLLBACK');
          } catch {
            // SQLite rolled back already (for example after SQLITE_FULL); the original error matters
          }
        }
        throw mapSqliteError(e, WHERE);
      }
    } finally {
      release();
    }
  }

  async setLockTimeout(ms: number): Promise<number> {
    return this.#read(() => {
      const previous = this.#db.pragma('busy_timeout', { simple: true }) as number;
      this.#db.pragma(`busy_timeout = ${Math.max(0, Math.floor(ms))}`);
      this.#nonces.setLockTimeout(ms);
      return previous;
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    const release = await this.#mutex.acquire();
    try {
      this.#closed = true;
      this.#nonces.close();
      if (this.#db.open) this.#db.close();
    } finally {
      release();
    }
  }

  #tx(call: Call): StoreTx {
    const keys = lift(this.#keys, KEY_WRITES, call) as KeyWrites;
    const usage: UsageWrites = { ...lift(this.#keys, ['bump', 'firstApply'] as const, call), ...lift(this.#usage, [...USAGE_READS, 'addHourly', 'markQuota'] as const, call) };
    const operators = lift(this.#operators, OP_WRITES, call) as OperatorWrites;
    const events: AuditWrites = { ...lift(this.#events, EV_WRITES, call), ...this.#iterators(call) };
    const masterState: MasterStateWrites = lift(this.#master, ['keyCheckValue', 'recordReplacement'] as const, call);
    const deliveries: DeliveryWrites = lift(this.#deliveries, ['pending', 'add', 'delivered', 'failed'] as const, call);
    const keySources: KeySourceWrites = lift(this.#keySources, ['all', 'learn'] as const, call);
    return { keys, usage, operators, events, masterState, deliveries, keySources };
  }

  /** Chunked readers: each chunk is its own call, so other work (and other writers) run in between. */
  #iterators(call: Call): Pick<AuditReads, 'chunks' | 'exportChunks' | 'newest' | 'after'> {
    const ev = this.#events;
    return {
      async *chunks(lo = 0, hi = Number.MAX_SAFE_INTEGER, size = CHUNK): AsyncIterable<AuditTuple[]> {
        let after = lo;
        for (;;) {
          const rows = await call(() => ev.chunk(after, hi, size));
          if (rows.length) yield rows;
          if (rows.length < size) return;
          after = rows[rows.length - 1][0];
        }
      },
      async *exportChunks(f: AuditFilter, size = CHUNK): AsyncIterable<AuditRow[]> {
        let after = 0;
        for (;;) {
          const rows = await call(() => ev.exportChunk(f, after, size));
          if (rows.length) yield rows;
          if (rows.length < size) return;
          after = rows[rows.length - 1].seq;
        }
      },
      newest: (n: number) => call(() => ev.newest(n)),
      after: (seq: number, limit = 1000) => call(() => ev.after(seq, limit)),
    };
  }

  async #read<R>(f: () => R): Promise<R> {
    if (inside.getStore() === this) throw new Error('internal: a store read outside the running transaction; read through its StoreTx');
    const release = await this.#mutex.acquire();
    try {
      this.#assertOpen();
      return f();
    } catch (e) {
      throw mapSqliteError(e, WHERE);
    } finally {
      release();
    }
  }

  #assertOpen(): void {
    if (this.#closed || !this.#db.open) throw new Error('internal: the store is closed');
  }
}

function connect(home: string, opts: OpenStoreOptions): DB {
  const keysPath = homePath(home, 'keysDb');
  const auditPath = homePath(home, 'auditDb');
  if (opts.create) {
    fs.mkdirSync(path.dirname(auditPath), { recursive: true, mode: 0o700 });
    for (const p of [keysPath, auditPath]) {
      if (!fs.existsSync(p)) fs.closeSync(fs.openSync(p, 'wx', 0o600));
    }
  }
  // Like ssh with ~/.ssh: database files others can read or write are refused (exit 5).
  for (const p of [keysPath, auditPath]) assertPrivate(p, 'file');
  // SQLite takes an empty file for a new, empty database and would quietly start over: a home's
  // databases are never empty once dsk init has run, so a 0-byte one was truncated.
  if (!opts.create) for (const p of [keysPath, auditPath]) if (fs.statSync(p).size === 0) throw damaged(p, 'it is empty (0 bytes)');
  let db: DB;
  try {
    db = new Database(keysPath, { readonly: !!opts.readonly, fileMustExist: true });
  } catch (e) {
    throw ioError(e, keysPath);
  }
  try {
    db.pragma(`busy_timeout = ${opts.lockTimeoutMs ?? busyTimeoutMs()}`);
    probe(keysPath, () => db.prepare('SELECT count(*) FROM main.sqlite_master').get());
    probe(auditPath, () => {
      db.prepare('ATTACH DATABASE ? AS audit').run(auditPath);
      db.prepare('SELECT count(*) FROM audit.sqlite_master').get();
    });
    // Refuse a newer schema before any pragma below could write to the files.
    checkVersions(db);
    if (!opts.readonly) {
      db.pragma('journal_mode = DELETE');
      db.pragma('audit.journal_mode = DELETE');
      db.pragma('synchronous = FULL');
      db.pragma('audit.synchronous = FULL');
      db.pragma('foreign_keys = ON');
    }
  } catch (e) {
    db.close();
    throw mapSqliteError(e, WHERE);
  }
  return db;
}

/** Reads a file's header and schema, so a damaged file is named at open rather than at the first query. */
function probe(file: string, read: () => void): void {
  try {
    read();
  } catch (e) {
    const code = (e as { code?: string })?.code ?? '';
    if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) throw damaged(file, code === 'SQLITE_NOTADB' ? 'it is not a SQLite database (SQLITE_NOTADB)' : `its contents are corrupt (${code})`, e);
    throw e;
  }
}

function damaged(file: string, what: string, cause?: unknown): IntegrityError {
  return new IntegrityError('ERR_STORE_DAMAGED', `${file} is damaged: ${what}; nothing was changed`, { hint: 'restore the home from a backup (the whole directory); dsk audit verify checks the audit log afterwards', cause });
}

/**
 * Maps SQLite failures to the brief's exit codes. A write that waited past the busy timeout is
 * exit 6 (another process holds the lock: a conflict, retry later); a damaged file (not a
 * database, corrupt pages) is exit 5 like any other integrity failure; every other failure to
 * write (read-only, disk full, I/O error) is exit 7. Either way the transaction was rolled back, so the
 * change and its audit row were both dropped (fail closed, as Vault does).
 */
function hotJournal(e: unknown): boolean {
  const cause = (e as { cause?: { code?: string } })?.cause;
  return cause?.code === 'SQLITE_READONLY_ROLLBACK';
}

export function mapSqliteError(e: unknown, where: string): Error {
  const code = (e as { code?: string })?.code ?? '';
  const nothing = 'nothing was changed';
  if (code === 'SQLITE_BUSY' || code.startsWith('SQLITE_BUSY') || code === 'SQLITE_LOCKED' || code.startsWith('SQLITE_LOCKED'))
    return new ConflictError('ERR_STORE_BUSY', `${where} stayed locked by another process for ${busyTimeoutMs() / 1000}s (${code}); ${nothing}`, { hint: 'try again in a moment; a long-running dsk or sqlite3 process may hold the lock', cause: e });
  if (code === 'SQLITE_FULL')
    return new UnavailableError('ERR_STORE_FULL', `cannot write ${where}: no space left on device (${code}); ${nothing}`, { hint: 'free disk space, then retry', cause: e });
  if (code.startsWith('SQLITE_READONLY') || code === 'SQLITE_PERM' || code === 'SQLITE_AUTH')
    return new UnavailableError('ERR_STORE_UNWRITABLE', `cannot write ${where}: it is read-only (${code}); ${nothing}`, { hint: 'check that keys.db, audit_log/audit.db and their directories are writable by this user', cause: e });
  if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT'))
    return new IntegrityError('ERR_STORE_DAMAGED', `${where} is damaged: ${code === 'SQLITE_NOTADB' ? 'not a SQLite database' : 'its contents are corrupt'} (${code}); ${nothing}`, { hint: 'restore the home from a backup (the whole directory); dsk audit verify checks the audit log afterwards', cause: e });
  if (code.startsWith('SQLITE_CANTOPEN') || code.startsWith('SQLITE_IOERR'))
    return new UnavailableError('ERR_STORE_UNWRITABLE', `cannot use ${where}: I/O error (${code}); ${nothing}`, { hint: 'check the disk, and that no stray file or directory sits at audit_log/audit.db-journal or keys.db-journal', cause: e });
  return e instanceof Error ? e : new Error(String(e));
}

/** How long a writer waits for another one; DSK_BUSY_TIMEOUT_MS overrides (operations, tests). */
export function busyTimeoutMs(): number {
  const v = Number(process.env.DSK_BUSY_TIMEOUT_MS);
  return Number.isSafeInteger(v) && v >= 0 ? v : 10_000;
}
