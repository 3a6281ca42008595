/**
 * Per-key rate limits across replicas. With `--redis-url` two replicas together admit what one
 * bucket would (burst, then rps); without it each admits the whole limit (the stated tolerance:
 * N replicas, up to N times the limit); with Redis unreachable they fall back to their own buckets
 * and /metrics counts it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { dsk, json, makeHome, requireTool } from './helpers.js';
import { chat, spawnReplica, timeUntil, type Replica } from './replica-kit.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';

const REDIS = 'redis://127.0.0.1:6379/0';
const redisUp = spawnSync('redis-cli', ['-u', REDIS, 'ping'], { encoding: 'utf8' }).stdout?.trim() === 'PONG';

let t: ReturnType<typeof makeHome>;
let up: StubUpstream;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  t = makeHome(undefined, { shares: 2, threshold: 2 });
  up = await startStubUpstream();
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
});

/** 30 requests at once, alternating between the replicas; how many were admitted. */
async function burst(rs: Replica[], key: string): Promise<{ ok: number; limited: number; retryAfter: boolean }> {
  const res = await Promise.all(Array.from({ length: 30 }, (_, i) => fetch(`${rs[i % rs.length].url}/v1/models`, { headers: { authorization: `Bearer ${key}` } })));
  for (const r of res) await r.arrayBuffer();
  return { ok: res.filter((r) => r.status === 200).length, limited: res.filter((r) => r.status === 429).length, retryAfter: res.filter((r) => r.status === 429).every((r) => Number(r.headers.get('retry-after')) >= 1) };
}

async function ready(rs: Replica[], key: string) {
  for (const r of rs) await timeUntil(async () => (await chat(r.url, key)).status !== 401);
}

describe.skipIf(!requireTool('redis-server', 'the Redis rate-limit tests', { present: redisUp, install: 'redis-server, running on 127.0.0.1:6379' }))('per-key rate limit across replicas', () => {
  it('with Redis, two replicas together admit one bucket: burst 10, not 20', async () => {
    const k = json(dsk(['keygen', '--name', 'shared', '--role', 'developer', '--rate-limit', '1:10', '--json'], { env: t.env }));
    const rs = await Promise.all([0, 1].map(() => spawnReplica(t.env, up.url, ['--redis-url', REDIS], procs)));
    await new Promise((r) => setTimeout(r, 700)); // both have loaded the key
    const b = await burst(rs, k.api_key);
    expect(b.ok).toBeGreaterThanOrEqual(10);
    expect(b.ok).toBeLessThanOrEqual(11); // one more token may refill while the 30 arrive
    expect(b.limited).toBe(30 - b.ok);
    expect(b.retryAfter).toBe(true);
    const m = await (await fetch(`${rs[0].url}/metrics`)).text();
    expect(m).toMatch(/^dsk_gateway_rate_limit_fallback_total 0$/m);
  });

  it('a token given back (refund) lets one more request through the shared bucket', async () => {
    const { SharedRateLimiter } = await import('../src/gateway/shared-rate-limit.js');
    const { RateLimiter } = await import('../src/gateway/rate-limit.js');
    const a = new SharedRateLimiter(REDIS, undefined, new RateLimiter(), `dsk:rl:test:${process.pid}:`);
    const b = new SharedRateLimiter(REDIS, undefined, new RateLimiter(), `dsk:rl:test:${process.pid}:`);
    try {
      await Promise.all([a.ready(), b.ready()]);
      const cfg = { rps: 0.01, burst: 3 }; // no refill within the test
      const waits = [];
      for (let i = 0; i < 4; i++) waits.push(await (i % 2 ? a : b).take('k', cfg, Date.now()));
      expect(waits.map((w) => w === 0)).toEqual([true, true, true, false]);
      await a.refund('k', cfg);
      expect(await b.take('k', cfg, Date.now())).toBe(0);
      expect(await a.take('k', cfg, Date.now())).toBeGreaterThan(0);
      expect(a.fallbacks + b.fallbacks).toBe(0);
    } finally {
      a.close();
      b.close();
    }
  });

  it('without Redis each replica keeps its own bucket: up to N times the limit (the stated tolerance)', async () => {
    const k = json(dsk(['keygen', '--name', 'local', '--role', 'developer', '--rate-limit', '1:10', '--json'], { env: t.env }));
    const rs = await Promise.all([0, 1].map(() => spawnReplica(t.env, up.url, [], procs)));
    await new Promise((r) => setTimeout(r, 700));
    const b = await burst(rs, k.api_key);
    expect(b.ok).toBeGreaterThanOrEqual(20);
    expect(b.ok).toBeLessThanOrEqual(22);
  });

  it('with Redis unreachable, requests are limited by the local bucket and the fallback is counted', async () => {
    const k = json(dsk(['keygen', '--name', 'fallback', '--role', 'developer', '--rate-limit', '1:10', '--json'], { env: t.env }));
    const [r] = await Promise.all([spawnReplica(t.env, up.url, ['--redis-url', 'redis://127.0.0.1:1/0'], procs)]);
    await ready([r], k.api_key);
    const b = await burst([r], k.api_key);
    expect(b.ok).toBeGreaterThanOrEqual(8);
    expect(b.ok).toBeLessThanOrEqual(11);
    const m = await (await fetch(`${r.url}/metrics`)).text();
    expect(Number(/^dsk_gateway_rate_limit_fallback_total (\d+)$/m.exec(m)?.[1])).toBeGreaterThanOrEqual(30);
  });

  it('a Redis URL with a password is refused before unsealing (the password belongs in DSK_REDIS_PASSWORD)', () => {
    const r = dsk(['serve', '--upstream', up.url, '--redis-url', 'redis://:hunter2@127.0.0.1:6379'], { env: { DSK_HOME: t.home } });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/carries a password/);
    expect(r.stderr).not.toMatch(/hunter2/);
  });
});
