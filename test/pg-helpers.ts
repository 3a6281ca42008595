/**
 * PostgreSQL for tests: the server at 127.0.0.1:5432 (trust auth, user postgres), a fresh database
 * per test file (dsk_test_<random>), dropped in afterAll. Under CI=true a missing server fails the
 * run; elsewhere the PostgreSQL tests skip with a printed reason (scripts/test-all.sh starts one).
 */
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { afterAll } from 'vitest';
import pg from 'pg';

export const PG_HOST = process.env.DSK_TEST_PGHOST ?? '127.0.0.1';
export const PG_PORT = Number(process.env.DSK_TEST_PGPORT ?? 5432);
export const PG_USER = process.env.DSK_TEST_PGUSER ?? 'postgres';
export const PG_BIN = '/usr/lib/postgresql/15/bin';

export function pgReady(host = PG_HOST, port = PG_PORT): boolean {
  const r = spawnSync('pg_isready', ['-h', host, '-p', String(port)], { encoding: 'utf8' });
  return r.status === 0;
}

/** True when PostgreSQL answers; under CI=true its absence is a failure, never a skip. */
export function requirePostgres(tests: string): boolean {
  if (pgReady()) return true;
  const missing = `PostgreSQL not answering at ${PG_HOST}:${PG_PORT} (scripts/test-all.sh installs and starts it)`;
  if (process.env.CI === 'true') throw new Error(`${missing}: CI=true, and ${tests} must run in CI`);
  console.warn(`skipping ${tests}: ${missing}`);
  return false;
}

export async function admin<T>(fn: (c: pg.Client) => Promise<T>, database = 'postgres', port = PG_PORT): Promise<T> {
  const c = new pg.Client({ host: PG_HOST, port, user: PG_USER, database });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

export function pgUrl(database: string, port = PG_PORT, user = PG_USER): string {
  return `postgres://${user}@${PG_HOST}:${port}/${database}`;
}

const created: string[] = [];
let hooked = false;

/** A new empty database, dropped after this test file. */
export async function freshDatabase(): Promise<{ name: string; url: string }> {
  const name = `dsk_test_${crypto.randomBytes(6).toString('hex')}`;
  await admin((c) => c.query(`CREATE DATABASE ${name}`));
  created.push(name);
  if (!hooked) {
    hooked = true;
    afterAll(async () => {
      for (const n of created.splice(0)) await admin((c) => c.query(`DROP DATABASE IF EXISTS ${n} WITH (FORCE)`)).catch(() => {});
    });
  }
  return { name, url: pgUrl(name) };
}

/** Runs SQL against a test database (for tampering and inspection). */
export function sql<T = any>(database: string, text: string, params: unknown[] = []): Promise<T[]> {
  return admin(async (c) => (await c.query(text, params)).rows as T[], database);
}
