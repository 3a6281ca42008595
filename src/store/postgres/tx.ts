/**
 * The pieces a PostgreSQL transaction is made of: queries on one client (or the pool) with errors
 * mapped, the StoreTx over them, the chunked audit readers, and the engine's timeouts.
 */
import pg from 'pg';
import type { AuditFilter, AuditReads, AuditRow, AuditTuple, AuditWrites, KeyWrites, OperatorWrites, StoreTx, UsageWrites } from '../store.js';
import { mapPgError } from './errors.js';
import type { Q } from './query.js';
import type { PgAddress } from './address.js';
import { PgKeys } from './keys.js';
import { PgEvents } from './events.js';
import { PgDeliveries, PgMasterState, PgOperators } from './operators.js';
import { PgKeySources, PgUsage } from './usage.js';

const CHUNK = 20_000;

/** BIGINT as a JavaScript number (every dsk integer is far below 2^53). */
const INT8 = 20;
export const types = {
  getTypeParser: ((oid: number, format?: string) => (oid === INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text'))) as pg.CustomTypesConfig['getTypeParser'],
};

export type Client = pg.PoolClient;

/** A pool on the store's address; an idle client whose server went away reports on its next query. */
export function poolOf(a: PgAddress, password: (() => Promise<string | undefined>) | undefined, o: pg.PoolConfig): pg.Pool {
  const pool = new pg.Pool({
    host: a.host,
    port: a.port,
    database: a.database,
    user: a.user,
    // undefined from the source: no password (pg then fails the login, mapped to ERR_STORE_LOGIN)
    password: password as (() => Promise<string>) | undefined,
    ssl: a.ssl ? { rejectUnauthorized: true } : undefined,
    connectionTimeoutMillis: connectTimeoutMs(),
    application_name: 'dsk',
    types,
    ...o,
  });
  pool.on('error', () => {});
  return pool;
}
type Runner = Pick<pg.Pool, 'query'>;

export function qOf(c: Runner, address: string, guard: () => void = () => {}): Q {
  const wrap = async <R>(f: () => Promise<R>): Promise<R> => {
    guard();
    try {
      return await f();
    } catch (e) {
      throw mapPgError(e, address);
    }
  };
  return {
    rows: (sql, params) => wrap(async () => (await c.query(sql, params as unknown[])).rows),
    arrays: (sql, params) => wrap(async () => (await c.query({ text: sql, values: params as unknown[], rowMode: 'array' })).rows as never),
    run: (sql, params) => wrap(async () => (await c.query(sql, params as unknown[])).rowCount ?? 0),
  };
}

export function txOf(q: Q): StoreTx {
  const keys = new PgKeys(q);
  const ev = new PgEvents(q);
  return {
    setSharedConfig: async (json: string) => void (await q.run('UPDATE dsk_meta SET shared_config = $1 WHERE id = 1', [json])),
    keys: keys as unknown as KeyWrites,
    usage: { bump: (id, n, at) => keys.bump(id, n, at), firstApply: (w, seq, now) => keys.firstApply(w, seq, now), ...bindAll(new PgUsage(q)) } as UsageWrites,
    operators: new PgOperators(q) as unknown as OperatorWrites,
    events: Object.assign(bindAll(ev), iterators(ev)) as AuditWrites,
    masterState: new PgMasterState(q),
    deliveries: new PgDeliveries(q),
    keySources: bindAll(new PgKeySources(q)),
  };
}

/** The class's methods as own properties (so spreading a StoreTx keeps them). */
export function bindAll<T extends object>(o: T): T {
  const out = {} as Record<string, unknown>;
  for (const n of Object.getOwnPropertyNames(Object.getPrototypeOf(o))) if (n !== 'constructor') out[n] = (o as Record<string, any>)[n].bind(o);
  return out as T;
}

export function iterators(ev: PgEvents): Pick<AuditReads, 'chunks' | 'exportChunks'> {
  return {
    async *chunks(lo = 0, hi = Number.MAX_SAFE_INTEGER, size = CHUNK): AsyncIterable<AuditTuple[]> {
      let after = lo;
      for (;;) {
        const rows = await ev.chunk(after, hi, size);
        if (rows.length) yield rows;
        if (rows.length < size) return;
        after = rows[rows.length - 1][0];
      }
    },
    async *exportChunks(f: AuditFilter, size = CHUNK): AsyncIterable<AuditRow[]> {
      let after = 0;
      for (;;) {
        const c = await ev.exportChunk(f, after, size);
        if (c.rows.length) yield c.rows;
        if (!c.more || c.lastSeq === null) return;
        after = c.lastSeq;
      }
    },
  };
}

export function busyTimeoutMs(): number {
  const v = Number(process.env.DSK_BUSY_TIMEOUT_MS);
  return Number.isSafeInteger(v) && v >= 0 ? v : 10_000;
}

/** How long connecting may take before the store counts as unreachable; DSK_STORE_CONNECT_TIMEOUT_MS overrides. */
export function connectTimeoutMs(): number {
  const v = Number(process.env.DSK_STORE_CONNECT_TIMEOUT_MS);
  return Number.isSafeInteger(v) && v > 0 ? v : 5_000;
}
