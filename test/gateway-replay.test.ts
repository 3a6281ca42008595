/**
 * Replay protection: limits are checked before a nonce is stored (a nonce first sent on a 429 is
 * still good later), the nonce cache is bounded by memory and an early eviction never reopens a
 * replay, and a restarted gateway refuses what was signed before it started (its nonces are per
 * process: docs/gateway.md).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, keys, openTestHome, startStubUpstream, type StubUpstream } from './gwkit.js';
import type { Home } from '../src/app/home.js';
import type { IssuedKey } from '../src/app/keys.js';
import { gatewayOptions } from '../src/gateway/options.js';
import { startGateway } from '../src/gateway/server.js';
import { NonceCache, signHeaders } from '../src/gateway/signature.js';
import { fixedClock, type Clock } from '../src/kernel/clock.js';

let h: Home;
let up: StubUpstream;
let k: Record<string, IssuedKey>;

beforeAll(async () => {
  h = (await openTestHome()).h;
  up = await startStubUpstream({ record: false });
  k = await keys(h, {
    onerps: { name: 'onerps', role: 'developer', options: { require_signature: true, rate_limit: { rps: 1, burst: 1 } } },
    signer: { name: 'signer', role: 'developer', options: { require_signature: true } },
  });
});

afterAll(async () => {
  await up?.close();
  await h?.close();
});

async function start(clock: Clock, extra: { nonceCacheBytes?: number } = {}) {
  return startGateway(h, { ...gatewayOptions(h.config.gateway, { upstream: up.url, listen: '127.0.0.1:0', maxFailures: 10_000, drain: 0 }), ...extra }, clock);
}

const signed = (key: IssuedKey, nowMs: number, nonce?: string) => signHeaders({ apiKey: key.api_key, apiSecret: key.api_secret, keyId: key.id, method: 'GET', path: '/v1/models', nowMs, nonce });

describe('nonces and limits', () => {
  it('a nonce first sent on a 429 is not spent: the same request succeeds later, once', async () => {
    const clock = fixedClock(Math.floor(Date.now() / 1000) * 1000);
    const gw = await start(clock);
    try {
      expect((await call(`${gw.url}/v1/models`, { headers: signed(k.onerps, clock.now()) })).status).toBe(200);
      const second = signed(k.onerps, clock.now());
      const limited = await call(`${gw.url}/v1/models`, { headers: second });
      expect(limited.status).toBe(429);
      expect(limited.body.error.code).toBe('rate_limit_exceeded');
      clock.advance(1500);
      expect((await call(`${gw.url}/v1/models`, { headers: second })).status).toBe(200);
      clock.advance(1500);
      const replay = await call(`${gw.url}/v1/models`, { headers: second });
      expect(replay.status).toBe(401);
      expect(replay.body.error.message).toBe('nonce already used');
    } finally {
      await gw.close();
    }
  });

  it('the cache is bounded by memory; a nonce evicted early cannot be replayed (older timestamps are refused)', () => {
    const per = NonceCache.entryBytes('k:' + 'n'.repeat(22));
    const c = new NonceCache(600_000, 1_000_000, per * 10);
    const t0 = 1_700_000_000;
    for (let i = 0; i < 10; i++) expect(c.checkAndAdd('k', `n${String(i).padStart(21, '0')}`, t0 * 1000, t0)).toBe(true);
    expect(c.covers(t0)).toBe(true);
    // one more, a second later: the oldest goes early, and with it every timestamp up to its own
    expect(c.checkAndAdd('k', `n${'x'.repeat(21)}`, t0 * 1000 + 1000, t0 + 1)).toBe(true);
    expect(c.size).toBe(10);
    expect(c.bytes).toBeLessThanOrEqual(per * 10);
    expect(c.covers(t0)).toBe(false);
    expect(c.covers(t0 + 1)).toBe(true);
    // a flood of a million nonces stays within the bound
    const big = new NonceCache(600_000, 10_000_000, 1024 * 1024);
    for (let i = 0; i < 100_000; i++) big.checkAndAdd('key', `nonce-${i}-${'z'.repeat(20)}`, t0 * 1000 + i, t0 + Math.floor(i / 1000));
    expect(big.bytes).toBeLessThanOrEqual(1024 * 1024);
    expect(big.covers(t0)).toBe(false);
  });

  it('at the gateway: once the cache has dropped a nonce early, replaying it is refused', async () => {
    const clock = fixedClock(Math.floor(Date.now() / 1000) * 1000);
    const gw = await start(clock, { nonceCacheBytes: NonceCache.entryBytes(`${k.signer.id}:${'a'.repeat(22)}`) * 3 });
    try {
      const first = signed(k.signer, clock.now());
      expect((await call(`${gw.url}/v1/models`, { headers: first })).status).toBe(200);
      clock.advance(1000);
      for (let i = 0; i < 3; i++) expect((await call(`${gw.url}/v1/models`, { headers: signed(k.signer, clock.now()) })).status).toBe(200);
      const replay = await call(`${gw.url}/v1/models`, { headers: first });
      expect(replay.status).toBe(401);
      expect(replay.body.error.code).toBe('invalid_signature');
      expect(replay.body.error.message).toMatch(/older than the nonces this gateway remembers/);
      expect((await call(`${gw.url}/v1/models`, { headers: signed(k.signer, clock.now()) })).status).toBe(200);
    } finally {
      await gw.close();
    }
  });
});

describe('a restart', () => {
  it('a restarted gateway refuses a request signed before it started, and accepts fresh ones', async () => {
    const t = Math.floor(Date.now() / 1000) * 1000;
    const a = await start(fixedClock(t));
    const req = signed(k.signer, t);
    try {
      expect((await call(`${a.url}/v1/models`, { headers: req })).status).toBe(200);
      expect((await call(`${a.url}/v1/models`, { headers: req })).status).toBe(401);
    } finally {
      await a.close();
    }
    // within the skew window, as a restart would be
    const clock = fixedClock(t + 2500);
    const b = await start(clock);
    try {
      const replay = await call(`${b.url}/v1/models`, { headers: req });
      expect(replay.status).toBe(401);
      expect(replay.body.error.message).toMatch(/restarted/);
      expect((await call(`${b.url}/v1/models`, { headers: signed(k.signer, clock.now()) })).status).toBe(200);
    } finally {
      await b.close();
    }
  });
});
