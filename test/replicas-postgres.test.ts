/**
 * Replicas on one PostgreSQL store (separate `dsk serve` processes on loopback): a revocation is
 * enforced by every replica within 1 s — pushed by NOTIFY, not waited for by the poll — a replay to
 * another replica is refused through the shared nonce table, and usage from all replicas under
 * concurrent load adds up exactly, with one audit chain that verifies.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { dsk, json, passphraseFiles, tmpDir } from './helpers.js';
import { freshDatabase, requirePostgres, sql } from './pg-helpers.js';
import { chat, spawnReplica, stopReplica, timeUntil, type Replica } from './replica-kit.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';
import { signHeaders } from '../src/gateway/signature.js';
import { openUnsealed, defaultEnv } from '../src/app/home.js';
import { revokeKey } from '../src/app/keys.js';
import { passphrasesFromFiles } from '../src/cli/secrets.js';
import { KeyIndex } from '../src/gateway/key-index.js';

const PG = requirePostgres('the PostgreSQL replica tests');
let env: Record<string, string>;
let pass: string[];
let home: string;
let db: { name: string; url: string };
let up: StubUpstream;
let replicas: Replica[] = [];
const procs: ChildProcess[] = [];

const keygen = (name: string) => json(dsk(['keygen', '--name', name, '--role', 'developer', '--json'], { env }));

beforeAll(async () => {
  if (!PG) return;
  db = await freshDatabase();
  const dir = tmpDir('dsk-pg-replicas-');
  home = path.join(dir, 'home');
  pass = passphraseFiles(dir, 2);
  const r = dsk(['init', '--home', home, '--shares', '2', '--threshold', '2', '--kdf', 'scrypt', '--kdf-cost', '15', '--store', db.url, ...pass.flatMap((p) => ['--passphrase-file', p])]);
  if (r.code !== 0) throw new Error(`init failed: ${r.stderr}`);
  env = { DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':') };
  up = await startStubUpstream();
  replicas = await Promise.all([0, 1, 2].map(() => spawnReplica(env, up.url, [], procs)));
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
});

describe.runIf(PG)('replicas on one PostgreSQL store', () => {
  it('a revocation reaches every replica within 1 s', async () => {
    const k = keygen('spread');
    await Promise.all(replicas.map((r) => timeUntil(async () => (await chat(r.url, k.api_key)).status === 200)));
    expect(dsk(['keys', 'revoke', k.id], { env }).code).toBe(0);
    const ms = await Promise.all(replicas.map((r) => timeUntil(async () => (await chat(r.url, k.api_key)).status === 401)));
    for (const m of ms) expect(m).toBeLessThan(1000);
  });

  it('the key index reloads on NOTIFY, long before its poll would', async () => {
    const inputs = { passphrases: async () => passphrasesFromFiles(pass), pin: async () => Buffer.alloc(0) };
    const [a, b] = [await openUnsealed(home, defaultEnv('t'), inputs), await openUnsealed(home, defaultEnv('t'), inputs)];
    try {
      const k = keygen('pushed');
      const index = await KeyIndex.load(a);
      index.start(60_000); // the poll alone would take a minute
      await new Promise((r) => setTimeout(r, 300)); // LISTEN is in place
      await revokeKey(b, k.id, 'test');
      const ms = await timeUntil(async () => index.get(k.id)?.row.status === 'revoked', 3000);
      expect(ms).toBeLessThan(1000);
      index.stop();
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a signed request replayed to another replica is refused (the shared nonce table)', async () => {
    const k = keygen('signer');
    await Promise.all(replicas.map((r) => timeUntil(async () => (await chat(r.url, k.api_key)).status === 200)));
    const body = '{"model":"m","messages":[]}';
    const h = signHeaders({ apiKey: k.api_key, apiSecret: k.api_secret, keyId: k.id, method: 'POST', path: '/v1/chat/completions', body });
    delete h.Authorization;
    const rs = await Promise.all(Array.from({ length: 9 }, (_, i) => chat(replicas[i % 3].url, k.api_key, h, body)));
    expect(rs.filter((r) => r.status === 200)).toHaveLength(1);
    expect(rs.filter((r) => r.status === 401 && r.body.error.message === 'nonce already used')).toHaveLength(8);
    const rows = await sql(db.name, 'SELECT count(*)::int AS n FROM nonces WHERE key_id = $1', [k.id]);
    expect(rows[0].n).toBe(1);
  });

  it('usage from all replicas under concurrent load adds up exactly; one audit chain verifies', async () => {
    const k = keygen('busy');
    await Promise.all(replicas.map((r) => timeUntil(async () => (await chat(r.url, k.api_key)).status === 200)));
    await new Promise((r) => setTimeout(r, 1300));
    const count = async () => (await sql(db.name, 'SELECT use_count FROM keys WHERE id = $1', [k.id]))[0].use_count as number;
    const before = Number(await count());
    const per = 120;
    await Promise.all(
      replicas.map(async (r) => {
        for (let b = 0; b < per / 30; b++) {
          const rs = await Promise.all(Array.from({ length: 30 }, () => chat(r.url, k.api_key)));
          expect(rs.every((x) => x.status === 200)).toBe(true);
          await chat(r.url, k.api_key.slice(0, -6) + 'zzzzzz'); // refusal rows from every replica
        }
      }),
    );
    await timeUntil(async () => Number(await count()) === before + 3 * per, 5000);
    await new Promise((r) => setTimeout(r, 1200));
    expect(Number(await count())).toBe(before + 3 * per);
    const codes = await Promise.all(replicas.map(stopReplica));
    expect(codes).toEqual([0, 0, 0]);
    const v = dsk(['audit', 'verify'], { env });
    expect(v.code, v.stderr + v.stdout).toBe(0);
  });
});
