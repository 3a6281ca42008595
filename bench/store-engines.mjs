// Store engines side by side: one dsk write transaction (insert a key + append a keyed audit row,
// then move audit_log/HEAD, as keygen does minus the KDF) on SQLite and on PostgreSQL, each against
// a raw baseline of the same two inserts on the same engine (better-sqlite3 / pg, no chain, no
// lock, no HEAD). On PostgreSQL also two writers at once (two connections, serialised on the writer
// lock); SQLite's driver is synchronous, so a second writer in one process would block the thread
// that holds the lock: its concurrency is across processes (test/store.test.ts). Rounds interleave
// engines so load hits all alike.
// Run after `npx tsc -p .`:
//   node bench/store-engines.mjs               # 300 transactions per side and round, 3 rounds
//   node bench/store-engines.mjs --n 100       # quicker
// PostgreSQL: DSK_BENCH_PG (default postgres://postgres@127.0.0.1:5432/postgres, used to create and
// drop a scratch database).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { default: Database } = await import('better-sqlite3');
const { default: pg } = await import('pg');
const { openStore } = await import(path.join(root, 'dist/store/open.js'));
const { saveConfig } = await import(path.join(root, 'dist/store/config-file.js'));
const { Home } = await import(path.join(root, 'dist/app/home.js'));
const { DEFAULT_POLICY } = await import(path.join(root, 'dist/domain/policy.js'));
const { DEFAULT_ROLES } = await import(path.join(root, 'dist/domain/roles.js'));

const argv = process.argv.slice(2);
const N = argv.includes('--n') ? Number(argv[argv.indexOf('--n') + 1]) : 300;
const ROUNDS = 3;
const admin = new URL(process.env.DSK_BENCH_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres');
const dbName = `dsk_bench_${crypto.randomBytes(4).toString('hex')}`;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-bench-engines-'));
const auditKey = crypto.randomBytes(32);
const env = { clock: { now: () => Date.now() }, random: (n) => crypto.randomBytes(n), actor: 'bench', sourceIp: null };
const identity = { keyCheckValue: 'bench', sharedConfig: '{}', now: Date.now() };

const pgAdmin = new pg.Client({ host: admin.hostname, port: Number(admin.port || 5432), user: decodeURIComponent(admin.username) || 'postgres', database: admin.pathname.slice(1) || 'postgres' });
await pgAdmin.connect();
await pgAdmin.query(`CREATE DATABASE ${dbName}`);
const pgUrl = `postgres://${pgAdmin.user}@${pgAdmin.host}:${pgAdmin.port}/${dbName}`;

async function newHome(name, store) {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir, { mode: 0o700 });
  const config = { format: 'dsk-config/1', home_id: 'ab'.repeat(8), backend: 'software', created_at: new Date().toISOString(), policy: DEFAULT_POLICY, roles: DEFAULT_ROLES, ...(store ? { store: { url: store } } : {}) };
  saveConfig(dir, config);
  const s = await openStore(dir, { create: true, identity });
  await s.transaction(async () => {});
  return { dir, config, store: s };
}

const sqliteHome = await newHome('sqlite');
const pgHome = await newHome('pg', pgUrl);
const homes = { sqlite: sqliteHome, postgres: pgHome };

let serial = 0;
function newKey() {
  const id = (++serial).toString(16).padStart(12, '0');
  return { id, name: `k-${id}`, owner: null, role: 'developer', key_hash: crypto.randomBytes(32).toString('hex'), salt: '00', secret_sealed: crypto.randomBytes(48), created_at: Date.now(), expires_at: null, rotate_every_ms: null, max_uses: null, replaces: null, options: '{}' };
}

/** dsk: one Home.tx per key, on `conns` connections at once. */
async function dskRun(engine, conns) {
  const h = homes[engine];
  const stores = [h.store, ...(await Promise.all(Array.from({ length: conns - 1 }, () => openStore(h.dir))))];
  const t0 = performance.now();
  await Promise.all(
    stores.map(async (s) => {
      const home = new Home(h.dir, h.config, s, env, null, null, auditKey);
      for (let i = 0; i < N / conns; i++) {
        const k = newKey();
        await home.tx(async (t) => {
          await t.keys.insert(k);
          await t.audit({ action: 'KEY_CREATE', key_id: k.id, details: { name: k.name } });
        });
      }
    }),
  );
  const ms = performance.now() - t0;
  for (const s of stores.slice(1)) await s.close();
  return (N / ms) * 1000;
}

/** Baseline: the same two inserts in one transaction, straight through the driver. */
async function rawRun(engine, conns) {
  const row = () => {
    const k = newKey();
    return [k.id, k.name, k.key_hash, k.secret_sealed, k.created_at, crypto.randomBytes(32).toString('hex')];
  };
  const t0 = performance.now();
  if (engine === 'sqlite') {
    const dbs = Array.from({ length: conns }, () => {
      const d = new Database(path.join(sqliteHome.dir, 'keys.db'));
      d.pragma('busy_timeout = 10000');
      d.pragma('synchronous = FULL');
      d.exec(`CREATE TABLE IF NOT EXISTS raw_keys (id TEXT PRIMARY KEY, name TEXT, key_hash TEXT, secret BLOB, created_at INTEGER); CREATE TABLE IF NOT EXISTS raw_events (id TEXT, hash TEXT)`);
      return d;
    });
    await Promise.all(
      dbs.map(async (d) => {
        const a = d.prepare('INSERT INTO raw_keys VALUES (?,?,?,?,?)');
        const b = d.prepare('INSERT INTO raw_events VALUES (?,?)');
        for (let i = 0; i < N / conns; i++) {
          const r = row();
          d.exec('BEGIN IMMEDIATE');
          a.run(r[0], r[1], r[2], r[3], r[4]);
          b.run(r[0], r[5]);
          d.exec('COMMIT');
          await null;
        }
        d.close();
      }),
    );
  } else {
    const clients = await Promise.all(
      Array.from({ length: conns }, async () => {
        const c = new pg.Client({ host: pgAdmin.host, port: pgAdmin.port, user: pgAdmin.user, database: dbName });
        await c.connect();
        await c.query('CREATE TABLE IF NOT EXISTS raw_keys (id TEXT PRIMARY KEY, name TEXT, key_hash TEXT, secret BYTEA, created_at BIGINT); CREATE TABLE IF NOT EXISTS raw_events (id TEXT, hash TEXT)').catch(() => {});
        return c;
      }),
    );
    await Promise.all(
      clients.map(async (c) => {
        for (let i = 0; i < N / conns; i++) {
          const r = row();
          await c.query('BEGIN');
          await c.query('INSERT INTO raw_keys VALUES ($1,$2,$3,$4,$5)', r.slice(0, 5));
          await c.query('INSERT INTO raw_events VALUES ($1,$2)', [r[0], r[5]]);
          await c.query('COMMIT');
        }
        await c.end();
      }),
    );
  }
  return (N / (performance.now() - t0)) * 1000;
}

const results = {};
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
try {
  for (let r = 0; r < ROUNDS; r++)
    for (const engine of ['sqlite', 'postgres'])
      for (const conns of engine === 'sqlite' ? [1] : [1, 2]) {
        const key = `${engine}/${conns}`;
        results[key] ??= { dsk: [], raw: [] };
        results[key].raw.push(await rawRun(engine, conns));
        results[key].dsk.push(await dskRun(engine, conns));
      }
  console.log(`store engines: ${N} write transactions per side and round, ${ROUNDS} rounds, medians (Node ${process.version}, load ${os.loadavg()[0].toFixed(1)})`);
  console.log('| engine | writers | dsk tx/s (key + audit row + HEAD) | raw tx/s (same 2 inserts) | ratio |');
  console.log('|---|---|---|---|---|');
  for (const [key, v] of Object.entries(results)) {
    const [engine, conns] = key.split('/');
    const d = median(v.dsk);
    const b = median(v.raw);
    console.log(`| ${engine} | ${conns} | ${Math.round(d)} | ${Math.round(b)} | ${(d / b).toFixed(2)} |`);
  }
  const sq = median(results['sqlite/1'].dsk);
  const pq = median(results['postgres/1'].dsk);
  console.log(`dsk on PostgreSQL / dsk on SQLite, one writer: ${(pq / sq).toFixed(2)}`);
} finally {
  await sqliteHome.store.close();
  await pgHome.store.close();
  await pgAdmin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await pgAdmin.end();
  fs.rmSync(tmp, { recursive: true, force: true });
}
