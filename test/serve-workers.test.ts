/**
 * `dsk serve --workers N`: N processes behind one port keep the guarantees of N replicas (shared
 * nonces, exact usage, revocation within a second), split the per-key rate limit between them,
 * unseal once in the primary (a wrong passphrase starts no worker), and drain all on SIGTERM.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, type ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import path from 'node:path';
import { dsk, json, makeHome } from './helpers.js';
import { writePass } from './cli-support.js';
import { freshChat, spawnReplica, timeUntil, type Replica } from './replica-kit.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';
import { signHeaders } from '../src/gateway/signature.js';

let t: ReturnType<typeof makeHome>;
let up: StubUpstream;
let gw: Replica;
let workerPids: number[];
const procs: ChildProcess[] = [];

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function useCount(id: string): number {
  const db = new Database(path.join(t.home, 'keys.db'), { readonly: true });
  try {
    return (db.prepare('SELECT use_count FROM keys WHERE id = ?').get(id) as { use_count: number }).use_count;
  } finally {
    db.close();
  }
}

const keygen = (name: string, extra: string[] = []) => json(dsk(['keygen', '--name', name, '--role', 'developer', '--json', ...extra], { env: t.env }));

beforeAll(async () => {
  t = makeHome(undefined, { shares: 2, threshold: 2 });
  up = await startStubUpstream();
  gw = await spawnReplica(t.env, up.url, ['--workers', '2'], procs);
  // the workers are the primary's children
  workerPids = execFileSync('ps', ['--ppid', String(gw.proc.pid), '-o', 'pid=']).toString().trim().split(/\s+/).map(Number);
});
afterAll(async () => {
  for (const pid of workerPids ?? []) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
});

describe('dsk serve --workers 2', () => {
  it('runs two worker processes behind one port; both serve, a revocation reaches both within 1 s', async () => {
    expect(workerPids).toHaveLength(2);
    for (const pid of workerPids) expect(alive(pid)).toBe(true);
    const k = keygen('w');
    await timeUntil(async () => (await Promise.all([0, 1, 2, 3].map(() => freshChat(gw.url, k.api_key)))).every((r) => r.status === 200));
    expect(dsk(['keys', 'revoke', k.id], { env: t.env }).code).toBe(0);
    const ms = await timeUntil(async () => (await Promise.all([0, 1, 2, 3].map(() => freshChat(gw.url, k.api_key)))).every((r) => r.status === 401));
    expect(ms).toBeLessThan(1000);
  });

  it('a signed request is accepted once across the workers', async () => {
    const k = keygen('s');
    await timeUntil(async () => (await Promise.all([0, 1].map(() => freshChat(gw.url, k.api_key)))).every((r) => r.status === 200));
    const body = '{"model":"m","messages":[]}';
    const h = signHeaders({ apiKey: k.api_key, apiSecret: k.api_secret, keyId: k.id, method: 'POST', path: '/v1/chat/completions', body });
    delete h.Authorization;
    const rs = await Promise.all(Array.from({ length: 8 }, () => freshChat(gw.url, k.api_key, h, body)));
    expect(rs.filter((r) => r.status === 200)).toHaveLength(1);
    expect(rs.filter((r) => r.status === 401 && r.body.error.message === 'nonce already used')).toHaveLength(7);
  });

  it('splits a key rate limit between the workers: together they allow no more than it', async () => {
    const k = keygen('limited', ['--rate-limit', '2:10']);
    await timeUntil(async () => (await freshChat(gw.url, k.api_key)).status !== 401);
    await new Promise((r) => setTimeout(r, 5500)); // buckets refill to their burst
    const rs = await Promise.all(Array.from({ length: 30 }, () => freshChat(gw.url, k.api_key)));
    const ok = rs.filter((r) => r.status === 200).length;
    expect(ok).toBeGreaterThanOrEqual(8);
    expect(ok).toBeLessThanOrEqual(10 + 2);
    expect(rs.filter((r) => r.status === 429).length).toBe(30 - ok);
  });

  it('usage from both workers adds up exactly; SIGTERM drains a stream in flight and stops every worker', async () => {
    const k = keygen('count');
    await timeUntil(async () => (await Promise.all([0, 1].map(() => freshChat(gw.url, k.api_key)))).every((r) => r.status === 200));
    await new Promise((r) => setTimeout(r, 1200));
    const before = useCount(k.id);
    const rs = await Promise.all(Array.from({ length: 120 }, () => freshChat(gw.url, k.api_key)));
    expect(rs.every((r) => r.status === 200)).toBe(true);
    const stream = freshChat(gw.url, k.api_key, { 'x-stub-delay-ms': '150', 'x-stub-chunks': '6' }, '{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}');
    await new Promise((r) => setTimeout(r, 200));
    gw.proc.kill('SIGTERM');
    const s = await stream;
    expect(s.status).toBe(200);
    expect(String(s.body)).toContain('[DONE]');
    expect(await gw.exited).toBe(0);
    for (const pid of workerPids) expect(alive(pid)).toBe(false);
    expect(useCount(k.id)).toBe(before + 121);
    expect(gw.stderr()).toMatch(/every worker flushed/);
  });

  it('a wrong passphrase is refused by the primary (exit 3) before any worker starts', () => {
    const bad = writePass(t.dir, 'wrong.pass', 'not-the-passphrase');
    const r = dsk(['serve', '--upstream', up.url, '--listen', '127.0.0.1:0', '--workers', '2', '--passphrase-file', bad, '--passphrase-file', t.pass[1]], { env: { DSK_HOME: t.home } });
    expect(r.code).toBe(3);
    expect(r.stderr).not.toMatch(/worker/);
  });
});
