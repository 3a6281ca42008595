/**
 * Rewriting history without the key, as issue 11 found it: delete a row, recompute the plain hashes
 * after it, NULL their MACs and write HEAD unkeyed; then a routine keyed write must not bless it,
 * and `dsk audit verify` with the key must name the forgery. Also: rows the gateway writes move
 * HEAD, so cutting them off the end is `truncated`.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dsk, json, makeHome, requireTool, tmpDir } from './helpers.js';
import { defaultEnv, openUnsealed } from '../src/app/home.js';
import { passphrasesFromFiles } from '../src/cli/secrets.js';
import { chainHash, q, rows, sqlite } from './audit-helpers.js';
import { openTestHome, gateway, startStubUpstream, type StubUpstream } from './gwkit.js';
import { readHead } from '../src/audit/head.js';
import { verifyChain } from '../src/audit/verify.js';
import { issueKey, revokeKey } from '../src/app/keys.js';

const SQLITE = requireTool('sqlite3', 'the audit forgery tests');

const auditDb = (home: string) => path.join(home, 'audit_log', 'audit.db');
const headFile = (home: string) => path.join(home, 'audit_log', 'HEAD');

/** Removes row `seq`, renumbers and re-hashes every row after it with mac NULL, and writes HEAD unkeyed. */
function deleteAndRehash(home: string, seq: number): void {
  const all = rows(auditDb(home));
  let prev = all.find((r) => r.seq === seq - 1)!.hash;
  const stmts = [`DELETE FROM events WHERE seq >= ${seq};`];
  let n = seq;
  for (const r of all.filter((x) => x.seq > seq)) {
    const moved = { ...r, seq: n, prev_hash: prev };
    const h = chainHash(moved);
    stmts.push(`INSERT INTO events VALUES (${n}, ${q(r.ts)}, ${q(r.action)}, ${q(r.actor)}, ${q(r.source_ip)}, ${q(r.key_id)}, ${q(r.details)}, ${q(prev)}, ${q(h)}, NULL);`);
    prev = h;
    n++;
  }
  sqlite(auditDb(home), stmts.join('\n'));
  fs.writeFileSync(headFile(home), JSON.stringify({ format: 'dsk-audit-head/1', seq: n - 1, hash: prev, mac: null, updated_at: new Date().toISOString() }) + '\n', { mode: 0o600 });
}

/** One freshly initialised home; each test works on its own copy (init costs five KDF runs). */
let base: ReturnType<typeof makeHome> | null = null;

/** A copy of the base home, unsealed in this process: setup writes go through the library. */
async function unsealedHome() {
  base ??= makeHome();
  const dir = tmpDir('dsk-forge-');
  const homeDir = path.join(dir, 'home');
  fs.cpSync(base.home, homeDir, { recursive: true });
  const h = await openUnsealed(homeDir, defaultEnv('tester'), { passphrases: async () => passphrasesFromFiles(base!.pass.slice(0, 3)), pin: async () => Buffer.alloc(0) });
  const t = { dir, home: homeDir, h, env: { ...base.env, DSK_HOME: homeDir } };
  const keygen = async (name: string) => (await issueKey(t.h, { name, role: 'automation' })).id;
  const verify = () => verifyChain(t.h.store, readHead(t.home), t.h.auditKey);
  return { ...t, keygen, verify };
}

describe.skipIf(!SQLITE)('audit history cannot be rewritten without the key', () => {
  const open: { h: { close(): Promise<void> } }[] = [];
  afterAll(async () => {
    for (const t of open) await t.h.close();
  });
  const home = async () => {
    const t = await unsealedHome();
    open.push(t);
    return t;
  };

  it('the issue 11 attack: a deleted KEY_REVOKE row, re-hashed tail, NULL MACs, unkeyed HEAD, then a routine dsk keygen', async () => {
    const t = await home();
    const a = await t.keygen('a');
    await revokeKey(t.h, a, 'leaked');
    await t.keygen('b');
    await t.keygen('c');
    const revoke = rows(auditDb(t.home)).find((r) => r.action === 'KEY_REVOKE')!;
    deleteAndRehash(t.home, revoke.seq);
    // The routine write that used to bless the rewritten rows.
    expect(dsk(['keygen', '--name', 'routine', '--role', 'automation', '--json'], { env: t.env }).code).toBe(0);
    const after = rows(auditDb(t.home));
    expect(after.some((r) => r.action === 'KEY_REVOKE')).toBe(false);
    // The keyed writer recorded the break, keyed, before its own row.
    const brk = after.find((r) => r.action === 'AUDIT_BREAK')!;
    expect(brk.mac).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse(brk.details)).toMatchObject({ seq: revoke.seq, kind: 'forged', authenticated_through: revoke.seq - 1 });
    expect(after[after.length - 1].action).toBe('KEY_CREATE');
    // verify with the key names the first unkeyed row that may not be unkeyed, as forged, exit 5.
    const v = dsk(['audit', 'verify', '--strict', '--json'], { env: t.env });
    expect(v.code, v.stdout).toBe(5);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: false, breach: { seq: revoke.seq, kind: 'forged' } });
    expect(v.stderr).toContain(`broken at seq ${revoke.seq} (forged)`);
    // Structure alone also refuses a NULL MAC on an action that is never written unkeyed.
    const plain = await verifyChain(t.h.store, readHead(t.home), null);
    expect(plain.breach).toMatchObject({ seq: revoke.seq, kind: 'forged' });
    expect(plain.breach!.message).toMatch(/row \d+ \(KEY_CREATE\) has no MAC/);
    // Later keyed writes chain onto the keyed AUDIT_BREAK row: no second break row.
    await t.keygen('later');
    expect(rows(auditDb(t.home)).filter((r) => r.action === 'AUDIT_BREAK').length).toBe(1);
  });

  it('an edited unkeyed row of an allowed action is a break too (its hash no longer matches)', async () => {
    const t = await home();
    // a refused unseal writes an unkeyed UNSEAL_FAILURE row
    const bad = path.join(t.dir, 'bad.pass');
    fs.writeFileSync(bad, 'not-a-custodian-passphrase\n', { mode: 0o600 });
    expect(dsk(['keygen', '--name', 'x', '--role', 'automation'], { env: { ...t.env, DSK_PASSPHRASE_FILES: [bad, bad, bad].join(':') } }).code).not.toBe(0);
    const uf = rows(auditDb(t.home)).pop()!;
    expect(uf).toMatchObject({ action: 'UNSEAL_FAILURE', mac: null });
    // Untouched, a keyed write covers it without a break.
    const clean = path.join(tmpDir('dsk-forge-'), 'home');
    fs.cpSync(t.home, clean, { recursive: true });
    sqlite(auditDb(t.home), `UPDATE events SET actor = 'someone-else' WHERE seq = ${uf.seq}`);
    await t.keygen('after');
    const brk = rows(auditDb(t.home)).find((x) => x.action === 'AUDIT_BREAK')!;
    expect(JSON.parse(brk.details)).toMatchObject({ seq: uf.seq, kind: 'edited' });
    expect((await t.verify()).breach).toMatchObject({ seq: uf.seq, kind: 'edited' });
    const c = json(dsk(['keygen', '--name', 'after', '--role', 'automation', '--json'], { env: { ...t.env, DSK_HOME: clean } }));
    expect(c.id).toMatch(/^[0-9a-f]{12}$/);
    expect(rows(auditDb(clean)).some((x) => x.action === 'AUDIT_BREAK')).toBe(false);
    expect(json(dsk(['audit', 'verify', '--strict', '--json'], { env: { ...t.env, DSK_HOME: clean } }))).toMatchObject({ ok: true, unauthenticated: null, head_file: { state: 'match', mac: 'valid', finding: null } });
  });

  it('an unkeyed HEAD naming a keyed row (keyed rows cut, HEAD rewritten) fails --strict, and keyed writers leave it as evidence', async () => {
    const t = await home();
    await t.keygen('a');
    await t.keygen('b');
    const all = rows(auditDb(t.home));
    const last = all[all.length - 1];
    const keep = all[all.length - 2];
    sqlite(auditDb(t.home), `DELETE FROM events WHERE seq = ${last.seq}`);
    fs.writeFileSync(headFile(t.home), JSON.stringify({ format: 'dsk-audit-head/1', seq: keep.seq, hash: keep.hash, mac: null, updated_at: new Date().toISOString() }) + '\n', { mode: 0o600 });
    const lax = await t.verify();
    expect(lax.breach).toBeNull();
    expect(lax.head_file!.finding).toMatch(/written without the audit key but names a keyed row/);
    await t.keygen('c');
    expect(readHead(t.home)).toMatchObject({ state: 'ok', head: { seq: keep.seq, mac: null } });
    const strict = dsk(['audit', 'verify', '--strict'], { env: t.env });
    expect(strict.code).toBe(5);
    expect(strict.stderr).toContain('names a keyed row');
  });

  it('a keyed row whose MAC was replaced is a break for the next writer', async () => {
    const t = await home();
    await t.keygen('a');
    const last = rows(auditDb(t.home)).pop()!;
    sqlite(auditDb(t.home), `UPDATE events SET mac = '${'ab'.repeat(32)}' WHERE seq = ${last.seq}`);
    await t.keygen('b');
    const brk = rows(auditDb(t.home)).find((x) => x.action === 'AUDIT_BREAK')!;
    expect(JSON.parse(brk.details)).toMatchObject({ seq: last.seq, kind: 'forged' });
  });
});

describe.skipIf(!SQLITE)('the gateway moves audit_log/HEAD with its flushes', () => {
  let t: Awaited<ReturnType<typeof openTestHome>>;
  let up: StubUpstream;
  beforeAll(async () => {
    t = await openTestHome();
    up = await startStubUpstream();
  });
  afterAll(async () => {
    await t.h.close();
    await up.close();
  });

  it('refusal rows flushed by dsk serve are covered by HEAD; cutting them off is truncated', async () => {
    const gw = await gateway(t.h, up.url, { flushMs: 60_000 });
    try {
      const before = readHead(t.home);
      for (let i = 0; i < 3; i++) {
        const r = await fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer nope-${i}` } });
        expect(r.status).toBe(401);
      }
      await gw.flush();
      const after = readHead(t.home);
      expect(after.state).toBe('ok');
      expect(before.state === 'ok' && after.state === 'ok' && after.head.seq > before.head.seq).toBe(true);
      const all = rows(auditDb(t.home));
      expect(after.state === 'ok' && after.head.seq).toBe(all[all.length - 1].seq);
      expect(all[all.length - 1].action).toBe('AUTH_FAILURE');
      expect(after.state === 'ok' && after.head.mac).toMatch(/^[0-9a-f]{64}$/);
    } finally {
      await gw.close();
    }
    const copy = path.join(tmpDir('dsk-gwcut-'), 'home');
    fs.cpSync(t.home, copy, { recursive: true });
    const all = rows(auditDb(copy));
    const cut = all.filter((r) => r.action === 'AUTH_FAILURE')[0].seq;
    sqlite(auditDb(copy), `DELETE FROM events WHERE seq >= ${cut}`);
    const v = dsk(['audit', 'verify', '--json'], { env: { ...t.env, DSK_HOME: copy } });
    expect(v.code).toBe(5);
    expect(JSON.parse(v.stdout)).toMatchObject({ breach: { seq: cut, kind: 'truncated' } });
  });
});
