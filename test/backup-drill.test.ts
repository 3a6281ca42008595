/**
 * The restore drill of issue 14, with real processes: a live home under load (the gateway serving
 * requests and flushing usage, a keygen loop issuing keys) → dsk backup → the home destroyed →
 * dsk restore → the gateway serves every key issued before the backup, refuses the one issued
 * after it, and `dsk audit verify` (MACs checked) passes.
 */
import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { dsk, dskAsync, json, makeHome, tmpDir } from './helpers.js';
import { auditRows, keyCount } from './cli-support.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';

const procs: ChildProcess[] = [];
let up: StubUpstream | undefined;
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
});

async function serve(env: NodeJS.ProcessEnv, upstream: string): Promise<{ url: string; proc: ChildProcess; exited: Promise<number> }> {
  const proc = dskAsync(['serve', '--upstream', upstream, '--listen', '127.0.0.1:0', '--json'], { env });
  procs.push(proc);
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number>((r) => proc.on('exit', (c) => r(c ?? -1)));
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

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = dskAsync(args, { env });
  procs.push(p);
  let stdout = '';
  let stderr = '';
  p.stdout!.on('data', (d) => (stdout += d));
  p.stderr!.on('data', (d) => (stderr += d));
  return new Promise((r) => p.on('exit', (code) => r({ code: code ?? -1, stdout, stderr })));
}

const status = async (url: string, key: string) => (await fetch(`${url}/v1/models`, { headers: { Authorization: `Bearer ${key}` } })).status;

describe('restore drill', () => {
  it('live home under load → backup → home destroyed → restore → old keys served, audit verified', async () => {
    const t = makeHome();
    up = await startStubUpstream();
    const issued: { key: string; doneAt: number }[] = [];
    const keygen = async (n: number) => {
      const r = await run(['keygen', '--name', `svc-${n}`, '--role', 'developer', '--json'], t.env);
      expect(r.code, r.stderr).toBe(0);
      issued.push({ key: JSON.parse(r.stdout).api_key, doneAt: Date.now() });
    };
    await keygen(0);
    const gw = await serve(t.env, up.url);

    // Load: requests with every issued key, and keys issued one after another, until told to stop.
    let stop = false;
    let served = 0;
    const requests = (async () => {
      while (!stop) {
        for (const k of issued.slice()) if ((await status(gw.url, k.key)) === 200) served++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    let n = 1;
    const keygens = (async () => {
      while (!stop) await keygen(n++);
    })();
    while (issued.length < 3) await new Promise((r) => setTimeout(r, 50));

    const out = path.join(tmpDir(), 'drill.tar');
    const backupStarted = Date.now();
    const b = await run(['backup', '--out', out, '--include-fragments', '--json'], t.env);
    expect(b.code, b.stderr).toBe(0);
    const backupEnded = Date.now();
    const manifest = JSON.parse(b.stdout);
    stop = true;
    await Promise.all([requests, keygens]);
    await keygen(999); // certainly after the snapshot
    expect(served).toBeGreaterThan(0);
    gw.proc.kill('SIGTERM');
    expect(await gw.exited).toBe(0);

    const before = issued.filter((k) => k.doneAt < backupStarted);
    const after = issued.slice(-1);
    expect(after[0].doneAt).toBeGreaterThan(backupEnded);
    expect(before.length).toBeGreaterThanOrEqual(3);

    fs.rmSync(t.home, { recursive: true, force: true });
    const r = json(dsk(['restore', out, '--json'], { env: t.env }));
    expect(r).toMatchObject({ home: t.home, home_id: manifest.home_id, fragments_included: true });

    const v = json(dsk(['audit', 'verify', '--json'], { env: t.env }));
    expect(v).toMatchObject({ ok: true, mode: 'structure+mac', breach: null });
    expect(v.last_seq).toBe(manifest.audit.last_seq);

    // one instant for both files: every key in keys.db has its KEY_CREATE row, and no row lacks its key
    expect(auditRows(t.home).filter((x) => x.action === 'KEY_CREATE')).toHaveLength(keyCount(t.home));
    expect(keyCount(t.home)).toBeGreaterThanOrEqual(before.length);

    const again = await serve(t.env, up.url);
    for (const k of before) expect(await status(again.url, k.key)).toBe(200);
    for (const k of after) expect(await status(again.url, k.key)).toBe(401);
    again.proc.kill('SIGTERM');
    expect(await again.exited).toBe(0);
  });
});
