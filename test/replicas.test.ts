/**
 * Several `dsk serve` processes on one SQLite home (replicas on one host): revocation reaches all
 * within a second, a signed request replayed to another replica is refused, usage from all of them
 * adds up exactly, their audit rows form one chain, and a replica killed with SIGKILL loses at most
 * its last unflushed second of counts.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import path from 'node:path';
import { dsk, json, makeHome } from './helpers.js';
import { chat, spawnReplica, stopReplica, timeUntil, type Replica } from './replica-kit.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';
import { signHeaders } from '../src/gateway/signature.js';

let t: ReturnType<typeof makeHome>;
let up: StubUpstream;
let replicas: Replica[];
const procs: ChildProcess[] = [];

function keygen(name: string) {
  return json(dsk(['keygen', '--name', name, '--role', 'developer', '--json'], { env: t.env }));
}

function useCount(id: string): number {
  const db = new Database(path.join(t.home, 'keys.db'), { readonly: true });
  try {
    return (db.prepare('SELECT use_count FROM keys WHERE id = ?').get(id) as { use_count: number }).use_count;
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  t = makeHome();
  up = await startStubUpstream();
  replicas = await Promise.all([0, 1, 2].map(() => spawnReplica(t.env, up.url, [], procs)));
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
});

describe('replicas on one SQLite home', () => {
  it('a key issued and then revoked through the CLI is seen by every replica within 1 s', async () => {
    const k = keygen('spread');
    const issued = await Promise.all(replicas.map((r) => timeUntil(async () => (await chat(r.url, k.api_key)).status === 200)));
    // A new key is not time-critical (nobody is refused wrongly meanwhile); this only shows it arrives.
    for (const ms of issued) expect(ms).toBeLessThan(3000);
    expect(dsk(['keys', 'revoke', k.id, '--json'], { env: t.env }).code).toBe(0);
    const revoked = await Promise.all(replicas.map((r) => timeUntil(async () => (await chat(r.url, k.api_key)).status === 401)));
    for (const ms of revoked) expect(ms).toBeLessThan(1000);
    const after = await chat(replicas[2].url, k.api_key);
    expect(after.body.error.code).toBe('key_revoked');
  });

  it('a signed request replayed to another replica is refused there (one shared nonce table)', async () => {
    const k = keygen('signer');
    await Promise.all(replicas.map((r) => timeUntil(async () => (await chat(r.url, k.api_key)).status === 200)));
    const body = '{"model":"m","messages":[]}';
    const headers = signHeaders({ apiKey: k.api_key, apiSecret: k.api_secret, keyId: k.id, method: 'POST', path: '/v1/chat/completions', body });
    delete headers.Authorization;
    const first = await chat(replicas[0].url, k.api_key, headers, body);
    expect(first.status).toBe(200);
    for (const r of replicas) {
      const replay = await chat(r.url, k.api_key, headers, body);
      expect(replay.status).toBe(401);
      expect(replay.body.error).toMatchObject({ code: 'invalid_signature', message: 'nonce already used' });
    }
    // the same check holds for concurrent replays: exactly one of ten wins
    const h2 = signHeaders({ apiKey: k.api_key, apiSecret: k.api_secret, keyId: k.id, method: 'POST', path: '/v1/chat/completions', body });
    delete h2.Authorization;
    const raced = await Promise.all(Array.from({ length: 10 }, (_, i) => chat(replicas[i % 3].url, k.api_key, h2, body)));
    expect(raced.filter((r) => r.status === 200)).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 1200));
    const q = dsk(['audit', 'query', '--action', 'AUTH_FAILURE', '--key', k.id, '--json'], { env: t.env });
    const rows = q.stdout.trim().split('\n').map((l) => JSON.parse(l));
    const replays = rows.filter((r) => JSON.parse(typeof r.details === 'string' ? r.details : JSON.stringify(r.details)).reason === 'NONCE_REPLAYED');
    expect(replays.length).toBeGreaterThan(0);
  });

  it('usage from all replicas under concurrent load adds up exactly; refusals from all of them form one verified chain', async () => {
    const k = keygen('busy');
    await Promise.all(replicas.map((r) => timeUntil(async () => (await chat(r.url, k.api_key)).status === 200)));
    const base = useCount(k.id) + 0; // the probes above were counted too; read after their flush below
    await new Promise((r) => setTimeout(r, 1300));
    const before = useCount(k.id);
    expect(before).toBeGreaterThanOrEqual(base);
    const perReplica = 150;
    const results = await Promise.all(
      replicas.map(async (r, i) => {
        let ok = 0;
        for (let batch = 0; batch < perReplica / 30; batch++) {
          const rs = await Promise.all(Array.from({ length: 30 }, () => chat(r.url, k.api_key)));
          ok += rs.filter((x) => x.status === 200).length;
          // a wrong key on every replica: refusal rows from three writers plus the CLI below
          if (batch % 3 === i) await chat(r.url, k.api_key.slice(0, -6) + 'zzzzzz');
        }
        return ok;
      }),
    );
    expect(results).toEqual([perReplica, perReplica, perReplica]);
    keygen('written-meanwhile');
    await timeUntil(async () => useCount(k.id) === before + 3 * perReplica, 3000);
    await new Promise((r) => setTimeout(r, 1200));
    expect(useCount(k.id)).toBe(before + 3 * perReplica);
    const v = dsk(['audit', 'verify', '--json'], { env: t.env });
    expect(v.code, v.stderr).toBe(0);
  });

  it('a replica killed with SIGKILL under load loses at most its last unflushed second of counts', async () => {
    const k = keygen('killed');
    const victim = await spawnReplica(t.env, up.url, [], procs);
    await timeUntil(async () => (await chat(victim.url, k.api_key)).status === 200);
    await new Promise((r) => setTimeout(r, 1200));
    const before = useCount(k.id);
    const accepted: number[] = [];
    let stop = false;
    const load = (async () => {
      while (!stop) {
        const rs = await Promise.all(Array.from({ length: 10 }, () => chat(victim.url, k.api_key).catch(() => ({ status: 0 }))));
        const now = performance.now();
        for (const r of rs) if (r.status === 200) accepted.push(now);
      }
    })();
    await new Promise((r) => setTimeout(r, 2500));
    victim.proc.kill('SIGKILL');
    const killedAt = performance.now();
    stop = true;
    await load;
    expect(await victim.exited).toBe(137);
    const written = useCount(k.id) - before;
    const lastSecond = accepted.filter((at) => at > killedAt - 1000 - 250).length;
    expect(written).toBeLessThanOrEqual(accepted.length);
    expect(accepted.length - written).toBeLessThanOrEqual(lastSecond);
    expect(written).toBeGreaterThan(0);
    const v = dsk(['audit', 'verify', '--json'], { env: t.env });
    expect(v.code, v.stderr).toBe(0);
  });

  it('SIGTERM drains every replica and flushes its counts', async () => {
    const codes = await Promise.all(replicas.map(stopReplica));
    expect(codes).toEqual([0, 0, 0]);
  });
});
