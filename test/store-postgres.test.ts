/**
 * The store contract on both engines (SQLite files, a fresh PostgreSQL database), then what only a
 * shared store has: writers in several "nodes" (separate Store objects, separate connections)
 * forming one chain, the recorded head that names a truncated tail, init as one transaction, the
 * identity checks and the run lock.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import { describe, expect, it, afterEach } from 'vitest';
import { tmpDir } from './helpers.js';
import { freshDatabase, requirePostgres, sql } from './pg-helpers.js';
import { openStore, openPgStore } from '../src/store/open.js';
import { SCHEMA_VERSION } from '../src/store/migrations.js';
import { saveConfig } from '../src/store/config-file.js';
import type { NewKey, Store } from '../src/store/store.js';
import type { PgStore } from '../src/store/postgres/engine.js';
import { Home } from '../src/app/home.js';
import { verifyChain } from '../src/audit/verify.js';
import { readHead } from '../src/audit/head.js';
import { DEFAULT_POLICY } from '../src/domain/policy.js';
import { DEFAULT_ROLES } from '../src/domain/roles.js';
import { fixedClock, systemRandom } from '../src/kernel/clock.js';
import { auditFilterFromParams, queryAudit } from '../src/audit/query.js';
import { parseCidr } from '../src/kernel/ip.js';

const PG = requirePostgres('the PostgreSQL store tests');
const T0 = Date.UTC(2026, 0, 1);
const opened: Store[] = [];
afterEach(async () => {
  while (opened.length) await opened.pop()!.close();
});

const HOME_ID = 'ab'.repeat(8);
const identity = { keyCheckValue: 'kcv-test', sharedConfig: '{}', now: T0 };

async function fresh(engine: 'sqlite' | 'postgres'): Promise<{ dir: string; store: Store; home: Home; url: string | null; db: string | null }> {
  const dir = path.join(tmpDir('dsk-pgstore-'), 'home');
  const config = { format: 'dsk-config/1' as const, home_id: HOME_ID, backend: 'software' as const, created_at: new Date(T0).toISOString(), policy: DEFAULT_POLICY, roles: DEFAULT_ROLES };
  let url: string | null = null;
  let db: string | null = null;
  if (engine === 'postgres') {
    ({ url, name: db } = await freshDatabase());
    Object.assign(config, { store: { url } });
  }
  (await import('node:fs')).mkdirSync(dir, { recursive: true, mode: 0o700 });
  saveConfig(dir, config);
  const store = await openStore(dir, { create: true, identity });
  opened.push(store);
  await store.transaction(async () => {}); // commits a new PostgreSQL store (init is one transaction)
  const home = new Home(dir, config, store, { clock: fixedClock(T0), random: systemRandom, actor: 'tester' }, null, null, crypto.randomBytes(32));
  return { dir, store, home, url, db };
}

function key(id: string, over: Partial<NewKey> = {}): NewKey {
  return { id, name: `k-${id}`, owner: null, role: 'developer', key_hash: crypto.randomBytes(32).toString('hex'), salt: '00', secret_sealed: Buffer.from([1, 2, 3]), created_at: T0, expires_at: null, rotate_every_ms: null, max_uses: null, replaces: null, options: '{}', ...over };
}

const engines = PG ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);

describe.each(engines)('store contract on %s', (engine) => {
  it('keys: insert, lifecycle updates, plans and counts read the same on both engines', async () => {
    const { store, home } = await fresh(engine);
    await home.tx(async (t) => {
      await t.keys.insert(key('a00000000001', { rotate_every_ms: 1000, max_uses: 10 }));
      await t.keys.insert(key('a00000000002', { expires_at: T0 + 500, created_at: T0 + 1 }));
      await t.keys.insert(key('a00000000003', { created_at: T0 + 2, options: '{"require_signature":true}' }));
      await t.audit({ action: 'KEY_CREATE', details: {} });
    });
    const k = (await store.keys.get('a00000000001'))!;
    expect(k).toMatchObject({ status: 'active', use_count: 0, created_at: T0, rotate_every_ms: 1000, max_uses: 10, updated_at: T0 });
    expect(Buffer.isBuffer(k.secret_sealed) && [...k.secret_sealed]).toEqual([1, 2, 3]);
    expect((await store.keys.list()).map((r) => r.id)).toEqual(['a00000000001', 'a00000000002', 'a00000000003']);
    expect(await store.keys.list({ status: ['active'], limit: 1 })).toHaveLength(1);
    expect(await store.keys.rotationDue(T0 + 1000)).toEqual([{ id: 'a00000000001', name: 'k-a00000000001', status: 'active', use_count: 0, max_uses: 10 }]);
    expect(await store.keys.expiredBy(T0 + 600)).toEqual([{ id: 'a00000000002', name: 'k-a00000000002' }]);
    await store.transaction(async (tx) => {
      await tx.usage.bump('a00000000001', 9, T0 + 5);
      await tx.usage.bump('a00000000001', 1, T0 + 3);
      await tx.keys.revoke('a00000000003', { now: T0 + 10, reason: 'leak', reissue: true });
      expect(await tx.keys.expire('a00000000002', T0 + 600)).toBe(true);
      expect(await tx.keys.expire('a00000000002', T0 + 600)).toBe(false);
    });
    expect(await store.keys.get('a00000000001')).toMatchObject({ use_count: 10, last_used_at: T0 + 5 });
    expect((await store.keys.nearUseLimit(0.8)).map((r) => r.id)).toEqual([]);
    const due = await store.keys.rotationDue(T0 + 1);
    expect(due.map((r) => [r.id, r.status])).toEqual([
      ['a00000000001', 'active'],
      ['a00000000003', 'revoked'],
    ]);
    await store.transaction(async (tx) => {
      await tx.keys.reissued('a00000000003', { successor: 'a00000000009', now: T0 + 20 });
      await tx.keys.startGrace('a00000000001', { successor: 'a00000000008', graceUntil: T0 + 100, now: T0 + 20 });
    });
    expect(JSON.parse((await store.keys.get('a00000000003'))!.options)).toEqual({ require_signature: true });
    expect(await store.keys.graceEndedBy(T0 + 100)).toEqual([{ id: 'a00000000001', name: 'k-a00000000001' }]);
    expect(await store.keys.countByStatus()).toEqual({ grace: 1, expired: 1, revoked: 1 });
    expect(await store.keys.countLive('developer')).toBe(1);
  });

  it('a throw rolls back the change and its audit row; many appenders form one chain that verifies', async () => {
    const { store, home } = await fresh(engine);
    await expect(
      home.tx(async (t) => {
        await t.keys.insert(key('b00000000001'));
        await t.audit({ action: 'KEY_CREATE', key_id: 'b00000000001', details: {} });
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await store.keys.get('b00000000001')).toBeUndefined();
    expect(await store.events.count()).toBe(0);
    await Promise.all(Array.from({ length: 20 }, (_, i) => home.tx((t) => t.audit({ action: 'TEST_EVENT', details: { i } }))));
    const v = await verifyChain(store, readHead(home.dir), home.auditKey);
    expect(v.breach).toBeNull();
    expect(v).toMatchObject({ ok: true, rows: 20, authenticated_through: 20, head_file: { state: 'match' } });
  });

  it('audit reads: tuples in chunks, filters incl. an address block, stats', async () => {
    const { store, home } = await fresh(engine);
    const clock = home.env.clock as ReturnType<typeof fixedClock>;
    for (const [action, ip] of [['KEY_CREATE', '10.1.2.3'], ['AUTH_FAILURE', '::ffff:10.1.9.9'], ['AUTH_FAILURE', '192.168.0.1'], ['KEY_REVOKE', null]] as const) {
      clock.advance(60_000);
      await home.tx((t) => t.audit({ action, source_ip: ip, key_id: null, details: {} }));
    }
    const chunks = [];
    for await (const c of store.events.chunks(0, 100, 3)) chunks.push(c.map((r) => r[0]));
    expect(chunks).toEqual([[1, 2, 3], [4]]);
    const q = async (qs: string) => (await queryAudit(store, auditFilterFromParams(new URLSearchParams(qs), clock.now()))).map((r) => r.seq);
    expect(await q('')).toEqual([4, 3, 2, 1]);
    expect(await q('action=auth_failure,KEY_REVOKE')).toEqual([4, 3, 2]);
    expect(await q('source_ip=10.1.0.0/16')).toEqual([2, 1]);
    expect(await q('limit=1&source_ip=10.0.0.0/8')).toEqual([2]);
    const exported = [];
    for await (const c of store.events.exportChunks({ ip: parseCidr('10.0.0.0/8')! }, 1)) exported.push(...c.map((r) => r.seq));
    expect(exported).toEqual([1, 2]);
    expect(await store.events.stats(new Date(T0).toISOString())).toMatchObject({ total: 4, by_action: [{ action: 'AUTH_FAILURE', count: 2 }, { action: 'KEY_CREATE', count: 1 }, { action: 'KEY_REVOKE', count: 1 }] });
    expect(await store.events.bounds()).toEqual({ first: 1, last: 4 });
    expect(await store.events.firstPrevHash(1, 4)).toBe(await store.events.hashAt(1));
  });

  it('operators, their failures and lockout; deliveries; master state', async () => {
    const { store } = await fresh(engine);
    await store.transaction(async (tx) => {
      await tx.operators.insert({ name: 'bob', role: 'admin', totp_sealed: Buffer.from([9, 9]), created_at: T0, created_by: 'alice' });
      await tx.operators.insert({ name: 'Al', role: 'auditor', totp_sealed: null, created_at: T0, created_by: 'alice' });
      await tx.operators.confirmEnrolment('bob', T0 + 1);
      expect(await tx.operators.recordFailure('bob', T0 + 2, T0)).toBe(1);
      expect(await tx.operators.recordFailure('bob', T0 + 3, T0)).toBe(2);
      expect(await tx.operators.recordFailure('bob', T0 + 4, T0 + 2)).toBe(2);
      await tx.operators.acceptCode('bob', 77);
      expect(await tx.operators.recordFailure('bob', T0 + 5, T0)).toBe(1);
      await tx.operators.lock('bob', T0 + 60_000);
    });
    expect((await store.operators.list()).map((o) => o.name)).toEqual(['Al', 'bob']);
    expect(await store.operators.get('bob')).toMatchObject({ role: 'admin', enrolled_at: T0 + 1, last_otp_step: 77, lock_until: T0 + 60_000, totp_sealed: Buffer.from([9, 9]) });
    expect(await store.operators.countEnrolled('admin')).toBe(1);
    await store.transaction(async (tx) => {
      await tx.operators.resetSecret('bob', Buffer.from([1]));
      await tx.operators.remove('Al');
    });
    expect(await store.operators.get('bob')).toMatchObject({ enrolled_at: null, last_otp_step: null, lock_until: null });
    expect(await store.operators.get('Al')).toBeUndefined();

    await store.transaction(async (tx) => {
      await tx.keys.insert(key('f00000000001'));
      await tx.keys.insert(key('f00000000002', { replaces: 'f00000000001' }));
      await tx.deliveries.add({ key_id: 'f00000000002', old_key_id: 'f00000000001', trigger: 'SCHEDULE', created_at: T0 });
      await tx.deliveries.failed('f00000000002', 'x'.repeat(600), T0 + 1);
    });
    expect(await store.deliveries.pending()).toEqual([{ key_id: 'f00000000002', old_key_id: 'f00000000001', name: 'k-f00000000002', trigger: 'SCHEDULE', created_at: T0, attempts: 1, last_error: 'x'.repeat(500) }]);
    await store.transaction((tx) => tx.deliveries.delivered('f00000000002', T0 + 2));
    expect(await store.deliveries.pending()).toEqual([]);

    expect(await store.masterState.keyCheckValue()).toBeNull();
    await store.transaction((tx) => tx.masterState.recordReplacement('aa', T0));
    await store.transaction((tx) => tx.masterState.recordReplacement('bb', T0 + 1));
    expect(await store.masterState.keyCheckValue()).toBe('bb');
  });

  it('usage counters, quota marks and key sources read the same on both engines', async () => {
    const { store } = await fresh(engine);
    const H = 3_600_000;
    const row = (key_id: string, hour: number, model: string, n: number) => ({ key_id, hour, model, requests: n, errors: 1, prompt_tokens: 10 * n, completion_tokens: 2 ** 33, no_usage: 0, last_at: hour + n });
    await store.transaction(async (tx) => {
      await tx.keys.insert(key('e00000000002', { owner: 'ml' }));
      // two rows for one (key, hour, model) in one call add up, as two gateways' flushes do
      await tx.usage.addHourly([row('e00000000002', T0, 'r1', 2), row('e00000000002', T0, 'r1', 3), row('E00000000001', T0 + H, '', 1)]);
      await tx.usage.addHourly([row('e00000000002', T0, 'r1', 1)]);
      expect(await tx.usage.markQuota('e00000000002', 'tokens', T0, 80, T0)).toBe(true);
      expect(await tx.usage.markQuota('e00000000002', 'tokens', T0, 80, T0 + 1)).toBe(false);
      expect(await tx.usage.markQuota('e00000000002', 'tokens', T0, 100, T0 + 1)).toBe(true);
      await tx.keySources.learn([
        { key_id: 'e00000000002', kind: 'site', value: 'lab', first_seen: T0 + 5 },
        { key_id: 'e00000000002', kind: 'country', value: 'GB', first_seen: T0 + 1 },
        { key_id: 'e00000000002', kind: 'site', value: 'lab', first_seen: T0 + 9 },
      ]);
      await tx.keySources.learn([{ key_id: 'E00000000001', kind: 'asn', value: 'AS1', first_seen: T0 }]);
      expect(await tx.usage.totalsSince(T0, 'e00000000002')).toHaveLength(1);
    });
    const big = 3 * 2 ** 33;
    expect(await store.usage.totalsSince(T0)).toEqual([
      { key_id: 'E00000000001', requests: 1, errors: 1, prompt_tokens: 10, completion_tokens: 2 ** 33, last_at: T0 + H + 1 },
      { key_id: 'e00000000002', requests: 6, errors: 3, prompt_tokens: 60, completion_tokens: big, last_at: T0 + 3 },
    ]);
    expect(await store.usage.totalsSince(T0 + 1, 'e00000000002')).toEqual([]);
    expect((await store.usage.report(T0)).map((r) => [r.key_id, r.hour, r.model, r.requests, r.name, r.owner])).toEqual([
      ['e00000000002', T0, 'r1', 6, 'k-e00000000002', 'ml'],
      ['E00000000001', T0 + H, '', 1, null, null],
    ]);
    expect(await store.keySources.all()).toEqual([
      { key_id: 'E00000000001', kind: 'asn', value: 'AS1', first_seen: T0 },
      { key_id: 'e00000000002', kind: 'country', value: 'GB', first_seen: T0 + 1 },
      { key_id: 'e00000000002', kind: 'site', value: 'lab', first_seen: T0 + 5 },
    ]);
  });

  it('keys.version() moves when another connection commits a key change', async () => {
    const { dir, store } = await fresh(engine);
    const v0 = await store.keys.version();
    expect(await store.keys.version()).toBe(v0);
    const other = await openStore(dir);
    opened.push(other);
    await other.transaction((tx) => tx.keys.insert(key('c00000000001')));
    expect(await store.keys.version()).not.toBe(v0);
  });
});

describe.runIf(PG)('what only the shared PostgreSQL store has', () => {
  it('writers on several nodes serialise on the chain head: one unbroken chain', async () => {
    const { dir, store, home } = await fresh('postgres');
    const nodes = await Promise.all([1, 2, 3].map(() => openStore(dir)));
    opened.push(...nodes);
    const homes = nodes.map((s) => new Home(dir, home.config, s, home.env, null, null, home.auditKey));
    await Promise.all(homes.flatMap((h, n) => Array.from({ length: 15 }, (_, i) => h.tx((t) => t.audit({ action: 'TEST_EVENT', details: { n, i } })))));
    expect(await store.events.count()).toBe(45);
    expect(await verifyChain(store, readHead(dir), home.auditKey)).toMatchObject({ ok: true, rows: 45, authenticated_through: 45 });
  });

  it('a tail cut off is named from the head the store recorded, even where the local HEAD is behind', async () => {
    const { dir, store, home, db } = await fresh('postgres');
    for (let i = 0; i < 5; i++) await home.tx((t) => t.audit({ action: 'TEST_EVENT', details: { i } }));
    // Another node appended 3 more rows: this node's HEAD file still says 5.
    const other = await openStore(dir);
    opened.push(other);
    const otherHome = new Home(tmpDir(), home.config, other, home.env, null, null, home.auditKey);
    for (let i = 0; i < 3; i++) await otherHome.tx((t) => t.audit({ action: 'TEST_EVENT', details: { i } }));
    expect(await verifyChain(store, readHead(dir), home.auditKey)).toMatchObject({ ok: true, head_file: { state: 'behind', rows_behind: 3 } });
    await sql(db!, 'DELETE FROM audit_events WHERE seq > 6');
    expect(await verifyChain(store, readHead(dir), home.auditKey)).toMatchObject({ ok: false, breach: { kind: 'truncated', seq: 7 } });
  });

  it('usage flushes do not move keys.version(), so they make no gateway reload its index; a revocation does', async () => {
    const { dir, store } = await fresh('postgres');
    await store.transaction((tx) => tx.keys.insert(key('d00000000001')));
    const other = await openStore(dir);
    opened.push(other);
    const v0 = await store.keys.version();
    await other.transaction((tx) => tx.usage.bump('d00000000001', 5, T0 + 1));
    expect(await store.keys.version()).toBe(v0);
    expect((await store.keys.get('d00000000001'))!.use_count).toBe(5);
    await other.transaction((tx) => tx.keys.revoke('d00000000001', { now: T0 + 2, reason: null, reissue: false }));
    expect(await store.keys.version()).not.toBe(v0);
  });

  it('a store at schema version 4 gains the usage and key source tables in place on first open', async () => {
    const { dir, db, store } = await fresh('postgres');
    await store.close();
    await sql(db!, 'DROP TABLE usage_hourly, quota_marks, key_sources, nonces, flushes');
    await sql(db!, 'UPDATE dsk_meta SET schema_version = 4');
    const again = await openStore(dir);
    opened.push(again);
    expect((await sql(db!, 'SELECT schema_version FROM dsk_meta'))[0].schema_version).toBe(SCHEMA_VERSION);
    await again.transaction((tx) => tx.keySources.learn([{ key_id: 'f00000000001', kind: 'site', value: 'lab', first_seen: T0 }]));
    expect(await again.usage.totalsSince(0)).toEqual([]);
    expect(await again.keySources.all()).toHaveLength(1);
  });

  it('a writer that waits past the lock timeout gives up with ERR_STORE_BUSY (exit 6), its change not made', async () => {
    const { dir, store } = await fresh('postgres');
    const other = await openStore(dir);
    opened.push(other);
    await other.setLockTimeout(200);
    let release!: () => void;
    const held = store.transaction(() => new Promise<void>((r) => (release = r)));
    await new Promise((r) => setTimeout(r, 100));
    await expect(other.transaction((tx) => tx.keys.insert(key('e00000000001')))).rejects.toMatchObject({ code: 'ERR_STORE_BUSY', exitCode: 6 });
    release();
    await held;
    expect(await store.keys.get('e00000000001')).toBeUndefined();
  });

  it('init is one transaction: a store closed before its first commit leaves the database empty', async () => {
    const { url, name } = await freshDatabase();
    const s = await openPgStore({ store: { url } }, { create: { homeId: HOME_ID, ...identity } });
    await s.close();
    expect(await sql(name, "SELECT count(*)::int AS n FROM information_schema.tables WHERE table_schema = 'public'")).toEqual([{ n: 0 }]);
  });

  it('refuses a database of another home, an existing store at init, an empty one, and a newer schema (exit 7, address shown)', async () => {
    const { url, db, dir } = await fresh('postgres');
    await expect(openPgStore({ store: { url: url! } }, { homeId: 'cd'.repeat(8) })).rejects.toMatchObject({ code: 'ERR_STORE_OTHER_HOME', exitCode: 7, message: expect.stringContaining(url!) });
    await expect(openPgStore({ store: { url: url! } }, { create: { homeId: 'cd'.repeat(8), ...identity } })).rejects.toMatchObject({ code: 'ERR_STORE_IN_USE', exitCode: 7 });
    const empty = await freshDatabase();
    await expect(openPgStore({ store: { url: empty.url } }, {})).rejects.toMatchObject({ code: 'ERR_STORE_EMPTY', exitCode: 7 });
    await sql(db!, 'UPDATE dsk_meta SET schema_version = 99');
    await expect(openStore(dir)).rejects.toMatchObject({ code: 'ERR_SCHEMA_TOO_NEW', exitCode: 7 });
  });

  it('the run lock is held by one node at a time and freed when its session ends', async () => {
    const { dir } = await fresh('postgres');
    const [a, b] = (await Promise.all([openStore(dir), openStore(dir)])) as PgStore[];
    opened.push(a, b);
    const held = await a.runLock();
    expect(held).not.toBeNull();
    expect(await b.runLock()).toBeNull();
    const waiting = b.runLock({ wait: true, timeoutMs: 5000 });
    await held!.release();
    const got = await waiting;
    expect(got).not.toBeNull();
    await got!.release();
  });
});
