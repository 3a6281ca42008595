/**
 * Over 300 lines: open, identity checks, locks and migrations of one connection pool belong together.
 *
 * The PostgreSQL engine: one database shared by every node of a home (several CLIs, several
 * gateways). Reads go through a small pool; each transaction runs on one client.
 *
 * Serialisation: every transaction first takes one transaction-scoped advisory lock
 * (pg_advisory_xact_lock), held until COMMIT or ROLLBACK. Writers on all hosts therefore run one at
 * a time, exactly as SQLite's BEGIN IMMEDIATE makes them on one host: two writers never link an
 * audit row to the same head, and a use case's read-then-write sees no interleaved change. Readers
 * take no lock (READ COMMITTED: they see committed data only). The lock waits at most the lock
 * timeout (SET LOCAL lock_timeout), then fails as ERR_STORE_BUSY.
 *
 * `dsk init` against PostgreSQL is one transaction: open({ create }) begins it, creates the schema
 * and the store's identity row, and the first `transaction()` (the MASTER_INIT row) commits it; a
 * store closed before that rolls everything back, so a failed init leaves the database as it was.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import { UnavailableError } from '../../kernel/errors.js';
import { SCHEMA_VERSION } from '../migrations.js';
import type { AuditReads, DeliveryReads, KeyReads, KeySourceReads, MasterStateReads, NonceClaims, OperatorReads, Store, StoreTx, UsageReads } from '../store.js';
import type { PgAddress } from './address.js';
import { mapPgError } from './errors.js';
import { META_DDL, migrate, storedVersion } from './migrations.js';
import { bindAll, busyTimeoutMs, iterators, poolOf, qOf, txOf, type Client } from './tx.js';
import { importSqliteHome, type ImportCount } from './import.js';
import { PgKeys } from './keys.js';
import { PgEvents } from './events.js';
import { PgDeliveries, PgMasterState, PgOperators } from './operators.js';
import { PgNonces } from './nonces.js';
import { listenForKeyChanges } from './notify.js';
import { PgKeySources, PgUsage } from './usage.js';

/** Advisory lock ids: (namespace 'dsk', purpose). */
const NS = 0x64736b;
export const WRITER_LOCK = 1;
export const RUN_LOCK = 2;

const inside = new AsyncLocalStorage<PgStore>();

export interface PgOpenOptions {
  password?: () => Promise<string | undefined>;
  /** a new store for this home: fails when the database already holds one */
  create?: { homeId: string; keyCheckValue: string; sharedConfig: string; now: number; importFrom?: string };
  /** the home this node belongs to: a store of another home is refused */
  homeId?: string;
  lockTimeoutMs?: number;
}

export interface PgIdentity {
  home_id: string;
  key_check_value: string;
  shared_config: string;
  schema_version: number;
}

export class PgStore implements Store {
  readonly engine = 'postgres';
  readonly readonly = false;
  readonly schemaVersion = SCHEMA_VERSION;
  readonly keys: KeyReads;
  readonly operators: OperatorReads;
  readonly events: AuditReads & { recordedHead(): Promise<{ seq: number; hash: string } | null> };
  readonly masterState: MasterStateReads;
  readonly deliveries: DeliveryReads;
  readonly nonces: NonceClaims;
  readonly keySources: KeySourceReads;
  readonly usage: UsageReads;
  #pool: pg.Pool;
  #pending: Client | null = null;
  #lockTimeoutMs: number;
  #closed = false;

  private constructor(
    pool: pg.Pool,
    readonly address: string,
    lockTimeoutMs: number,
  ) {
    this.#pool = pool;
    this.#lockTimeoutMs = lockTimeoutMs;
    const q = qOf(pool, address, () => this.#guardRead());
    this.keys = new PgKeys(q);
    this.operators = new PgOperators(q);
    const ev = new PgEvents(q);
    this.events = Object.assign(bindAll(ev), iterators(ev));
    this.masterState = new PgMasterState(q);
    this.deliveries = new PgDeliveries(q);
    const usage = new PgUsage(q);
    // reads only: the writes go through a transaction's StoreTx
    this.usage = { totalsSince: usage.totalsSince.bind(usage), report: usage.report.bind(usage) };
    const sources = new PgKeySources(q);
    this.keySources = { all: sources.all.bind(sources) };
    this.nonces = new PgNonces(q);
  }

  /** LISTEN for the key-change trigger's NOTIFY (notify.ts). */
  watchKeys(onChange: () => void): Promise<() => Promise<void>> {
    return listenForKeyChanges(() => this.#pool.connect(), () => this.#closed, onChange);
  }

  static async open(a: PgAddress, opts: PgOpenOptions = {}): Promise<PgStore> {
    // query_timeout: a server that stops answering mid-query (host gone, no RST) fails the command
    // instead of hanging it; every dsk statement is short (long reads go in chunks).
    const pool = poolOf(a, opts.password, { max: 4, query_timeout: 60_000, idleTimeoutMillis: 10_000 });
    const store = new PgStore(pool, a.redacted, opts.lockTimeoutMs ?? busyTimeoutMs());
    try {
      if (opts.create) await store.#create(opts.create);
      else await store.#openExisting(opts.homeId);
    } catch (e) {
      await store.close();
      throw mapPgError(e, a.redacted);
    }
    return store;
  }

  /** Fails now, before anyone types a passphrase, if a new home could not be created in this database. */
  static async checkEmpty(a: PgAddress, opts: Pick<PgOpenOptions, 'password'>): Promise<void> {
    const found = await PgStore.#peek(a, opts.password);
    if (found) throw inUse(a.redacted, found.home_id);
  }

  /**
   * The schema version recorded in the store's dsk_meta, read on one connection without migrating
   * or locking (what `dsk doctor` reports); refuses a database with no store or another home's.
   */
  static async inspect(a: PgAddress, opts: Pick<PgOpenOptions, 'password' | 'homeId'>): Promise<number> {
    const found = await PgStore.#peek(a, opts.password);
    if (!found) throw new UnavailableError('ERR_STORE_EMPTY', `the store at ${a.redacted} holds no dsk store`, { hint: 'create one with dsk init --store URL, or move a home there with dsk store migrate --to URL' });
    if (opts.homeId !== undefined && found.home_id !== opts.homeId)
      throw new UnavailableError('ERR_STORE_OTHER_HOME', `the store at ${a.redacted} belongs to another dsk home (${found.home_id}, this home is ${opts.homeId})`, { hint: "point store.url in dsk.json at this home's own database" });
    return found.version;
  }

  static async #peek(a: PgAddress, password: PgOpenOptions['password']): Promise<{ version: number; home_id: string } | null> {
    const pool = poolOf(a, password, { max: 1 });
    try {
      return await storedVersion((s, p) => pool.query(s, p));
    } catch (e) {
      throw mapPgError(e, a.redacted);
    } finally {
      await pool.end().catch(() => {});
    }
  }

  async #create(c: NonNullable<PgOpenOptions['create']>): Promise<void> {
    const client = await this.#pool.connect();
    this.#pending = client;
    const q = qOf(client, this.address);
    await q.run('BEGIN');
    await q.run('SELECT pg_advisory_xact_lock($1, $2)', [NS, WRITER_LOCK]);
    const found = await storedVersion((s, p) => client.query(s, p));
    if (found) throw inUse(this.address, found.home_id);
    const tables = await q.rows("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() AND table_name IN ('keys', 'audit_events') LIMIT 1");
    if (tables.length) throw new UnavailableError('ERR_STORE_IN_USE', `the store at ${this.address} already has tables named like dsk's (${tables[0].table_name}) but no dsk identity; nothing was changed`, { hint: 'use an empty database for a new home' });
    await q.run(META_DDL);
    await q.run('INSERT INTO dsk_meta (id, home_id, schema_version, key_check_value, shared_config, created_at) VALUES (1, $1, 0, $2, $3, $4)', [c.homeId, c.keyCheckValue, c.sharedConfig, c.now]);
    await migrate((s, p) => client.query(s, p), 0, this.address);
    if (c.importFrom) this.imported = await importSqliteHome(c.importFrom, (s, p) => client.query(s, p), this.address);
  }

  /** What a create with `importFrom` copied, table by table. */
  imported: ImportCount[] = [];

  async #openExisting(homeId: string | undefined): Promise<void> {
    const exec = (s: string, p?: unknown[]) => this.#pool.query(s, p);
    const found = await storedVersion(exec);
    if (!found)
      throw new UnavailableError('ERR_STORE_EMPTY', `the store at ${this.address} holds no dsk store; nothing was changed`, { hint: 'create one with dsk init --store URL, or move a home there with dsk store migrate --to URL' });
    if (homeId !== undefined && found.home_id !== homeId)
      throw new UnavailableError('ERR_STORE_OTHER_HOME', `the store at ${this.address} belongs to another dsk home (${found.home_id}, this home is ${homeId}); nothing was changed`, {
        hint: 'point store.url in dsk.json at this home\'s own database; a new node joins with dsk init --join URL',
      });
    migrateCheck(found.version, this.address);
    if (found.version < SCHEMA_VERSION)
      await this.#withClient(async (client) => {
        const now = await storedVersion((s, p) => client.query(s, p));
        await migrate((s, p) => client.query(s, p), now!.version, this.address);
      });
  }

  /** The store's identity row (what join compares). */
  async identity(): Promise<PgIdentity> {
    return (await this.#pool.query('SELECT home_id, key_check_value, shared_config, schema_version FROM dsk_meta WHERE id = 1').catch((e) => Promise.reject(mapPgError(e, this.address)))).rows[0];
  }

  async sharedConfig(): Promise<string> {
    return (await this.identity()).shared_config;
  }

  async transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T> {
    if (inside.getStore() === this) throw new Error('internal: a transaction was opened inside a transaction on the same store; pass the StoreTx down instead');
    if (this.#closed) throw new Error('internal: the store is closed');
    const pending = this.#pending;
    this.#pending = null;
    return this.#withClient((client) => {
      let live = true;
      const q = qOf(client, this.address, () => {
        if (!live) throw new Error('internal: a StoreTx was used after its transaction ended');
      });
      return inside.run(this, () => fn(txOf(q))).finally(() => (live = false));
    }, pending);
  }

  /** Runs fn in a transaction on one client, holding the writer lock (taken unless `pending` holds it already). */
  async #withClient<T>(fn: (c: Client) => Promise<T>, pending: Client | null = null): Promise<T> {
    let client: Client;
    try {
      client = pending ?? (await this.#pool.connect());
    } catch (e) {
      throw mapPgError(e, this.address);
    }
    let broken: unknown = null;
    try {
      if (!pending) {
        // One round trip (the simple protocol runs the three in order, all numbers from this module).
        await client.query(`BEGIN; SET LOCAL lock_timeout = ${Math.max(1, Math.floor(this.#lockTimeoutMs))}; SELECT pg_advisory_xact_lock(${NS}, ${WRITER_LOCK})`);
      }
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (e) {
      try {
        await client.query('ROLLBACK');
      } catch (r) {
        broken = r; // the connection is gone: do not return it to the pool
      }
      throw mapPgError(e, this.address);
    } finally {
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  /**
   * The run lock of `rotate` on this store: a session advisory lock on a connection of its own, so
   * every node of the home contends for it and a killed holder's lock ends with its session.
   */
  async runLock(o: { wait?: boolean; timeoutMs?: number } = {}): Promise<{ release(): Promise<void> } | null> {
    const client = await this.#pool.connect().catch((e) => Promise.reject(mapPgError(e, this.address)));
    const deadline = Date.now() + (o.timeoutMs ?? 24 * 3_600_000);
    try {
      for (;;) {
        const got = (await client.query('SELECT pg_try_advisory_lock($1, $2) AS ok', [NS, RUN_LOCK])).rows[0].ok as boolean;
        if (got) {
          let done = false;
          return {
            release: async () => {
              if (done) return;
              done = true;
              try {
                await client.query('SELECT pg_advisory_unlock($1, $2)', [NS, RUN_LOCK]);
                client.release();
              } catch (e) {
                client.release(e as Error);
              }
            },
          };
        }
        if (!o.wait || Date.now() >= deadline) {
          client.release();
          return null;
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    } catch (e) {
      client.release(e as Error);
      throw mapPgError(e, this.address);
    }
  }

  async setLockTimeout(ms: number): Promise<number> {
    const previous = this.#lockTimeoutMs;
    this.#lockTimeoutMs = Math.max(0, Math.floor(ms));
    return previous;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#pending) {
      await this.#pending.query('ROLLBACK').catch(() => {});
      this.#pending.release();
      this.#pending = null;
    }
    await this.#pool.end().catch(() => {});
  }

  #guardRead(): void {
    if (inside.getStore() === this) throw new Error('internal: a store read outside the running transaction; read through its StoreTx');
    if (this.#closed) throw new Error('internal: the store is closed');
  }
}

function inUse(address: string, homeId: string): UnavailableError {
  return new UnavailableError('ERR_STORE_IN_USE', `the store at ${address} already holds dsk home ${homeId}; nothing was changed`, { hint: 'add this node to that home with dsk init --join URL, or use an empty database for a new home' });
}

function migrateCheck(found: number, address: string): void {
  if (found > SCHEMA_VERSION)
    throw new UnavailableError('ERR_SCHEMA_TOO_NEW', `the store at ${address} has schema version ${found}, newer than this dsk knows (${SCHEMA_VERSION}); nothing was changed`, { hint: 'a newer dsk wrote this store: upgrade dsk on this node' });
}

