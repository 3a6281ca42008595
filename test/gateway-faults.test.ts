/**
 * The store goes away under a running gateway (here: another process holds keys.db's exclusive
 * lock, so every read and write of the gateway fails as if the database were unreachable). Keys in
 * memory are served for the cache lifetime, then 503 in OpenAI's error shape; usage counts and
 * refusal rows are held and written when the store returns, exactly; past the bound on held rows
 * the gateway fails closed; /metrics says which.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import path from 'node:path';
import { dsk, json, makeHome } from './helpers.js';
import { chat, spawnReplica, timeUntil, type Replica } from './replica-kit.js';
import { keys, openTestHome, rawDb, call } from './gwkit.js';
import { gatewayOptions, startGateway } from '../src/gateway/server.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';

let up: StubUpstream;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  up = await startStubUpstream();
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
});

/** Takes keys.db's exclusive lock from this process; returns the release. */
function lockStore(home: string): () => void {
  const db = new Database(path.join(home, 'keys.db'));
  db.exec('BEGIN EXCLUSIVE');
  db.prepare('UPDATE keys SET updated_at = updated_at WHERE 0').run();
  return () => {
    db.exec('ROLLBACK');
    db.close();
  };
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

describe('store outage under a spawned gateway', () => {
  let t: ReturnType<typeof makeHome>;
  let gw: Replica;

  it('serves keys in memory for the cache lifetime, then 503; holds counts and rows and writes them all when the store returns', async () => {
    t = makeHome(undefined, { shares: 2, threshold: 2 });
    const k = json(dsk(['keygen', '--name', 'outage', '--role', 'developer', '--json'], { env: t.env }));
    gw = await spawnReplica({ ...t.env, DSK_BUSY_TIMEOUT_MS: '200' }, up.url, ['--cache-ttl', '2s'], procs);
    expect((await chat(gw.url, k.api_key)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1300));
    const useCount = () => {
      const db = new Database(path.join(t.home, 'keys.db'), { readonly: true });
      try {
        return (db.prepare('SELECT use_count FROM keys WHERE id = ?').get(k.id) as { use_count: number }).use_count;
      } finally {
        db.close();
      }
    };
    const before = useCount();
    expect(await metric(gw.url, 'dsk_gateway_store_up')).toBe(1);

    const release = lockStore(t.home);
    const lockedAt = Date.now();
    let served = 0;
    try {
      // inside the cache lifetime (counted from the last poll before the lock, at most 250 ms
      // earlier): every answer that comes back within 1.5 s is a success from memory
      for (let i = 0; i < 5; i++) {
        const r = await chat(gw.url, k.api_key);
        if (r.status === 200) served++;
        else expect(Date.now() - lockedAt).toBeGreaterThan(1500);
      }
      expect(served).toBeGreaterThan(0);
      expect((await chat(gw.url, k.api_key.slice(0, -6) + 'zzzzzz')).status).toBe(401);
      await timeUntil(async () => (await metric(gw.url, 'dsk_gateway_store_up')) === 0, 3000);
      expect(await metric(gw.url, 'dsk_gateway_held_requests')).toBeGreaterThanOrEqual(served);
      expect(await metric(gw.url, 'dsk_gateway_held_audit_rows')).toBeGreaterThanOrEqual(1);
      // past it: nothing can be checked
      await timeUntil(async () => {
        const s = (await chat(gw.url, k.api_key)).status;
        if (s === 200) served++;
        return s === 503;
      }, 4000);
      // counted from the last poll the store answered, at most one poll interval (250 ms) before the lock
      expect(Date.now() - lockedAt).toBeGreaterThanOrEqual(2000 - 300);
      const refused = await chat(gw.url, k.api_key);
      expect(refused.status).toBe(503);
      expect(refused.body).toEqual({ error: { message: expect.stringMatching(/key store has not answered/), type: 'server_error', param: null, code: 'store_unavailable' } });
    } finally {
      release();
    }
    // the store is back: keys are served again within a poll, and nothing held was lost
    await timeUntil(async () => (await chat(gw.url, k.api_key)).status === 200, 10_000);
    served++;
    await timeUntil(async () => useCount() === before + served, 15_000).catch((e) => {
      throw new Error(`use_count ${useCount()}, expected ${before} + ${served}: ${e.message}`);
    });
    await timeUntil(async () => (await metric(gw.url, 'dsk_gateway_held_requests')) === 0 && (await metric(gw.url, 'dsk_gateway_store_up')) === 1, 10_000);
    const rows = dsk(['audit', 'query', '--action', 'AUTH_FAILURE', '--json'], { env: t.env }).stdout.trim().split('\n').filter(Boolean);
    expect(rows.length).toBeGreaterThanOrEqual(1);
    expect(dsk(['audit', 'verify'], { env: t.env }).code).toBe(0);
  });
});

describe('the bound on held audit rows', () => {
  it('once the writer fails and the bound is reached, every request is refused with 503 (fail closed), and the metric says so', async () => {
    const prev = process.env.DSK_BUSY_TIMEOUT_MS;
    process.env.DSK_BUSY_TIMEOUT_MS = '100';
    const { home, h } = await openTestHome();
    const { dev } = await keys(h, { dev: { name: 'dev', role: 'developer' } });
    const limited = await startGateway(h, { ...gatewayOptions(h.config.gateway, { upstream: up.url, listen: '127.0.0.1:0', maxFailures: 1_000_000 }), flushMs: 100, maxHeldRows: 3 });
    const release = (() => {
      const db = rawDb(home);
      db.exec('BEGIN EXCLUSIVE');
      db.prepare('UPDATE keys SET updated_at = updated_at WHERE 0').run();
      return () => (db.exec('ROLLBACK'), db.close());
    })();
    try {
      const bad = { Authorization: `Bearer ${dev.api_key.slice(0, -6)}zzzzzz` };
      // three distinct refusal rows (one per route), then the writer fails on the locked store
      for (const [m, p] of [['GET', '/v1/models'], ['POST', '/v1/chat/completions'], ['POST', '/v1/embeddings']] as const) expect((await call(limited.url + p, { method: m, headers: bad, body: m === 'POST' ? '{}' : undefined })).status).toBe(401);
      await timeUntil(async () => (await metric(limited.url, 'dsk_gateway_fail_closed')) === 1, 10_000);
      const r = await call(`${limited.url}/v1/models`, { headers: { Authorization: `Bearer ${dev.api_key}` } });
      expect(r.status).toBe(503);
      expect(r.body.error.code).toBe('store_unavailable');
    } finally {
      release();
      if (prev === undefined) delete process.env.DSK_BUSY_TIMEOUT_MS;
      else process.env.DSK_BUSY_TIMEOUT_MS = prev;
    }
    await timeUntil(async () => (await metric(limited.url, 'dsk_gateway_fail_closed')) === 0, 10_000);
    expect((await call(`${limited.url}/v1/models`, { headers: { Authorization: `Bearer ${dev.api_key}` } })).status).toBe(200);
    await limited.close();
    await h.close();
  });
});

describe('a flush sent again after a lost answer', () => {
  it('is applied once: the writer thread records (writer, seq) in the flush transaction', async () => {
    const { Worker } = await import('node:worker_threads');
    const { home, h } = await openTestHome();
    const { dev } = await keys(h, { dev: { name: 'dev', role: 'developer' } });
    const worker = new Worker(new URL('../dist/gateway/flush-worker.js', import.meta.url), { workerData: { home, auditKey: new Uint8Array(h.requireUnsealed().auditKey) } });
    const answer = () => new Promise<{ seq: number; ok: boolean }>((r) => worker.once('message', r));
    try {
      const batch = { writer: 'test-writer', seq: 7, counts: [[dev.id, 5, Date.now()]], rows: [{ action: 'AUTH_FAILURE', actor: 'anonymous', source_ip: '127.0.0.1', key_id: null, details: { reason: 'BAD_CHECKSUM', count: 1 } }], hourly: [], marks: [], totals: [] };
      for (let i = 0; i < 3; i++) {
        worker.postMessage(batch);
        expect(await answer()).toMatchObject({ seq: 7, ok: true });
      }
      worker.postMessage({ ...batch, seq: 8 });
      expect(await answer()).toMatchObject({ seq: 8, ok: true });
      const db = rawDb(home);
      try {
        expect((db.prepare('SELECT use_count FROM keys WHERE id = ?').get(dev.id) as { use_count: number }).use_count).toBe(10);
      } finally {
        db.close();
      }
      const rows = await h.store.events.query({ actions: ['AUTH_FAILURE'] });
      expect(rows).toHaveLength(2);
    } finally {
      await worker.terminate();
      await h.close();
    }
  });
});
