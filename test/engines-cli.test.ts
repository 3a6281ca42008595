/**
 * One CLI suite over both store engines, as hsm.test.ts runs one over both master-key backends:
 * the key lifecycle, manual and scheduled rotation, `audit verify` (and a tampered row named), and
 * the gateway accepting a live key and refusing revoked and unknown ones, counting a request's
 * tokens against a key's quota (`dsk usage`) and learning where the key was used from. The same commands, the
 * same output; only where the rows live differs (the home's SQLite files, or a fresh PostgreSQL
 * database).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dsk, dskAsync, json, passphraseFiles, tmpDir } from './helpers.js';
import { freshDatabase, requirePostgres, sql } from './pg-helpers.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';
import { openStore } from '../src/store/open.js';

const PG = requirePostgres('the PostgreSQL half of the engine suite');
const ENGINES = PG ? (['sqlite', 'postgres'] as const) : (['sqlite'] as const);

let up: StubUpstream;
const procs: ChildProcess[] = [];
beforeAll(async () => {
  up = await startStubUpstream();
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
});

async function serve(env: Record<string, string>): Promise<{ url: string; proc: ChildProcess }> {
  const proc = dskAsync(['serve', '--listen', '127.0.0.1:0', '--json', '--upstream', up.url], { env });
  procs.push(proc);
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /"url":\s*"([^"]+)"/.exec(out);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (c) => reject(new Error(`dsk serve exited ${c}: ${err}`)));
  });
  return { url, proc };
}

describe.each(ENGINES)('the CLI on the %s store', (engine) => {
  let env: Record<string, string>;
  let home: string;
  let db: { name: string; url: string } | null = null;
  let svc: any;
  let batch: any;

  beforeAll(async () => {
    const dir = tmpDir(`dsk-${engine}-`);
    home = path.join(dir, 'home');
    const pass = passphraseFiles(dir, 2);
    if (engine === 'postgres') db = await freshDatabase();
    const r = dsk(['init', '--home', home, '--shares', '2', '--threshold', '2', '--kdf', 'scrypt', '--kdf-cost', '15', ...pass.flatMap((p) => ['--passphrase-file', p]), ...(db ? ['--store', db.url] : [])]);
    if (r.code !== 0) throw new Error(r.stderr);
    env = { DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':') };
  });

  it('keys: issue, list, show, revoke; status counts them', () => {
    svc = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env }));
    batch = json(dsk(['keygen', '--name', 'batch', '--role', 'automation', '--owner', 'ops', '--rotate-every', '2s', '--json'], { env }));
    const gone = json(dsk(['keygen', '--name', 'gone', '--role', 'developer', '--json'], { env }));
    expect(json(dsk(['keys', 'list', '--json'], { env })).map((k: any) => [k.name, k.status])).toEqual([
      ['svc', 'active'],
      ['batch', 'active'],
      ['gone', 'active'],
    ]);
    expect(json(dsk(['keys', 'show', batch.id, '--json'], { env }))).toMatchObject({ id: batch.id, owner: 'ops', role: 'automation' });
    expect(json(dsk(['keys', 'revoke', gone.id, '--reason', 'test', '--json'], { env })).status).toBe('revoked');
    expect(dsk(['keys', 'revoke', gone.id], { env })).toMatchObject({ code: 6 });
    expect(json(dsk(['keys', 'list', '--status', 'revoked', '--json'], { env })).map((k: any) => k.id)).toEqual([gone.id]);
    expect(json(dsk(['status', '--json'], { env })).keys).toMatchObject({ active: 2, revoked: 1 });
  });

  it('rotation: manual with grace, then the scheduled key rotates once under rotate --due', async () => {
    const r = json(dsk(['rotate', svc.id, '--json'], { env }));
    expect(json(dsk(['keys', 'show', svc.id, '--json'], { env }))).toMatchObject({ status: 'grace', replaced_by: r.id });
    svc = { ...r, old: svc };
    await new Promise((res) => setTimeout(res, 2100));
    const due = json(dsk(['rotate', '--due', '--json'], { env }));
    expect(due.actions.filter((a: any) => a.action === 'rotate').map((a: any) => a.old_key_id)).toEqual([batch.id]);
    const again = json(dsk(['rotate', '--due', '--json'], { env }));
    expect(again.actions.filter((a: any) => a.action === 'rotate' && a.old_key_id === batch.id)).toEqual([]);
  });

  it('the gateway accepts live keys (a key in grace too) and refuses revoked and unknown ones', async () => {
    const gw = await serve(env);
    const get = (key: string) => fetch(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${key}` } }).then((r) => r.status);
    expect(await get(svc.api_key)).toBe(200);
    expect(await get(svc.old.api_key)).toBe(200);
    expect(dsk(['keys', 'revoke', svc.id], { env }).code).toBe(0);
    const t0 = Date.now();
    let s = 200;
    while (s === 200 && Date.now() - t0 < 5000) if ((s = await get(svc.api_key)) === 200) await new Promise((res) => setTimeout(res, 50));
    expect(s).toBe(401);
    expect(await get(svc.api_key.slice(0, -6) + 'AAAAAA')).toBe(401);
    gw.proc.kill('SIGTERM');
    await new Promise((r) => gw.proc.once('exit', r));
  });

  it('usage: keygen --models/--token-quota, a request counted with its tokens, dsk usage, a quota row and a key source learned', async () => {
    const k = json(dsk(['keygen', '--name', 'metered', '--role', 'developer', '--models', 'deepseek-stub', '--token-quota', '5/day', '--json'], { env }));
    expect(json(dsk(['keys', 'show', k.id, '--json'], { env })).options).toEqual({ models: ['deepseek-stub'], quota: { tokens: { limit: 5, period: 'day' } } });
    // with a network map in dsk.json the gateway labels sources (127.0.0.1 is site 'loopback')
    const cfgPath = path.join(home, 'dsk.json');
    fs.writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(fs.readFileSync(cfgPath, 'utf8')), network: { '127.0.0.0/8': 'loopback' } }, null, 2));
    const gw = await serve(env);
    const r = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${k.api_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'one two three' }] }),
    });
    expect(r.status).toBe(200);
    expect((await r.json()).usage).toMatchObject({ prompt_tokens: 3, completion_tokens: 4 });
    // counted once the gateway flushed (every second): the hourly counters, and the quota passed (7 of 5 tokens)
    const t0 = Date.now();
    let exceeded = dsk(['audit', 'query', '--action', 'QUOTA_EXCEEDED', '--limit', '1', '--json'], { env }).stdout.trim();
    while (!exceeded && Date.now() - t0 < 15_000) {
      await new Promise((res) => setTimeout(res, 200));
      exceeded = dsk(['audit', 'query', '--action', 'QUOTA_EXCEEDED', '--limit', '1', '--json'], { env }).stdout.trim();
    }
    gw.proc.kill('SIGTERM');
    await new Promise((res) => gw.proc.once('exit', res));
    expect(JSON.parse(exceeded)).toMatchObject({ key_id: k.id });
    const u = json(dsk(['usage', '--json'], { env }));
    expect(u.groups.find((g: any) => g.group === k.id)).toMatchObject({ name: 'metered', requests: 1, prompt_tokens: 3, completion_tokens: 4, tokens: 7 });
    expect(json(dsk(['usage', '--by', 'model', '--json'], { env })).groups.find((g: any) => g.group === 'deepseek-stub')).toMatchObject({ requests: 1, tokens: 7 });
    expect(json(dsk(['keys', 'show', k.id, '--json'], { env })).quota_left).toEqual([expect.objectContaining({ kind: 'tokens', used: 7, left: 0 })]);
    const store = await openStore(home, { readonly: true });
    try {
      expect((await store.keySources.all()).filter((s) => s.key_id === k.id)).toEqual([{ key_id: k.id, kind: 'site', value: 'loopback', first_seen: expect.any(Number) }]);
    } finally {
      await store.close();
    }
  });

  it('export env, tokens and audit export/stats read the same on both engines', () => {
    const k = json(dsk(['keygen', '--name', 'worker', '--role', 'automation', '--json'], { env }));
    const env1 = dsk(['export', 'env', k.id], { env });
    expect(env1.code, env1.stderr).toBe(0);
    expect(env1.stdout).toBe(`DEEPSEEK_API_KEY=${k.api_key}\nDEEPSEEK_API_SECRET=${k.api_secret}\n`);
    expect(json(dsk(['token', 'issue', k.id, '--ttl', '15m', '--json'], { env }))).toMatchObject({ key_id: k.id });
    const rows = dsk(['audit', 'export', '--format', 'jsonl'], { env }).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(rows.map((r) => r.seq)).toEqual(rows.map((_, i) => i + 1));
    expect(rows.map((r) => r.action)).toEqual(expect.arrayContaining(['MASTER_INIT', 'KEY_CREATE', 'KEY_REVOKE', 'KEY_ROTATION', 'KEY_EXPORT', 'TOKEN_ISSUE']));
    const stats = json(dsk(['audit', 'stats', '--json'], { env }));
    expect(stats.total).toBe(rows.length);
  });

  it('audit verify passes, then names a row edited behind dsk’s back (exit 5)', async () => {
    const ok = json(dsk(['audit', 'verify', '--json'], { env }));
    expect(ok).toMatchObject({ ok: true, head_file: { state: 'match' }, breach: null });
    const target = json(dsk(['audit', 'query', '--action', 'KEY_REVOKE', '--limit', '1', '--json'], { env })).seq;
    const tamper = `UPDATE ${engine === 'postgres' ? 'audit_events' : 'events'} SET details = '{"reason":"nothing to see"}' WHERE seq = ${target}`;
    if (db) await sql(db.name, tamper);
    else {
      const f = new Database(path.join(home, 'audit_log', 'audit.db'));
      f.exec(tamper);
      f.close();
    }
    const bad = dsk(['audit', 'verify', '--json'], { env });
    expect(bad.code).toBe(5);
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, breach: { seq: target, kind: 'edited' } });
  });
});
