/**
 * The disaster-recovery drill (seed 4.2), on one machine: a throwaway primary cluster (initdb on a
 * free port, password logins), a dsk home on it, a standby kept in sync by PostgreSQL's own
 * streaming replication (pg_basebackup -R), then the primary stopped as if its machine were lost,
 * the standby promoted, the home pointed at it: `dsk serve` serves the old keys (and still refuses
 * the revoked one) and `dsk audit verify` passes. Before the failover, writes against the standby
 * are refused (exit 7, read-only). The password comes from a file and never shows in an error.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dsk, dskAsync, json, passphraseFiles, tmpDir } from './helpers.js';
import { requirePostgres } from './pg-helpers.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';

const PG = requirePostgres('the failover drill');
const BIN = fs.existsSync('/usr/lib/postgresql') ? path.join('/usr/lib/postgresql', fs.readdirSync('/usr/lib/postgresql').sort().at(-1)!, 'bin') : '';
const PASSWORD = 'drill-' + Math.random().toString(36).slice(2);
const root = process.getuid?.() === 0;

const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-drill-'));
const procs: ChildProcess[] = [];
let up: StubUpstream | undefined;

/** Runs a PostgreSQL tool as the `postgres` OS user when we are root (initdb refuses root). */
function pgTool(tool: string, args: string[], env: NodeJS.ProcessEnv = {}): string {
  const cmd = root ? 'runuser' : path.join(BIN, tool);
  const full = root ? ['-u', 'postgres', '--', path.join(BIN, tool), ...args] : args;
  const r = spawnSync(cmd, full, { encoding: 'utf8', env: { ...process.env, PGPASSWORD: PASSWORD, ...env }, cwd: base, timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

function freePort(): number {
  return 20_000 + Math.floor(Math.random() * 20_000);
}

function startCluster(dir: string, port: number): void {
  pgTool('pg_ctl', ['-D', dir, '-l', path.join(base, `${path.basename(dir)}.log`), '-w', '-o', `-p ${port} -k ${base} -c listen_addresses=127.0.0.1`, 'start']);
}

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
  for (const d of ['primary', 'standby']) if (fs.existsSync(path.join(base, d, 'postmaster.pid'))) spawnSync(root ? 'runuser' : path.join(BIN, 'pg_ctl'), [...(root ? ['-u', 'postgres', '--', path.join(BIN, 'pg_ctl')] : []), '-D', path.join(base, d), '-m', 'immediate', 'stop']);
  fs.rmSync(base, { recursive: true, force: true });
});

describe.runIf(PG && BIN)('disaster recovery: a streaming standby promoted after the primary is lost', () => {
  it('the promoted standby serves the old keys through dsk serve and the audit chain verifies', async () => {
    if (root) spawnSync('chown', ['postgres', base]);
    fs.chmodSync(base, 0o755);
    const pwfile = path.join(base, 'pw');
    fs.writeFileSync(pwfile, PASSWORD + '\n', { mode: 0o644 });
    const [p1, p2] = [freePort(), freePort() + 1];
    pgTool('initdb', ['-D', path.join(base, 'primary'), '-U', 'postgres', '--pwfile', pwfile, '--auth-host=scram-sha-256', '--auth-local=trust', '-E', 'UTF8', '--no-sync']);
    startCluster(path.join(base, 'primary'), p1);
    pgTool('createdb', ['-h', '127.0.0.1', '-p', String(p1), '-U', 'postgres', 'dsk']);

    // A home on the primary; its password only in a file of the operator's.
    const dir = tmpDir('dsk-drill-home-');
    const home = path.join(dir, 'home');
    const pass = passphraseFiles(dir, 2);
    const secret = path.join(dir, 'pgpass');
    fs.writeFileSync(secret, PASSWORD + '\n', { mode: 0o600 });
    const url = `postgres://postgres@127.0.0.1:${p1}/dsk`;
    const env = { DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':') };
    const wrong = path.join(dir, 'wrong');
    fs.writeFileSync(wrong, 'not-the-password\n', { mode: 0o600 });
    const bad = dsk(['init', '--home', home, '--shares', '2', '--threshold', '2', '--store', url, '--store-password-file', wrong, ...pass.flatMap((p) => ['--passphrase-file', p])]);
    expect(bad.code).toBe(7);
    expect(bad.stderr).toContain(`cannot log in to the store at ${url}`);
    expect(bad.stderr).not.toContain('not-the-password');
    expect(fs.existsSync(home)).toBe(false);
    const init = dsk(['init', '--home', home, '--shares', '2', '--threshold', '2', '--store', url, '--store-password-file', secret, ...pass.flatMap((p) => ['--passphrase-file', p])]);
    expect(init.code, init.stderr).toBe(0);
    // the password from PGPASSFILE or PGPASSWORD instead of the file dsk.json names
    const cfg0 = JSON.parse(fs.readFileSync(path.join(home, 'dsk.json'), 'utf8'));
    fs.writeFileSync(path.join(home, 'dsk.json'), JSON.stringify({ ...cfg0, store: { url } }), { mode: 0o600 });
    const pgpass = path.join(dir, '.pgpass');
    fs.writeFileSync(pgpass, `127.0.0.1:${p1}:dsk:postgres:${PASSWORD}\n`, { mode: 0o600 });
    const viaFile = dsk(['status'], { env: { ...env, PGPASSFILE: pgpass, PGPASSWORD: '' } });
    expect(viaFile.code, viaFile.stderr).toBe(0);
    expect(dsk(['status'], { env: { ...env, PGPASSWORD: PASSWORD } }).code).toBe(0);
    const none = dsk(['status'], { env: { ...env, PGPASSFILE: path.join(dir, 'none'), PGPASSWORD: '' } });
    expect(none.code).toBe(7);
    expect(none.stderr).toContain(`cannot log in to the store at ${url}`);
    fs.writeFileSync(path.join(home, 'dsk.json'), JSON.stringify(cfg0), { mode: 0o600 });
    const kept = json(dsk(['keygen', '--name', 'kept', '--role', 'developer', '--json'], { env }));
    const revoked = json(dsk(['keygen', '--name', 'revoked', '--role', 'developer', '--json'], { env }));
    expect(dsk(['keys', 'revoke', revoked.id], { env }).code).toBe(0);

    // The standby: a base backup that follows the primary (-R writes standby.signal and primary_conninfo).
    pgTool('pg_basebackup', ['-h', '127.0.0.1', '-p', String(p1), '-U', 'postgres', '-D', path.join(base, 'standby'), '-R', '-X', 'stream', '-c', 'fast', '--no-sync']);
    startCluster(path.join(base, 'standby'), p2);
    const late = json(dsk(['keygen', '--name', 'late', '--role', 'developer', '--json'], { env }));
    const cfgPath = path.join(home, 'dsk.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    const standbyUrl = `postgres://postgres@127.0.0.1:${p2}/dsk`;
    const onStandby = () => fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, store: { ...cfg.store, url: standbyUrl } }, null, 2), { mode: 0o600 });
    onStandby();
    // streamed within moments; a write to a standby is refused, naming it
    let seen = false;
    for (let i = 0; i < 50 && !seen; i++) {
      const r = dsk(['keys', 'show', late.id, '--json'], { env });
      seen = r.code === 0;
      if (!seen) await new Promise((res) => setTimeout(res, 200));
    }
    expect(seen).toBe(true);
    const ro = dsk(['keygen', '--name', 'nope', '--role', 'developer'], { env });
    expect(ro.code).toBe(7);
    expect(ro.stderr).toContain(`the store at ${standbyUrl}`);

    // The primary's machine is lost; the standby is promoted and the home points at it.
    pgTool('pg_ctl', ['-D', path.join(base, 'primary'), '-m', 'immediate', 'stop']);
    pgTool('pg_ctl', ['-D', path.join(base, 'standby'), '-w', 'promote']);
    up = await startStubUpstream();
    const proc = dskAsync(['serve', '--listen', '127.0.0.1:0', '--json', '--upstream', up.url], { env });
    procs.push(proc);
    let err = '';
    proc.stderr!.on('data', (d) => (err += d));
    const gw = await new Promise<string>((resolve, reject) => {
      let out = '';
      proc.stdout!.on('data', (d) => {
        out += d;
        const m = /"url":\s*"([^"]+)"/.exec(out);
        if (m) resolve(m[1]);
      });
      proc.on('exit', (c) => reject(new Error(`dsk serve exited ${c}: ${err}`)));
      setTimeout(() => reject(new Error(`dsk serve did not start in 20 s: ${err}`)), 20_000);
    });
    const get = (key: string) => fetch(`${gw}/v1/models`, { headers: { Authorization: `Bearer ${key}` } }).then((r) => r.status);
    expect(await get(kept.api_key)).toBe(200);
    expect(await get(late.api_key)).toBe(200);
    expect(await get(revoked.api_key)).toBe(401);
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    expect(json(dsk(['audit', 'verify', '--json'], { env }))).toMatchObject({ ok: true, head_file: { state: 'match' } });
    // and the promoted node takes writes again
    expect(dsk(['keygen', '--name', 'after', '--role', 'developer'], { env }).code).toBe(0);
  }, 300_000);
});
