/**
 * The real `dsk` on a PostgreSQL store: init --store, the key lifecycle, audit verify and the
 * gateway on it; a second node joined with its own copy of the fragments (and refused with another
 * home's); two concurrent `rotate --due` on two nodes rotating each key once; and bad input, each a
 * one-line error with its exit code that names the store without a password and leaves nothing.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import { dsk, dskAsync, json, makeHome, passphraseFiles, snapshot, tmpDir } from './helpers.js';
import { freshDatabase, requirePostgres, sql } from './pg-helpers.js';
import { SCHEMA_VERSION } from '../src/store/migrations.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';
import { pkcs11Home, rederive, requireSoftHsm, softHsm } from './hsm-helpers.js';

const PG = requirePostgres('the PostgreSQL CLI tests');
const HSM = requireSoftHsm();

let up: StubUpstream;
const procs: ChildProcess[] = [];
beforeAll(async () => {
  if (PG) up = await startStubUpstream();
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
});

/** A software home on a fresh database: 3 fragments, 2 to unseal. */
async function pgHome(extra: string[] = []) {
  const db = await freshDatabase();
  const dir = tmpDir('dsk-pgcli-');
  const home = path.join(dir, 'home');
  const pass = passphraseFiles(dir, 3);
  const r = dsk(['init', '--home', home, '--shares', '3', '--threshold', '2', '--kdf', 'scrypt', '--kdf-cost', '15', '--store', db.url, ...pass.flatMap((p) => ['--passphrase-file', p]), '--json', ...extra]);
  if (r.code !== 0) throw new Error(`init failed: ${r.stderr}`);
  return { db, dir, home, pass, init: JSON.parse(r.stdout), env: { DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.slice(0, 2).join(':') } };
}

function join(h: Awaited<ReturnType<typeof pgHome>>, fragments = path.join(h.home, 'key_fragments')) {
  const copy = path.join(tmpDir('dsk-pgcopy-'), 'key_fragments');
  fs.cpSync(fragments, copy, { recursive: true });
  const home = path.join(tmpDir('dsk-pgnode-'), 'node2');
  const r = dsk(['init', '--home', home, '--join', h.db.url, '--fragments-from', copy, '--json'], { env: { DSK_PASSPHRASE_FILES: h.pass.slice(1, 3).join(':') } });
  return { r, home, env: { DSK_HOME: home, DSK_PASSPHRASE_FILES: h.pass.slice(1, 3).join(':') } };
}

async function serve(env: Record<string, string>): Promise<{ url: string; proc: ChildProcess; exited: Promise<number> }> {
  const proc = dskAsync(['serve', '--listen', '127.0.0.1:0', '--json', '--upstream', up.url], { env });
  procs.push(proc);
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number>((r) => proc.on('exit', (code) => r(code ?? -1)));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /"url":\s*"([^"]+)"/.exec(out);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (c) => reject(new Error(`dsk serve exited ${c}: ${err}`)));
  });
  return { url, proc, exited };
}

const auth = (key: string) => ({ Authorization: `Bearer ${key}` });

describe.runIf(PG)('dsk on a PostgreSQL store', () => {
  it('init --store keeps keys and the audit chain in the database, not in the home (the lifecycle on both engines: engines-cli.test.ts)', async () => {
    const h = await pgHome();
    expect(h.init).toMatchObject({ store: h.db.url, shares: 3, threshold: 2 });
    expect(fs.existsSync(path.join(h.home, 'keys.db'))).toBe(false);
    expect(fs.existsSync(path.join(h.home, 'audit_log', 'audit.db'))).toBe(false);
    expect(JSON.parse(fs.readFileSync(path.join(h.home, 'dsk.json'), 'utf8')).store).toEqual({ url: h.db.url });
    const k = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env: h.env }));
    expect(await sql(h.db.name, 'SELECT id, status FROM keys')).toEqual([{ id: k.id, status: 'active' }]);
    expect((await sql(h.db.name, 'SELECT action FROM audit_events ORDER BY seq')).map((r) => r.action)).toEqual(['MASTER_INIT', 'KEY_CREATE']);
    expect(await sql(h.db.name, 'SELECT home_id, key_check_value, schema_version FROM dsk_meta')).toEqual([{ home_id: h.init.home_id, key_check_value: h.init.key_check_value, schema_version: SCHEMA_VERSION }]);
    expect(json(dsk(['status', '--json'], { env: h.env }))).toMatchObject({ store: h.db.url, keys: { active: 1 } });
    expect(dsk(['status'], { env: h.env }).stdout).toContain(`store     PostgreSQL ${h.db.url}`);
  });

  it('a joined node serves the keys of the home; a revocation on the first node reaches its gateway; verify passes on both', async () => {
    const h = await pgHome();
    const k = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env: h.env }));
    const n2 = join(h);
    expect(n2.r.code, n2.r.stderr).toBe(0);
    expect(JSON.parse(n2.r.stdout)).toMatchObject({ home_id: h.init.home_id, key_check_value: h.init.key_check_value, store: h.db.url });
    const gw = await serve(n2.env);
    expect((await fetch(`${gw.url}/v1/models`, { headers: auth(k.api_key) })).status).toBe(200);
    expect(dsk(['keys', 'revoke', k.id, '--reason', 'leak'], { env: h.env }).code).toBe(0);
    const t0 = Date.now();
    let status = 200;
    while (status === 200 && Date.now() - t0 < 5000) {
      status = (await fetch(`${gw.url}/v1/models`, { headers: auth(k.api_key) })).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe(401);
    gw.proc.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
    // the role matrix lives in the store: a change on one node holds on the other
    expect(dsk(['policy', 'set', 'developer', 'audit.view', 'on'], { env: h.env }).code).toBe(0);
    expect(json(dsk(['policy', 'show', '--json'], { env: n2.env })).roles.developer).toContain('audit.view');
    for (const env of [h.env, n2.env]) expect(json(dsk(['audit', 'verify', '--json'], { env }))).toMatchObject({ ok: true });
    expect((await sql(h.db.name, "SELECT count(*)::int AS n FROM audit_events WHERE action = 'NODE_JOIN'"))[0].n).toBe(1);
  });

  it.runIf(HSM)('a PKCS#11 home keeps its store in PostgreSQL too (the master key stays in the token)', async () => {
    const db = await freshDatabase();
    const s = pkcs11Home(softHsm(), 'dsk-test', ['--store', db.url]);
    const k = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env: s.env }));
    expect(await rederive(s, k.id)).toBe(k.api_key);
    expect(await sql(db.name, 'SELECT id FROM keys')).toEqual([{ id: k.id }]);
    expect(json(dsk(['status', '--json'], { env: s.env }))).toMatchObject({ backend: 'pkcs11', store: db.url });
    expect(json(dsk(['audit', 'verify', '--json'], { env: s.env }))).toMatchObject({ ok: true, authenticated_through: 2 });
  });

  it("refuses to join with another home's fragments (exit 3), and leaves nothing behind", async () => {
    const a = await pgHome();
    const b = await pgHome();
    const copy = path.join(tmpDir('dsk-pgcopy-'), 'key_fragments');
    fs.cpSync(path.join(b.home, 'key_fragments'), copy, { recursive: true });
    const home = path.join(tmpDir('dsk-pgnode-'), 'node2');
    const r = dsk(['init', '--home', home, '--join', a.db.url, '--fragments-from', copy], { env: { DSK_PASSPHRASE_FILES: b.pass.slice(0, 2).join(':') } });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^dsk: error: these fragments hold a master key with check value [0-9a-f]+, but the store at postgres:\/\/postgres@127\.0\.0\.1:5432\/dsk_test_[0-9a-f]+ was sealed under/);
    expect(fs.existsSync(home)).toBe(false);
    expect(fs.readdirSync(path.dirname(home))).toEqual([]);
  });

  it('two concurrent rotate --due on two nodes of one home rotate each due key exactly once', async () => {
    const h = await pgHome();
    const n2 = join(h);
    expect(n2.r.code, n2.r.stderr).toBe(0);
    const ids = ['a', 'b', 'c'].map((n) => json(dsk(['keygen', '--name', n, '--role', 'developer', '--rotate-every', '2s', '--json'], { env: h.env })).id);
    await new Promise((r) => setTimeout(r, 2100));
    const run = (env: Record<string, string>) =>
      new Promise<{ code: number; out: string }>((resolve) => {
        const p = dskAsync(['rotate', '--due', '--wait', '--json'], { env });
        let out = '';
        p.stdout!.on('data', (d) => (out += d));
        p.on('exit', (code) => resolve({ code: code ?? -1, out }));
      });
    const [r1, r2] = await Promise.all([run(h.env), run(n2.env)]);
    expect([r1.code, r2.code]).toEqual([0, 0]);
    const rotated = [r1, r2].flatMap((r) => JSON.parse(r.out).actions.filter((a: any) => a.action === 'rotate').map((a: any) => a.old_key_id));
    expect(rotated.sort()).toEqual([...ids].sort());
    const successors = await sql(h.db.name, 'SELECT replaces, count(*)::int AS n FROM keys WHERE replaces IS NOT NULL GROUP BY replaces');
    expect(successors.map((s) => s.n)).toEqual([1, 1, 1]);
  });
});

describe.runIf(PG)('dsk store migrate', () => {
  it('copies a SQLite home into PostgreSQL, verifies the chain there, then switches the home; refuses a database in use', async () => {
    const h = makeHome(undefined, { shares: 2, threshold: 2 });
    const env = { ...h.env, DSK_PASSPHRASE_FILES: h.pass.slice(0, 2).join(':') };
    const k = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env }));
    const gone = json(dsk(['keygen', '--name', 'old', '--role', 'developer', '--json'], { env }));
    expect(dsk(['keys', 'revoke', gone.id], { env }).code).toBe(0);
    // the gateway's tables (migrations 5 and 6) move too: counters, a quota mark, a learned source
    const hour = Date.now() - (Date.now() % 3_600_000);
    const f = new Database(path.join(h.home, 'keys.db'));
    f.prepare('INSERT INTO usage_hourly (key_id, hour, model, requests, errors, prompt_tokens, completion_tokens, no_usage, last_at) VALUES (?, ?, ?, 4, 1, 30, 12, 0, ?)').run(k.id, hour, 'deepseek-r1', hour + 5);
    f.prepare("INSERT INTO quota_marks (key_id, kind, period_start, level, at) VALUES (?, 'tokens', ?, 80, ?)").run(k.id, hour, hour + 5);
    f.prepare("INSERT INTO key_sources (key_id, kind, value, first_seen) VALUES (?, 'site', 'lab', ?)").run(k.id, hour + 5);
    f.close();
    const before = json(dsk(['audit', 'verify', '--json'], { env }));
    const db = await freshDatabase();
    const r = json(dsk(['store', 'migrate', '--to', db.url, '--json'], { env }));
    expect(r.store).toBe(db.url);
    expect(Object.fromEntries(r.tables.map((t: any) => [t.table, t.rows]))).toMatchObject({ keys: 2, audit_events: before.rows, usage_hourly: 1, quota_marks: 1, key_sources: 1 });
    expect(await sql(db.name, 'SELECT key_id, kind, value, first_seen FROM key_sources')).toEqual([{ key_id: k.id, kind: 'site', value: 'lab', first_seen: String(hour + 5) }]);
    expect(json(dsk(['usage', '--json'], { env })).groups).toEqual([expect.objectContaining({ group: k.id, requests: 4, errors: 1, tokens: 42 })]);
    expect(r.audit).toEqual({ rows: before.rows + 1, head_seq: before.last_seq + 1, verified: true });
    expect(JSON.parse(fs.readFileSync(path.join(h.home, 'dsk.json'), 'utf8')).store).toEqual({ url: db.url });
    // the home now reads PostgreSQL: a key issued now is there and not in the SQLite files
    const after = json(dsk(['keygen', '--name', 'new', '--role', 'developer', '--json'], { env }));
    expect((await sql(db.name, 'SELECT id FROM keys WHERE id = $1', [after.id]))).toHaveLength(1);
    expect(json(dsk(['keys', 'show', k.id, '--json'], { env })).status).toBe('active');
    expect(json(dsk(['keys', 'show', gone.id, '--json'], { env })).status).toBe('revoked');
    expect(json(dsk(['audit', 'verify', '--json'], { env }))).toMatchObject({ ok: true, authenticated_through: before.rows + 2, head_file: { state: 'match' } });
    // keys set writes the options on PostgreSQL
    expect(json(dsk(['keys', 'set', k.id, '--models', 'deepseek-r1', '--json'], { env })).options).toEqual({ models: ['deepseek-r1'] });
    // a second migrate of the same home, or into a database in use, is refused
    expect(dsk(['store', 'migrate', '--to', db.url], { env })).toMatchObject({ code: 6, stderr: expect.stringContaining('already keeps its store in PostgreSQL') });
    const other = makeHome(undefined, { shares: 2, threshold: 2 });
    const snap = snapshot(other.home);
    const busy = dsk(['store', 'migrate', '--to', db.url], { env: { ...other.env, DSK_PASSPHRASE_FILES: other.pass.join(':') } });
    expect(busy).toMatchObject({ code: 7, stderr: expect.stringContaining(`the store at ${db.url} already holds dsk home`) });
    expect(snapshot(other.home)).toEqual(snap);
  });
});

describe.runIf(PG)('bad input on a PostgreSQL store: one line, the exit code, the address without a password, nothing left', () => {
  function init(url: string, extra: string[] = [], env: Record<string, string> = {}) {
    const dir = tmpDir('dsk-pgbad-');
    const home = path.join(dir, 'home');
    const pass = passphraseFiles(dir, 2);
    const r = dsk(['init', '--home', home, '--shares', '2', '--threshold', '2', '--store', url, ...pass.flatMap((p) => ['--passphrase-file', p]), ...extra], { env: { DSK_STORE_CONNECT_TIMEOUT_MS: '2000', ...env } });
    expect(fs.existsSync(home)).toBe(false);
    expect(fs.readdirSync(dir).filter((f) => !f.endsWith('.pass'))).toEqual([]);
    expect(r.stderr.split('\n').filter((l) => l.startsWith('dsk: error:'))).toHaveLength(1);
    return r;
  }

  it('a malformed address or one carrying a password is a usage error (exit 2), refused before any I/O', () => {
    expect(init('postgres://')).toMatchObject({ code: 2, stderr: expect.stringContaining('not a usable PostgreSQL address') });
    const r = init('postgres://dsk:hunter2@127.0.0.1/db');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('must not carry a password');
    expect(r.stderr).not.toContain('hunter2');
  });

  it('an unreachable server, a missing database, a database holding another home, a newer schema: exit 7 naming the store', async () => {
    const refused = init('postgres://dsk@127.0.0.1:1/dsk', [], { PGPASSWORD: 'hunter2' });
    expect(refused.code).toBe(7);
    expect(refused.stderr).toMatch(/^dsk: error: cannot reach the store at postgres:\/\/dsk@127\.0\.0\.1:1\/dsk \(ECONNREFUSED\)/);
    expect(refused.stderr).not.toContain('hunter2');
    const nohost = init('postgres://dsk@no-such-host.invalid:5432/dsk');
    expect(nohost).toMatchObject({ code: 7, stderr: expect.stringContaining('cannot reach the store at postgres://dsk@no-such-host.invalid:5432/dsk') });
    const missing = init('postgres://postgres@127.0.0.1:5432/dsk_no_such_database');
    expect(missing).toMatchObject({ code: 7, stderr: expect.stringContaining('the store at postgres://postgres@127.0.0.1:5432/dsk_no_such_database does not exist') });
    const h = await pgHome();
    const taken = init(h.db.url);
    expect(taken).toMatchObject({ code: 7, stderr: expect.stringContaining(`the store at ${h.db.url} already holds dsk home ${h.init.home_id}`) });
    // a home pointed at another home's database
    const other = await pgHome();
    const cfg = JSON.parse(fs.readFileSync(path.join(other.home, 'dsk.json'), 'utf8'));
    fs.writeFileSync(path.join(other.home, 'dsk.json'), JSON.stringify({ ...cfg, store: { url: h.db.url } }), { mode: 0o600 });
    const wrong = dsk(['keys', 'list'], { env: other.env });
    expect(wrong).toMatchObject({ code: 7, stderr: expect.stringContaining(`the store at ${h.db.url} belongs to another dsk home`) });
    // an existing home whose server went away: every command says where, without waiting long
    fs.writeFileSync(path.join(other.home, 'dsk.json'), JSON.stringify({ ...cfg, store: { url: 'postgres://postgres@127.0.0.1:1/gone' } }), { mode: 0o600 });
    const down = dsk(['keys', 'list'], { env: { ...other.env, PGPASSWORD: 'hunter2' } });
    expect(down).toMatchObject({ code: 7, stderr: expect.stringMatching(/^dsk: error: cannot reach the store at postgres:\/\/postgres@127\.0\.0\.1:1\/gone \(ECONNREFUSED\); nothing was changed\ndsk: hint: /) });
    expect(down.stderr).not.toContain('hunter2');
    await sql(h.db.name, 'UPDATE dsk_meta SET schema_version = schema_version + 1');
    const newer = dsk(['keys', 'list'], { env: h.env });
    expect(newer).toMatchObject({ code: 7, stderr: expect.stringContaining(`the store at ${h.db.url} has schema version`) });
  });
});
