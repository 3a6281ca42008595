/**
 * Credential guessing: a forged JWT learns nothing before its signature verifies, an unknown key id
 * costs the same work as a wrong secret, sources are counted per IPv6 /64 in a sliding window,
 * blocks survive floods from fresh addresses, and a key attacked from many addresses is reported
 * (BRUTE_FORCE_SUSPECTED) without locking its owner out.
 */
import crypto from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { call, gateway, keys, openTestHome, rawDb, startStubUpstream, type StubUpstream } from './gwkit.js';
import type { Home } from '../src/app/home.js';
import { revokeKey, type IssuedKey } from '../src/app/keys.js';
import { formatApiKey } from '../src/domain/key-text.js';
import { Authenticator } from '../src/gateway/authenticate.js';
import { BruteForceGuard, failureSource } from '../src/gateway/brute-force.js';
import { issueToken, tokenKey } from '../src/gateway/jwt.js';
import { KeyIndex } from '../src/gateway/key-index.js';
import { sha256Hex } from '../src/kernel/crypto.js';
import { fixedClock } from '../src/kernel/clock.js';

let h: Home;
let homeDir: string;
let up: StubUpstream;
let k: Record<string, IssuedKey>;

beforeAll(async () => {
  const t = await openTestHome();
  h = t.h;
  homeDir = t.home;
  up = await startStubUpstream({ record: false });
  k = await keys(h, {
    revoked: { name: 'revoked', role: 'developer' },
    retired: { name: 'retired', role: 'developer' },
    expired: { name: 'expired', role: 'developer' },
    live: { name: 'live', role: 'developer' },
    target: { name: 'target', role: 'developer' },
  });
  await revokeKey(h, k.revoked.id, 'test');
  const db = rawDb(homeDir);
  db.prepare("UPDATE keys SET status = 'retired' WHERE id = ?").run(k.retired.id);
  db.prepare('UPDATE keys SET expires_at = ? WHERE id = ?').run(Date.now() - 1000, k.expired.id);
  db.close();
});

afterAll(async () => {
  await up?.close();
  await h?.close();
});

describe('forged tokens', () => {
  it('a junk-signed token naming a revoked, retired, expired or unknown key is invalid_token; a genuine one learns the state', async () => {
    const gw = await gateway(h, up.url, { maxFailures: 10_000 });
    try {
      await vi.waitFor(() => expect(gw.index.get(k.retired.id)!.row.status).toBe('retired'), { timeout: 2000, interval: 20 });
      const forged = async (id: string) => (await issueToken(crypto.randomBytes(32), id, 60_000, Date.now())).token;
      for (const id of [k.revoked.id, k.retired.id, k.expired.id, k.live.id, 'ffffffffffff']) {
        const r = await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${await forged(id)}` } });
        expect(r.status, id).toBe(401);
        expect(r.body.error.code, id).toBe('invalid_token');
        expect(r.body.error.message, id).toBe('invalid token');
      }
      const genuine = async (id: string) => (await issueToken(await tokenKey(h.requireUnsealed().master, id), id, 60_000, Date.now())).token;
      expect((await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${await genuine(k.revoked.id)}` } })).body.error.code).toBe('key_revoked');
      expect((await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${await genuine(k.live.id)}` } })).status).toBe(200);
    } finally {
      await gw.close();
    }
  });

  it('an unknown key id and a known id with a wrong secret each cost one SHA-256 and one compare', async () => {
    let hashes = 0;
    const counting = (text: string) => (hashes++, sha256Hex(text));
    const index = await KeyIndex.load(h);
    const auth = new Authenticator(index, () => h.requireUnsealed().master, counting);
    const secret = crypto.randomBytes(32).toString('hex');
    for (const text of [formatApiKey('0123456789ab', secret), formatApiKey(k.live.id, secret)]) {
      hashes = 0;
      const r = await auth.authenticate({ authorization: [`Bearer ${text}`] }, Date.now());
      expect(r).toMatchObject({ status: 401, code: 'invalid_api_key', reason: 'NOT_FOUND' });
      expect(hashes).toBe(1);
    }
    hashes = 0;
    expect(await auth.authenticate({ authorization: [`Bearer ${k.live.api_key}`] }, Date.now())).toMatchObject({ via: 'key' });
    expect(hashes).toBe(1);
    auth.wipe();
  });
});

describe('sources', () => {
  const cfg = { max: 10, windowMs: 60_000, blockMs: 300_000, ipv6Prefix: 64, keyMax: 1000 };

  it('an IPv6 source is its /64 (configurable); IPv4 and IPv4-mapped are one address', () => {
    expect(failureSource('2001:db8:1:2:aaaa::1', 64)).toBe('2001:db8:1:2:0:0:0:0/64');
    expect(failureSource('2001:db8:1:2:ffff:ffff:ffff:ffff', 64)).toBe('2001:db8:1:2:0:0:0:0/64');
    expect(failureSource('2001:db8:1:3::1', 64)).not.toBe(failureSource('2001:db8:1:2::1', 64));
    expect(failureSource('2001:db8:1:2:aaaa::1', 48)).toBe('2001:db8:1:0:0:0:0:0/48');
    expect(failureSource('2001:db8::1', 128)).not.toBe(failureSource('2001:db8::2', 128));
    expect(failureSource('::ffff:10.0.0.1', 64)).toBe('10.0.0.1');
    expect(failureSource('10.0.0.1', 64)).toBe('10.0.0.1');
  });

  it('20 addresses of one /64 × 9 tries are blocked', () => {
    const g = new BruteForceGuard(cfg);
    let blockedAt = -1;
    for (let a = 0; a < 20 && blockedAt < 0; a++) for (let i = 0; i < 9; i++) if (g.fail(`2001:db8::${a.toString(16)}:${i}`, null, a * 100 + i).blocked) blockedAt = a * 9 + i + 1;
    expect(blockedAt).toBe(10);
    expect(g.blockedFor('2001:db8::ffff', 5000)).toBeGreaterThan(0);
    expect(g.blockedFor('2001:db8:0:1::1', 5000)).toBe(0);
  });

  it('9 + 9 across a window edge are blocked (sliding window)', () => {
    const g = new BruteForceGuard(cfg);
    g.fail('10.1.1.1', null, 0);
    for (let i = 0; i < 8; i++) expect(g.fail('10.1.1.1', null, 55_000 + i * 100).blocked).toBeUndefined();
    let blocked = false;
    for (let i = 0; i < 9; i++) blocked ||= !!g.fail('10.1.1.1', null, 61_000 + i * 100).blocked;
    expect(blocked).toBe(true);
  });

  it('a blocked source is never evicted before its block ends, however many others fail', () => {
    const g = new BruteForceGuard({ ...cfg, max: 2 }, 100);
    g.fail('10.0.0.1', null, 0);
    expect(g.fail('10.0.0.1', null, 1).blocked).toBeDefined();
    for (let i = 0; i < 100_000; i++) g.fail(`11.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, null, 2 + i / 1000);
    expect(g.blockedFor('10.0.0.1', 299_000)).toBeGreaterThan(0);
    expect(g.blockedFor('10.0.0.1', 300_001)).toBe(0);
  });
});

describe('a key attacked from many addresses', () => {
  it('is reported once per window as BRUTE_FORCE_SUSPECTED (audit and metrics); its owner is not locked out', async () => {
    const clock = fixedClock(Date.now());
    const gw = await gateway(h, up.url, { trustProxy: true, maxFailures: 5, keyMaxFailures: 20, failureWindow: '60s' }, clock);
    try {
      const wrong = (n: number) => formatApiKey(k.target.id, crypto.createHash('sha256').update(String(n)).digest('hex'));
      for (let i = 0; i < 45; i++) {
        const r = await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${wrong(i)}`, 'X-Forwarded-For': `198.51.100.${i}` } });
        expect(r.status).toBe(401);
      }
      const owner = await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${k.target.api_key}`, 'X-Forwarded-For': '203.0.113.7' } });
      expect(owner.status).toBe(200);
      expect(await (await fetch(`${gw.url}/metrics`)).text()).toContain(`dsk_gateway_brute_force_suspected_total{key="${k.target.id}"} 1`);
      await gw.flush();
      const db = rawDb(homeDir);
      db.prepare('ATTACH DATABASE ? AS audit').run(`${homeDir}/audit_log/audit.db`);
      const rows = db.prepare("SELECT key_id, details FROM audit.events WHERE action = 'BRUTE_FORCE_SUSPECTED'").all() as any[];
      db.close();
      expect(rows).toHaveLength(1);
      expect(rows[0].key_id).toBe(k.target.id);
      expect(JSON.parse(rows[0].details)).toMatchObject({ failures: 20, sources: 20, window_ms: 60_000 });
      expect(rows[0].details).not.toContain(wrong(0).split('_')[2]);
    } finally {
      await gw.close();
    }
  });
});
