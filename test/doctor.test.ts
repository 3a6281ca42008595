/**
 * `dsk doctor` against each damage it names, made for real in a copy of a test home: loose file
 * modes, HEAD ahead of / behind / missing from the chain, a stale lock, fragments missing or
 * tampered, a schema from a newer dsk, keys expiring, rotations overdue, an upstream that is down,
 * a PKCS#11 token that is gone. Each time: the exit code, the failing check, its fix, and that the
 * doctor changed nothing in the home.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { DSK, dsk, json, makeHome, snapshot, type RunResult } from './helpers.js';
import { copyHome } from './cli-support.js';
import { startStubUpstream } from './stub-upstream.js';
import { SCHEMA_VERSION } from '../src/store/migrations.js';
import { MODULE, pkcs11Home, requireSoftHsm, softHsm } from './hsm-helpers.js';
import { freshDatabase, requirePostgres, sql as pgSql } from './pg-helpers.js';

const HSM = requireSoftHsm();
const PG = requirePostgres('dsk doctor on a PostgreSQL home');

interface Report {
  healthy: boolean;
  failure: 'damage' | 'unavailable' | null;
  exit_code: number;
  checks: { name: string; status: string; failure?: string; detail: string; fix?: string }[];
}

let base: ReturnType<typeof makeHome>;
beforeAll(() => {
  base = makeHome();
  const r = dsk(['keygen', '--name', 'chat', '--role', 'developer', '--json'], { env: base.env });
  expect(r.code, r.stderr).toBe(0);
});

/** Runs doctor --json on `home`, proving it changed nothing there. */
function doctor(home: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): { r: RunResult; rep: Report } {
  const before = snapshot(home);
  const r = dsk(['doctor', '--json', '--home', home, ...extra], { env });
  expect(snapshot(home)).toEqual(before);
  return { r, rep: JSON.parse(r.stdout) as Report };
}

function check(rep: Report, name: string) {
  const c = rep.checks.find((x) => x.name === name);
  expect(c, `check ${name} in ${JSON.stringify(rep.checks)}`).toBeDefined();
  return c!;
}

function sql(file: string, statement: string): void {
  const db = new Database(file);
  try {
    db.exec(statement);
  } finally {
    db.close();
  }
}

function runAsync(args: string[], env: NodeJS.ProcessEnv = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [DSK, ...args], { env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

function setUpstream(home: string, upstream: string): void {
  const p = path.join(home, 'dsk.json');
  const c = JSON.parse(fs.readFileSync(p, 'utf8'));
  c.gateway = { ...(c.gateway ?? {}), upstream };
  fs.writeFileSync(p, JSON.stringify(c, null, 2) + '\n', { mode: 0o600 });
}

describe('dsk doctor', () => {
  it('passes a healthy home with every check ok, and prints a checklist for people', () => {
    const { r, rep } = doctor(base.home);
    expect(r.code, r.stderr).toBe(0);
    expect(rep).toMatchObject({ healthy: true, failure: null, exit_code: 0 });
    for (const name of ['file_modes', 'config', 'schema', 'lock', 'fragments', 'audit_head', 'expiring_keys', 'rotations']) expect(check(rep, name).status).toBe('ok');
    expect(check(rep, 'upstream').status).toBe('skip');
    const text = dsk(['doctor', '--home', base.home]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/✓ fragments\s+all 5 fragments reachable and intact \(3 needed/);
    expect(text.stdout.trim().split('\n').at(-1)).toBe('healthy');
  });

  it('a home that does not exist: exit 4', () => {
    const r = dsk(['doctor', '--home', path.join(base.dir, 'nowhere')]);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('dsk: error: no dsk home at');
  });

  it('a file readable by others: exit 5 with the chmod that fixes it; the store is not opened', () => {
    const home = copyHome(base.home);
    fs.chmodSync(path.join(home, 'keys.db'), 0o644);
    const { r, rep } = doctor(home);
    expect(r.code).toBe(5);
    const c = check(rep, 'file_modes');
    expect(c).toMatchObject({ status: 'fail', failure: 'damage' });
    expect(c.detail).toContain('keys.db (644)');
    expect(c.fix).toBe(`chmod -R go-rwx ${home}`);
    expect(check(rep, 'schema').status).toBe('skip');
    spawnSync('chmod', ['-R', 'go-rwx', home]);
    expect(doctor(home).r.code).toBe(0);
  });

  it('damaged dsk.json: exit 5 naming the problem', () => {
    const home = copyHome(base.home);
    fs.writeFileSync(path.join(home, 'dsk.json'), '{"format":"dsk-config/1",', { mode: 0o600 });
    const { r, rep } = doctor(home);
    expect(r.code).toBe(5);
    expect(check(rep, 'config')).toMatchObject({ status: 'fail', failure: 'damage' });
    expect(check(rep, 'config').detail).toContain('not valid JSON');
  });

  it('HEAD ahead of the chain (rows cut off the end): exit 5', () => {
    const home = copyHome(base.home);
    const head = JSON.parse(fs.readFileSync(path.join(home, 'audit_log', 'HEAD'), 'utf8'));
    sql(path.join(home, 'audit_log', 'audit.db'), `DELETE FROM events WHERE seq = ${head.seq}`);
    const { r, rep } = doctor(home);
    expect(r.code).toBe(5);
    const c = check(rep, 'audit_head');
    expect(c).toMatchObject({ status: 'fail', failure: 'damage' });
    expect(c.detail).toContain(`records row #${head.seq} but the chain ends at #${head.seq - 1}`);
    expect(c.fix).toContain('dsk audit verify');
  });

  it('HEAD behind the chain (a writer stopped before moving it): a warning, exit 0', () => {
    const home = copyHome(base.home);
    const headFile = path.join(home, 'audit_log', 'HEAD');
    const old = fs.readFileSync(headFile);
    const r1 = dsk(['keygen', '--name', 'second', '--role', 'automation', '--json'], { env: { ...base.env, DSK_HOME: home } });
    expect(r1.code, r1.stderr).toBe(0);
    fs.writeFileSync(headFile, old, { mode: 0o600 });
    const { r, rep } = doctor(home);
    expect(r.code).toBe(0);
    expect(check(rep, 'audit_head')).toMatchObject({ status: 'warn' });
    expect(check(rep, 'audit_head').detail).toMatch(/1 row\(s\) behind the chain/);
  });

  it('HEAD missing or unreadable: exit 5', () => {
    const home = copyHome(base.home);
    const headFile = path.join(home, 'audit_log', 'HEAD');
    fs.rmSync(headFile);
    expect(doctor(home).r.code).toBe(5);
    expect(check(doctor(home).rep, 'audit_head').detail).toContain('HEAD is missing');
    fs.writeFileSync(headFile, 'garbage', { mode: 0o600 });
    const { r, rep } = doctor(home);
    expect(r.code).toBe(5);
    expect(check(rep, 'audit_head').detail).toContain('unreadable');
  });

  it('a stale lock (its process is dead) is reported with its fix; a live holder is fine', () => {
    const home = copyHome(base.home);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const lock = path.join(home, 'dsk.lock');
    fs.writeFileSync(lock, JSON.stringify({ pid: Number(dead.stdout), start: '1', host: '', acquired_at: '2026-01-01T00:00:00.000Z', purpose: 'rotate' }), { mode: 0o600 });
    const { r, rep } = doctor(home);
    expect(r.code).toBe(0);
    const c = check(rep, 'lock');
    expect(c).toMatchObject({ status: 'warn' });
    expect(c.detail).toContain(`stale lock left by a run that died (pid ${dead.stdout}, rotate`);
    expect(c.fix).toContain(`rm ${lock}`);
    const start = fs.readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19];
    fs.writeFileSync(lock, JSON.stringify({ pid: process.pid, start, host: '', acquired_at: '2026-01-01T00:00:00.000Z', purpose: 'rotate' }), { mode: 0o600 });
    expect(check(doctor(home).rep, 'lock')).toMatchObject({ status: 'ok' });
  });

  it('fragments: one missing is a warning; below the threshold exit 7; tampered below the threshold exit 5', () => {
    const home = copyHome(base.home);
    const frag = (i: number) => path.join(home, 'key_fragments', `frag${i}.enc`);
    fs.rmSync(frag(1));
    let { r, rep } = doctor(home);
    expect(r.code).toBe(0);
    expect(check(rep, 'fragments')).toMatchObject({ status: 'warn' });
    expect(check(rep, 'fragments').detail).toContain('4 of 5 fragments reachable and intact, 3 needed');
    fs.rmSync(frag(2));
    fs.rmSync(frag(3));
    ({ r, rep } = doctor(home));
    expect(r.code).toBe(7);
    expect(check(rep, 'fragments')).toMatchObject({ status: 'fail', failure: 'unavailable' });
    expect(check(rep, 'fragments').detail).toContain('only 2 of the 3 fragments needed');
    const f4 = JSON.parse(fs.readFileSync(frag(4), 'utf8'));
    f4.sealed = Buffer.from('forged').toString('base64');
    fs.writeFileSync(frag(4), JSON.stringify(f4), { mode: 0o600 });
    ({ r, rep } = doctor(home));
    expect(r.code).toBe(5);
    expect(check(rep, 'fragments')).toMatchObject({ status: 'fail', failure: 'damage' });
    expect(check(rep, 'fragments').detail).toContain('does not match its checksum');
  });

  it('a schema from a newer dsk: exit 7; an older schema: a warning, and the doctor does not upgrade it', () => {
    const home = copyHome(base.home);
    sql(path.join(home, 'keys.db'), 'PRAGMA user_version = 99');
    let { r, rep } = doctor(home);
    expect(r.code).toBe(7);
    expect(check(rep, 'schema')).toMatchObject({ status: 'fail', failure: 'unavailable' });
    expect(check(rep, 'schema').fix).toContain('upgrade dsk');
    sql(path.join(home, 'keys.db'), 'PRAGMA user_version = 3');
    ({ r, rep } = doctor(home));
    expect(r.code).toBe(0);
    expect(check(rep, 'schema')).toMatchObject({ status: 'warn' });
    expect(check(rep, 'schema').detail).toContain('keys.db at version 3');
    expect(check(rep, 'audit_head').status).toBe('skip');
  });

  it('a database that is not SQLite, or emptied: exit 5, the store checks skipped', () => {
    const home = copyHome(base.home);
    fs.writeFileSync(path.join(home, 'audit_log', 'audit.db'), 'not a database at all, just text'.repeat(200), { mode: 0o600 });
    let { r, rep } = doctor(home);
    expect(r.code).toBe(5);
    expect(check(rep, 'schema')).toMatchObject({ status: 'fail', failure: 'damage' });
    expect(check(rep, 'schema').detail).toContain('audit.db is damaged');
    expect(check(rep, 'audit_head').status).toBe('skip');
    fs.writeFileSync(path.join(home, 'keys.db'), '', { mode: 0o600 });
    ({ r, rep } = doctor(home));
    expect(r.code).toBe(5);
    expect(check(rep, 'schema').detail).toContain('keys.db is damaged: it is empty');
  });

  it('keys expiring within 7 days are a warning; a rotation overdue (the job not running) is exit 7', async () => {
    const home = copyHome(base.home);
    const env = { ...base.env, DSK_HOME: home };
    const exp = json(dsk(['keygen', '--name', 'short', '--role', 'developer', '--expires', '3d', '--json'], { env }));
    let { r, rep } = doctor(home);
    expect(r.code).toBe(0);
    expect(check(rep, 'expiring_keys')).toMatchObject({ status: 'warn' });
    expect(check(rep, 'expiring_keys').detail).toContain(exp.id);
    expect(dsk(['doctor', '--home', home, '--expiring-within', '1d']).stdout).toMatch(/✓ expiring_keys/);
    const due = json(dsk(['keygen', '--name', 'fast', '--role', 'developer', '--rotate-every', '1s', '--json'], { env }));
    await new Promise((res) => setTimeout(res, 2_200));
    ({ r, rep } = doctor(home));
    expect(r.code).toBe(0);
    expect(check(rep, 'rotations').detail).toContain('1 key(s) due for rotation');
    ({ r, rep } = doctor(home, ['--overdue-after', '1s']));
    expect(r.code).toBe(7);
    const c = check(rep, 'rotations');
    expect(c).toMatchObject({ status: 'fail', failure: 'unavailable' });
    expect(c.detail).toContain(due.id);
    expect(c.fix).toContain('dsk rotate --due');
  });

  it('the configured upstream: reachable is ok, down is exit 7', async () => {
    const home = copyHome(base.home);
    const up = await startStubUpstream();
    try {
      setUpstream(home, up.url);
      const ok = await runAsync(['doctor', '--json', '--home', home]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(check(JSON.parse(ok.stdout), 'upstream')).toMatchObject({ status: 'ok' });
    } finally {
      await up.close();
    }
    setUpstream(home, up.url);
    const { r, rep } = doctor(home);
    expect(r.code).toBe(7);
    expect(check(rep, 'upstream')).toMatchObject({ status: 'fail', failure: 'unavailable' });
    expect(check(rep, 'upstream').detail).toContain('ECONNREFUSED');
  });

  it.runIf(PG)('a PostgreSQL home: the schema version from the store (no migration), the store checks run; unreachable is exit 7', async () => {
    const db = await freshDatabase();
    const m = makeHome(undefined, { shares: 2, threshold: 2, extraArgs: ['--store', db.url, '--kdf', 'scrypt', '--kdf-cost', '15'] });
    expect(dsk(['keygen', '--name', 'chat', '--role', 'developer', '--json'], { env: m.env }).code).toBe(0);
    let { r, rep } = doctor(m.home);
    expect(r.code, JSON.stringify(rep.checks)).toBe(0);
    expect(check(rep, 'schema')).toMatchObject({ status: 'ok', detail: expect.stringMatching(new RegExp(`^the store at postgres://.* at schema version ${SCHEMA_VERSION}$`)) });
    for (const name of ['audit_head', 'expiring_keys', 'rotations']) expect(check(rep, name).status).toBe('ok');
    // an older store: a warning, and the doctor does not upgrade it
    await pgSql(db.name, 'UPDATE dsk_meta SET schema_version = 4');
    ({ r, rep } = doctor(m.home));
    expect(r.code).toBe(0);
    expect(check(rep, 'schema')).toMatchObject({ status: 'warn', detail: expect.stringContaining(`at version 4; this dsk writes ${SCHEMA_VERSION}`) });
    expect(check(rep, 'audit_head').status).toBe('skip');
    expect((await pgSql(db.name, 'SELECT schema_version FROM dsk_meta'))[0].schema_version).toBe(4);
    // the store unreachable: exit 7, the store checks skipped
    const p = path.join(m.home, 'dsk.json');
    const c = JSON.parse(fs.readFileSync(p, 'utf8'));
    fs.writeFileSync(p, JSON.stringify({ ...c, store: { ...c.store, url: c.store.url.replace(/:\d+\//, ':1/') } }, null, 2) + '\n', { mode: 0o600 });
    ({ r, rep } = doctor(m.home));
    expect(r.code).toBe(7);
    expect(check(rep, 'schema')).toMatchObject({ status: 'fail', failure: 'unavailable', detail: expect.stringContaining('cannot reach the store') });
    expect(check(rep, 'audit_head').status).toBe('skip');
  });

  describe.skipIf(!HSM)('PKCS#11', () => {
    it('module loads and token present is ok; the token gone is exit 7', () => {
      const hsm = softHsm();
      const s = pkcs11Home(hsm, 'doctor-tok');
      let { r, rep } = doctor(s.home, [], s.env);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(check(rep, 'pkcs11')).toMatchObject({ status: 'ok' });
      expect(check(rep, 'pkcs11').detail).toContain(`module ${MODULE} loads; token 'doctor-tok' present`);
      fs.rmSync(path.join(hsm.dir, 'tokens'), { recursive: true });
      fs.mkdirSync(path.join(hsm.dir, 'tokens'), { mode: 0o700 });
      ({ r, rep } = doctor(s.home, [], s.env));
      expect(r.code).toBe(7);
      expect(check(rep, 'pkcs11')).toMatchObject({ status: 'fail', failure: 'unavailable' });
      expect(check(rep, 'pkcs11').fix).toContain("connect the token 'doctor-tok'");
    });
  });
});
