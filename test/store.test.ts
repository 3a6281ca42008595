/**
 * The store's transaction contract on the real SQLite engine: a throw rolls back the change and its
 * audit row together; transactions in one process serialise (and reads outside them see committed
 * data only); misuse that would wait forever fails at once; and the audit chain's one formula.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tmpDir } from './helpers.js';
import { chainHash as restated } from './audit-helpers.js';
import { openStore } from '../src/store/open.js';
import type { NewKey, Store } from '../src/store/store.js';
import { Home } from '../src/app/home.js';
import { appendAudit } from '../src/audit/writer.js';
import { ChainMac, rowHash, rowMac } from '../src/audit/chain.js';
import { verifyChain } from '../src/audit/verify.js';
import { readHead } from '../src/audit/head.js';
import { DEFAULT_POLICY } from '../src/domain/policy.js';
import { DEFAULT_ROLES } from '../src/domain/roles.js';
import { fixedClock, systemRandom } from '../src/kernel/clock.js';
import { UsageError } from '../src/kernel/errors.js';
import { auditFilterFromParams, queryAudit } from '../src/audit/query.js';

const T0 = Date.UTC(2026, 0, 1);
const opened: Store[] = [];
afterEach(async () => {
  while (opened.length) await opened.pop()!.close();
});

async function fresh(): Promise<{ dir: string; store: Store; home: Home }> {
  const dir = path.join(tmpDir('dsk-store-'), 'home');
  const store = await openStore(dir, { create: true });
  opened.push(store);
  const config = { format: 'dsk-config/1' as const, home_id: 'test', backend: 'software' as const, created_at: new Date(T0).toISOString(), policy: DEFAULT_POLICY, roles: DEFAULT_ROLES };
  const home = new Home(dir, config, store, { clock: fixedClock(T0), random: systemRandom, actor: 'tester' }, null, null, crypto.randomBytes(32));
  return { dir, store, home };
}

function key(id: string): NewKey {
  return { id, name: `k-${id}`, owner: null, role: 'developer', key_hash: crypto.randomBytes(32).toString('hex'), salt: '00', secret_sealed: Buffer.alloc(8), created_at: T0, expires_at: null, rotate_every_ms: null, max_uses: null, replaces: null, options: '{}' };
}

const tick = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('store transactions', () => {
  it('a throw inside rolls back both the change and its audit row', async () => {
    const { store, home } = await fresh();
    await expect(
      home.tx(async (t) => {
        await t.keys.insert(key('aaaaaaaaaaaa'));
        await t.audit({ action: 'KEY_CREATE', key_id: 'aaaaaaaaaaaa', details: {} });
        expect(await t.keys.get('aaaaaaaaaaaa')).toBeDefined(); // the transaction sees its own writes
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await store.keys.get('aaaaaaaaaaaa')).toBeUndefined();
    expect(await store.events.count()).toBe(0);
    expect(readHead(home.dir)).toEqual({ state: 'missing' });
  });

  it('fails closed: an audit row that cannot be written undoes the change it records', async () => {
    const { store, home } = await fresh();
    const leaked = `dsk_${'a'.repeat(12)}_${'b'.repeat(64)}_AAAAAA`;
    await expect(
      home.tx(async (t) => {
        await t.keys.insert(key('bbbbbbbbbbbb'));
        await t.audit({ action: 'KEY_REVOKE', key_id: 'bbbbbbbbbbbb', details: { reason: `pasted ${leaked}` } });
      }),
    ).rejects.toMatchObject({ code: 'ERR_SECRET_IN_AUDIT', exitCode: 2 });
    expect(await store.keys.list()).toEqual([]);
    expect(await store.events.count()).toBe(0);
  });

  it('commits the change and the row together, then moves audit_log/HEAD', async () => {
    const { store, home } = await fresh();
    const row = await home.tx(async (t) => {
      await t.keys.insert(key('cccccccccccc'));
      return t.audit({ action: 'KEY_CREATE', key_id: 'cccccccccccc', details: { n: 1 } });
    });
    expect(await store.keys.get('cccccccccccc')).toMatchObject({ status: 'active', use_count: 0, updated_at: T0 });
    expect(await store.events.last()).toEqual({ seq: 1, hash: row.hash });
    const head = readHead(home.dir);
    expect(head.state === 'ok' && head.head.seq).toBe(1);
  });

  it('two concurrent transactions in one process run one after the other', async () => {
    const { store, home } = await fresh();
    const log: string[] = [];
    const slow = home.tx(async (t) => {
      log.push('A begin');
      await t.keys.insert(key('dddddddddddd'));
      await tick(60); // other work runs meanwhile, but no other transaction
      await t.audit({ action: 'A', details: {} });
      log.push('A end');
    });
    const fast = home.tx(async (t) => {
      log.push('B begin');
      expect(await t.keys.get('dddddddddddd')).toBeDefined(); // A committed before B began
      await t.audit({ action: 'B', details: {} });
      log.push('B end');
    });
    // A read outside any transaction waits for the running one and sees only committed data.
    const outside = (async () => {
      await tick(10);
      const seen = await store.keys.get('dddddddddddd');
      log.push(`read ${seen ? 'after A' : 'before A'}`);
    })();
    await Promise.all([slow, fast, outside]);
    expect(log.slice(0, 2)).toEqual(['A begin', 'A end']);
    expect(log).toContain('read after A');
    expect(log.indexOf('B begin')).toBeGreaterThan(log.indexOf('A end'));
    const rows = await store.events.newest(10);
    expect(rows.map((r) => r.action).reverse()).toEqual(['A', 'B']);
    expect((await verifyChain(store, readHead(home.dir), home.auditKey)).ok).toBe(true);
  });

  it('many concurrent appenders in one process still form one unbroken chain', async () => {
    const { store, home } = await fresh();
    await Promise.all(Array.from({ length: 40 }, (_, i) => home.tx((t) => t.audit({ action: 'TEST_EVENT', details: { i } }))));
    expect(await store.events.count()).toBe(40);
    const v = await verifyChain(store, readHead(home.dir), home.auditKey);
    expect(v).toMatchObject({ ok: true, rows: 40, authenticated_through: 40, head_file: { state: 'match' } });
  });

  it('refuses what would wait for itself: a transaction or a plain read inside a transaction, a StoreTx used after it ended', async () => {
    const { store } = await fresh();
    await expect(store.transaction(() => store.transaction(async () => 1))).rejects.toThrow(/inside a transaction/);
    await expect(store.transaction(() => store.keys.get('eeeeeeeeeeee'))).rejects.toThrow(/read through its StoreTx/);
    let kept: Parameters<Parameters<Store['transaction']>[0]>[0] | null = null;
    await store.transaction(async (tx) => void (kept = tx));
    await expect(kept!.keys.get('eeeeeeeeeeee')).rejects.toThrow(/after its transaction ended/);
    // the store is still usable afterwards
    await store.transaction((tx) => tx.keys.insert(key('eeeeeeeeeeee')));
    expect(await store.keys.get('eeeeeeeeeeee')).toBeDefined();
  });

  it('keys.version() changes when another connection commits, not on reads', async () => {
    const { dir, store } = await fresh();
    const v0 = await store.keys.version();
    expect(await store.keys.version()).toBe(v0);
    const other = await openStore(dir);
    opened.push(other);
    await other.transaction((tx) => tx.keys.insert(key('ffffffffffff')));
    expect(await store.keys.version()).not.toBe(v0);
  });

  it('refuses database files that group or others can read (exit 5), like ssh', async () => {
    const { dir } = await fresh();
    for (const f of ['keys.db', path.join('audit_log', 'audit.db')]) {
      fs.chmodSync(path.join(dir, f), 0o640);
      await expect(openStore(dir, { readonly: true })).rejects.toMatchObject({ code: 'ERR_UNSAFE_PERMISSIONS', exitCode: 5 });
      fs.chmodSync(path.join(dir, f), 0o600);
    }
  });

  it('bumps usage and keeps the newest last_used_at', async () => {
    const { store } = await fresh();
    await store.transaction((tx) => tx.keys.insert(key('121212121212')));
    await store.transaction(async (tx) => {
      await tx.usage.bump('121212121212', 3, T0 + 20);
      await tx.usage.bump('121212121212', 2, T0 + 10);
      await tx.usage.bump('000000000000', 5, T0); // unknown: ignored
    });
    expect(await store.keys.get('121212121212')).toMatchObject({ use_count: 5, last_used_at: T0 + 20 });
  });
});

describe('audit chain formula', () => {
  it('one definition: the writer, the fast MAC and an independent restatement agree', async () => {
    const { store } = await fresh();
    const k = crypto.randomBytes(32);
    const row = await store.transaction((tx) => appendAudit(tx, { action: 'X', actor: 'a', source_ip: '10.0.0.1', key_id: null, details: { b: 2, a: [1, 'x'], u: undefined } }, fixedClock(T0), k));
    expect(row.details).toBe('{"a":[1,"x"],"b":2}');
    expect(rowHash(row)).toBe(row.hash);
    expect(restated(row)).toBe(row.hash);
    const fast = new ChainMac(k);
    expect(fast.ofHash(row.hash)).toBe(rowMac(k, row.hash));
    expect(row.mac).toBe(crypto.createHmac('sha256', k).update(row.hash).digest('hex'));
    for (let i = 0; i < 20; i++) {
      const key = crypto.randomBytes(1 + i * 5); // short, 64-byte and long keys
      const h = crypto.randomBytes(32).toString('hex');
      expect(new ChainMac(key).ofHash(h)).toBe(rowMac(key, h));
    }
    expect(() => fast.ofHash('abc')).toThrow(/64-character/);
  });
});

describe('the one audit query (dsk audit query and GET /dsk/audit)', () => {
  it('filters from a query string: action list, address block, time, limit; malformed values refused', async () => {
    const { home, store } = await fresh();
    const clock = home.env.clock as ReturnType<typeof fixedClock>;
    const ev = [
      { action: 'KEY_CREATE', source_ip: '10.1.2.3', key_id: 'aaaaaaaaaaaa' },
      { action: 'AUTH_FAILURE', source_ip: '::ffff:10.1.9.9', key_id: null },
      { action: 'AUTH_FAILURE', source_ip: '192.168.0.1', key_id: null },
      { action: 'KEY_REVOKE', source_ip: null, key_id: 'aaaaaaaaaaaa' },
    ];
    for (const e of ev) {
      clock.advance(60_000);
      await home.tx((t) => t.audit({ ...e, details: {} }));
    }
    const q = async (qs: string) => (await queryAudit(store, auditFilterFromParams(new URLSearchParams(qs), clock.now()))).map((r) => r.seq);
    expect(await q('')).toEqual([4, 3, 2, 1]);
    expect(await q('action=auth_failure,KEY_REVOKE')).toEqual([4, 3, 2]);
    expect(await q('source_ip=10.1.0.0/16')).toEqual([2, 1]);
    expect(await q('key_id=aaaaaaaaaaaa&limit=1')).toEqual([4]);
    expect(await q('since=150s')).toEqual([4, 3, 2]);
    expect(await q(`until=${new Date(T0 + 150_000).toISOString()}`)).toEqual([2, 1]);
    expect(await q('limit=0')).toEqual([4, 3, 2, 1]);
    expect(auditFilterFromParams(new URLSearchParams('limit=5000'), 0).limit).toBe(1000);
    for (const bad of ['source_ip=10.0.0.0/33', 'since=yesterday', 'action=drop table']) expect(() => auditFilterFromParams(new URLSearchParams(bad), 0)).toThrow(UsageError);
  });
});
