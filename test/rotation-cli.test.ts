/** dsk rotate / export / cron end to end: the real CLI in a temporary home, real short durations. */
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import Database from 'better-sqlite3';
import { parse } from 'yaml';
import { beforeAll, describe, expect, it } from 'vitest';
import { DSK, dsk, json, makeHome, passphraseFiles, snapshot, tmpDir } from './helpers.js';

function db(home: string) {
  const d = new Database(path.join(home, 'keys.db'), { readonly: true });
  d.prepare('ATTACH DATABASE ? AS audit').run(path.join(home, 'audit_log', 'audit.db'));
  return d;
}

function keyRow(home: string, id: string) {
  const d = db(home);
  try {
    return d.prepare('SELECT * FROM keys WHERE id = ?').get(id) as Record<string, any>;
  } finally {
    d.close();
  }
}

function auditRows(home: string, action: string) {
  const d = db(home);
  try {
    return d.prepare('SELECT * FROM audit.events WHERE action = ? ORDER BY seq').all(action) as { key_id: string; details: string }[];
  } finally {
    d.close();
  }
}

let H: ReturnType<typeof makeHome>;
beforeAll(() => {
  H = makeHome(tmpDir(), { shares: 3, threshold: 2 });
});

describe('dsk rotate (CLI)', () => {
  it('rotates a key whose rotate-every has passed, once (real 4 s schedule)', async () => {
    const { home, env } = makeHome(tmpDir(), { shares: 2, threshold: 2 });
    const k = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--rotate-every', '4s', '--json'], { env }));
    const dueAt = Date.parse(k.created_at) + 4000;
    const early = json(dsk(['rotate', '--due', '--json'], { env }));
    // The CLI reads the wall clock; on a machine slow enough that the run ended after the key fell
    // due, "not yet due" cannot be observed here (rotation-core.test.ts checks it with a fixed clock).
    if (Date.now() < dueAt) expect(early.actions).toEqual([]);
    else console.log(`rotation-cli: the not-yet-due run ended ${Date.now() - dueAt} ms after the key fell due; check skipped`);
    if (early.actions.length === 0) await new Promise((r) => setTimeout(r, Math.max(0, dueAt - Date.now() + 100)));
    const dry = json(dsk(['rotate', '--due', '--dry-run', '--json'], { env: { DSK_HOME: home } })); // no passphrase needed
    if (early.actions.length === 0) expect(dry.actions).toEqual([expect.objectContaining({ action: 'rotate', trigger: 'SCHEDULED', old_key_id: k.id })]);
    const r = early.actions.length ? early : json(dsk(['rotate', '--due', '--json', '--grace', '1h'], { env }));
    expect(r.actions).toHaveLength(1);
    expect(r.actions[0]).toMatchObject({ action: 'rotate', trigger: 'SCHEDULED', old_key_id: k.id });
    expect(JSON.stringify(r)).not.toMatch(/dsk_[0-9a-f]{12}_[0-9a-f]{64}/); // no key printed without --print-keys
    expect(keyRow(home, k.id)).toMatchObject({ status: 'grace', replaced_by: r.actions[0].new_key_id });
    // idempotent: a rerun never rotates the original again (its successor may be due by now)
    expect(json(dsk(['rotate', '--due', '--json'], { env })).actions.filter((a: any) => a.old_key_id === k.id)).toEqual([]);
    expect(keyRow(home, k.id).replaced_by).toBe(r.actions[0].new_key_id);
  });

  it('rotate ID prints the new key once, with the old key in grace', () => {
    const { home, env } = H;
    const k = json(dsk(['keygen', '--name', 'manual', '--role', 'automation', '--owner', 'ops', '--json'], { env }));
    const r = json(dsk(['rotate', k.id, '--grace', '30m', '--json'], { env }));
    expect(r).toMatchObject({ replaces: k.id, old_key_id: k.id, role: 'automation', owner: 'ops', status: 'active' });
    expect(r.api_key).toMatch(new RegExp(`^dsk_${r.id}_[0-9a-f]{64}_`));
    const old = keyRow(home, k.id);
    expect(old.status).toBe('grace');
    expect(old.grace_until - old.updated_at).toBe(30 * 60_000);
    const rot = auditRows(home, 'KEY_ROTATION').map((x) => JSON.parse(x.details)).find((d) => d.old_key_id === k.id);
    expect(rot).toMatchObject({ new_key_id: r.id, trigger: 'MANUAL' });
  });

  it('refuses bad input with the brief exit code and changes nothing', () => {
    const { home, env } = H;
    const k = json(dsk(['keygen', '--name', 'bad-input', '--role', 'developer', '--json'], { env }));
    const revoked = json(dsk(['keygen', '--name', 'gone', '--role', 'developer', '--json'], { env }));
    expect(dsk(['keys', 'revoke', revoked.id], { env }).code).toBe(0);
    const before = snapshot(home);
    const cases: [string[], number, RegExp][] = [
      [['rotate', 'abcdefabcdef'], 4, /no key with id abcdefabcdef/],
      [['rotate', revoked.id], 6, /cannot be rotated: it is revoked/],
      [['rotate', k.id, '--grace', '-1h'], 2, /invalid --grace '-1h'/],
      [['rotate', k.id, '--grace', '5x'], 2, /invalid --grace '5x'/],
      [['rotate', '--emergency'], 2, /--emergency: an emergency rotation needs a target/],
      [['rotate', '--emergency', '--role', 'nosuch'], 4, /unknown role 'nosuch'/],
      [['rotate', '--emergency', revoked.id], 6, /already revoked/],
      [['rotate'], 2, /give a key id/],
      [['rotate', k.id, '--dry-run'], 2, /--dry-run only applies to --due/],
      [['rotate', '--due', '--emergency', '--all'], 2, /cannot be combined/],
      [['rotate', '--emergency', '--all', '--master'], 2, /--new-passphrase-file/],
      [['rotate', k.id, '--out-dir', path.join(home, 'nope')], 2, /is not a directory/],
      [['export', 'k8s', revoked.id], 6, /is revoked/],
      [['export', 'k8s', k.id, '--name', 'Bad_Name'], 2, /invalid --name/],
      [['cron', 'print', '--every', '7m'], 2, /cron cannot run exactly every 7 minutes/],
      [['cron', 'print', '--every', '-1h'], 2, /invalid --every/],
    ];
    for (const [args, code, msg] of cases) {
      const r = dsk(args, { env });
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stderr).toMatch(msg);
      expect(r.stderr).toMatch(/^dsk: error: /);
    }
    expect(snapshot(home)).toEqual(before);
  });

  it('delivers new keys: --out-dir (0600 JSON) and --exec (JSON on stdin, id in env, never argv)', () => {
    const { home, env, dir } = H;
    const k = json(dsk(['keygen', '--name', 'deliver', '--role', 'developer', '--json'], { env }));
    const out = path.join(dir, 'out');
    fs.mkdirSync(out, { mode: 0o700 });
    const hook = path.join(dir, 'hook.sh');
    fs.writeFileSync(hook, 'cat > "$HOOK_DIR/$DSK_KEY_ID.stdin"; echo "$DSK_KEY_ID $DSK_OLD_KEY_ID ${DSK_PASSPHRASE_FILES:-none} $#" > "$HOOK_DIR/$DSK_KEY_ID.env"; echo hook-ran\n', { mode: 0o700 });
    const r = dsk(['rotate', k.id, '--out-dir', out, '--exec', `sh ${hook}`, '--json'], { env: { ...env, HOOK_DIR: out } });
    const rep = json(r);
    const newId = rep.actions[0].new_key_id;
    expect(rep.delivered).toEqual([{ key_id: newId, old_key_id: k.id, file: path.join(out, `${newId}.json`), exec_status: 0 }]);
    const file = path.join(out, `${newId}.json`);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const issued = JSON.parse(fs.readFileSync(file, 'utf8'));
    expect(issued).toMatchObject({ id: newId, replaces: k.id });
    expect(JSON.parse(fs.readFileSync(path.join(out, `${newId}.stdin`), 'utf8'))).toEqual(issued);
    // the hook got the ids, not the unseal secrets, and no arguments
    expect(fs.readFileSync(path.join(out, `${newId}.env`), 'utf8').trim()).toBe(`${newId} ${k.id} none 0`);
    expect(r.stdout).not.toContain('hook-ran'); // hook output goes to stderr, JSON stays parseable
    expect(r.stdout).not.toContain(issued.api_key);
    // a failing hook: the key is still rotated, exit 7 says delivery failed
    const f = dsk(['rotate', newId, '--exec', 'exit 3'], { env });
    expect(f.code).toBe(7);
    expect(f.stderr).toMatch(/delivery failed for 1 new key/);
    expect(keyRow(home, newId).status).toBe('grace');
  });

  it('exports a Kubernetes Secret and an env file that match the issued key, audited without secrets', () => {
    const { home, env } = H;
    const k = json(dsk(['keygen', '--name', 'k8s-app', '--role', 'developer', '--json'], { env }));
    const r = dsk(['export', 'k8s', k.id, '--namespace', 'llm'], { env });
    expect(r.code).toBe(0);
    const m = parse(r.stdout);
    expect(m).toMatchObject({ apiVersion: 'v1', kind: 'Secret', type: 'Opaque', metadata: { name: 'deepseek-api-secrets', namespace: 'llm', labels: { 'dsk.io/key-id': k.id } } });
    expect(m.metadata.labels['dsk.io/rotated-at']).toMatch(/^\d{8}T\d{6}Z$/);
    expect(Buffer.from(m.data.API_KEY, 'base64').toString()).toBe(k.api_key);
    expect(Buffer.from(m.data.API_SECRET, 'base64').toString()).toBe(k.api_secret);
    const e = dsk(['export', 'env', k.id], { env });
    expect(e.stdout).toBe(`DEEPSEEK_API_KEY=${k.api_key}\nDEEPSEEK_API_SECRET=${k.api_secret}\n`);
    const rows = auditRows(home, 'KEY_EXPORT').filter((x) => x.key_id === k.id);
    expect(rows.map((x) => JSON.parse(x.details).format)).toEqual(['k8s', 'env']);
    for (const x of rows) {
      expect(x.details).not.toContain(k.api_key);
      expect(x.details).not.toContain(k.api_secret);
    }
    // a key in grace can still be exported; its successor is the one to hand out next
    json(dsk(['rotate', k.id, '--json'], { env }));
    expect(dsk(['export', 'env', k.id], { env }).code).toBe(0);
    // no passphrase, no export
    expect(dsk(['export', 'env', k.id], { env: { DSK_HOME: home } }).code).toBe(3);
  });

  it('emergency by id revokes at once; --print-keys shows the successors', () => {
    const { home, env } = H;
    const a = json(dsk(['keygen', '--name', 'leaky', '--role', 'automation', '--owner', 'leak-team', '--json'], { env }));
    const r = json(dsk(['rotate', '--emergency', '--owner', 'leak-team', '--reason', 'leaked', '--print-keys', '--json'], { env }));
    expect(r.actions.map((x: any) => x.action)).toEqual(['revoke', 'rotate']);
    expect(r.keys).toHaveLength(1);
    expect(r.keys[0]).toMatchObject({ replaces: a.id });
    expect(keyRow(home, a.id)).toMatchObject({ status: 'revoked', revoke_reason: 'leaked', grace_until: null });
    expect(JSON.parse(auditRows(home, 'KEY_REVOKE').find((x) => x.key_id === a.id)!.details)).toMatchObject({ trigger: 'EMERGENCY' });
  });
});

describe('lock', () => {
  it('a held lock makes a second run exit 6 (changing nothing); --wait waits; a dead holder is taken over', async () => {
    const { home, env } = makeHome(tmpDir(), { shares: 2, threshold: 2 });
    json(dsk(['keygen', '--name', 'l', '--role', 'developer', '--rotate-every', '1s', '--json'], { env }));
    await new Promise((r) => setTimeout(r, 1100));
    const lock = path.join(home, 'dsk.lock');
    // a live holder: a sleeping child process
    const holder = spawn('sleep', ['30']);
    const start = fs.readFileSync(`/proc/${holder.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19];
    fs.writeFileSync(lock, JSON.stringify({ pid: holder.pid, start, host: '', acquired_at: new Date().toISOString(), purpose: 'test' }), { mode: 0o600 });
    try {
      const before = snapshot(home);
      const r = dsk(['rotate', '--due'], { env });
      expect(r.code).toBe(6);
      expect(r.stderr).toMatch(/another dsk run holds the lock on this home \(pid \d+/);
      expect(snapshot(home)).toEqual(before);
      // --wait: blocks until the holder goes away
      const waiting = spawn(process.execPath, [DSK, 'rotate', '--due', '--wait', '--json'], { env: { ...process.env, ...env, NO_COLOR: '1' } });
      let out = '';
      waiting.stdout.on('data', (d) => (out += d));
      await new Promise((r) => setTimeout(r, 800));
      expect(waiting.exitCode).toBeNull();
      holder.kill('SIGKILL');
      const code = await new Promise((res) => waiting.on('exit', res));
      expect(code).toBe(0);
      expect(JSON.parse(out).actions).toHaveLength(1);
      expect(fs.existsSync(lock)).toBe(false);
    } finally {
      holder.kill('SIGKILL');
    }
    // a lock left by a dead process (pid reuse guarded by start time) is stale
    fs.writeFileSync(lock, JSON.stringify({ pid: 999_999, start: '1', host: '', acquired_at: '', purpose: 'killed' }), { mode: 0o600 });
    expect(dsk(['rotate', '--due'], { env }).code).toBe(0);
    expect(fs.existsSync(lock)).toBe(false);
  });

  it('two concurrent runs never rotate a key twice', async () => {
    const { home, env } = makeHome(tmpDir(), { shares: 2, threshold: 2 });
    const d = new Database(path.join(home, 'keys.db'));
    // 40 keys already due, inserted directly (rotation never opens the old key's material)
    const ins = d.prepare(`INSERT INTO keys (id, name, role, status, key_hash, salt, secret_sealed, created_at, rotate_every_ms, updated_at) VALUES (?, ?, 'automation', 'active', ?, '00', x'00', ?, 1000, ?)`);
    const t = Date.now() - 10_000;
    for (let i = 0; i < 40; i++) ins.run(i.toString(16).padStart(12, '0'), `k${i}`, `h${i}`, t, t);
    d.close();
    const run = () =>
      new Promise<number>((res) => {
        const p = spawn(process.execPath, [DSK, 'rotate', '--due', '--json'], { env: { ...process.env, ...env, NO_COLOR: '1' }, stdio: 'ignore' });
        p.on('exit', (c) => res(c ?? -1));
      });
    const codes = await Promise.all([run(), run(), run()]);
    for (const c of codes) expect([0, 6]).toContain(c);
    expect(codes).toContain(0);
    const x = db(home);
    const rows = x.prepare('SELECT * FROM keys').all() as any[];
    const rot = x.prepare("SELECT details FROM audit.events WHERE action = 'KEY_ROTATION'").all() as { details: string }[];
    x.close();
    expect(rows.filter((r) => r.status === 'active')).toHaveLength(40);
    expect(rows).toHaveLength(80);
    expect(rot).toHaveLength(40);
    expect(new Set(rot.map((r) => JSON.parse(r.details).old_key_id)).size).toBe(40);
  });
});

describe('emergency master replacement', () => {
  it('replaces the master key: new fragments, old passphrases refused, every key reissued and exportable', () => {
    const { home, env, dir } = makeHome(tmpDir(), { shares: 3, threshold: 2 });
    const a = json(dsk(['keygen', '--name', 'a', '--role', 'developer', '--json'], { env }));
    const b = json(dsk(['keygen', '--name', 'b', '--role', 'automation', '--json'], { env }));
    json(dsk(['rotate', b.id, '--json'], { env })); // b in grace
    const oldFrag = fs.readFileSync(path.join(home, 'key_fragments', 'frag1.enc'), 'utf8');
    const oldSet = path.join(dir, 'old-fragments');
    fs.cpSync(path.join(home, 'key_fragments'), oldSet, { recursive: true });
    const fresh = passphraseFiles(dir, 3, 'new');
    const r = dsk(['rotate', '--emergency', '--all', '--master', ...fresh.flatMap((f) => ['--new-passphrase-file', f]), '--reason', 'master suspected', '--json'], { env });
    const rep = json(r);
    expect(rep.master).toMatchObject({ threshold: 2, shares: 3 });
    expect(rep.master.new_key_check_value).not.toBe(rep.master.old_key_check_value);
    expect(fs.readFileSync(path.join(home, 'key_fragments', 'frag1.enc'), 'utf8')).not.toBe(oldFrag);
    expect(fs.readdirSync(home).filter((f) => f.startsWith('.master'))).toEqual([]);
    // the old custodians can no longer unseal; the new ones can
    expect(dsk(['export', 'env', a.id], { env }).code).not.toBe(0);
    const newEnv = { DSK_HOME: home, DSK_PASSPHRASE_FILES: fresh.slice(1).join(':') };
    const x = db(home);
    const active = x.prepare("SELECT * FROM keys WHERE status = 'active'").all() as any[];
    const statuses = (x.prepare('SELECT status FROM keys').all() as any[]).map((r) => r.status);
    x.close();
    expect(active).toHaveLength(2);
    expect(statuses.filter((s) => s === 'revoked')).toHaveLength(3);
    for (const k of active) {
      const e = dsk(['export', 'env', k.id], { env: newEnv });
      expect(e.code).toBe(0);
      expect(e.stdout).toMatch(new RegExp(`^DEEPSEEK_API_KEY=dsk_${k.id}_`));
    }
    expect(auditRows(home, 'MASTER_ROTATION')).toHaveLength(1);
    // killed after the commit but before the swap: old set live, new set staged; the store records
    // the new key check value, so the next unseal finishes the swap and destroys the old set
    fs.mkdirSync(path.join(home, '.master-next'), { mode: 0o700 });
    fs.renameSync(path.join(home, 'key_fragments'), path.join(home, '.master-next', 'key_fragments'));
    fs.cpSync(oldSet, path.join(home, 'key_fragments'), { recursive: true });
    expect(dsk(['export', 'env', active[0].id], { env: newEnv }).code).toBe(0);
    expect(fs.existsSync(path.join(home, '.master-next'))).toBe(false);
    expect(JSON.parse(fs.readFileSync(path.join(home, 'key_fragments', 'metadata.json'), 'utf8')).key_check_value).toBe(rep.master.new_key_check_value);
    expect(fs.readdirSync(home).filter((f) => f.startsWith('.master'))).toEqual([]);
    // an abandoned staged set (as if killed before the commit) is discarded at the next unseal
    fs.mkdirSync(path.join(home, '.master-next', 'key_fragments'), { recursive: true, mode: 0o700 });
    fs.writeFileSync(path.join(home, '.master-next', 'key_fragments', 'metadata.json'), '{}', { mode: 0o600 });
    expect(dsk(['export', 'env', active[0].id], { env: newEnv }).code).toBe(0);
    expect(fs.existsSync(path.join(home, '.master-next'))).toBe(false);
  });
});

describe('dsk cron', () => {
  it('prints a crontab line and systemd units naming an env file, with no secret', () => {
    const { home, env } = H;
    const r = json(dsk(['cron', 'print', '--every', '6h', '--environment-file', '/etc/dsk/rotate.env', '--json'], { env }));
    expect(r.crontab).toMatch(/^17 \*\/6 \* \* \* set -a && \. \/etc\/dsk\/rotate\.env && set \+a && .* rotate --due --json >> \/etc\/dsk\/dsk-rotate\.log 2>&1\n$/);
    expect(r.crontab).toContain(`--home ${home}`);
    expect(r.service).toContain('EnvironmentFile=/etc/dsk/rotate.env');
    expect(r.service).toMatch(/ExecStart=.*rotate --due --json/);
    expect(r.timer).toContain('OnUnitActiveSec=6h');
    const all = JSON.stringify(r);
    for (const f of env.DSK_PASSPHRASE_FILES.split(':')) expect(all).not.toContain(fs.readFileSync(f, 'utf8').trim());
    expect(json(dsk(['cron', 'print', '--json'], { env })).crontab).toMatch(/^17 \* \* \* \* /);
    expect(json(dsk(['cron', 'print', '--every', '15m', '--json'], { env })).crontab).toMatch(/^\*\/15 \* \* \* \* /);
  });

  it('install writes the units and a 0600 env-file template, and never overwrites the env file', () => {
    const { env, dir } = H;
    const target = path.join(dir, 'units');
    const r = json(dsk(['cron', 'install', '--dir', target, '--json'], { env }));
    expect(r.env_file_created).toBe(true);
    expect(fs.readdirSync(target).sort()).toEqual(['dsk-rotate.crontab', 'dsk-rotate.env', 'dsk-rotate.service', 'dsk-rotate.timer']);
    expect(fs.statSync(path.join(target, 'dsk-rotate.env')).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(path.join(target, 'dsk-rotate.env'), 'utf8')).toMatch(/^DSK_PASSPHRASE_FILES=$/m);
    expect(fs.readFileSync(path.join(target, 'dsk-rotate.service'), 'utf8')).toContain(`EnvironmentFile=${path.join(target, 'dsk-rotate.env')}`);
    fs.appendFileSync(path.join(target, 'dsk-rotate.env'), 'DSK_PASSPHRASE_FILES=/x\n');
    const envBefore = fs.readFileSync(path.join(target, 'dsk-rotate.env'), 'utf8');
    expect(dsk(['cron', 'install', '--dir', target], { env }).code).toBe(6); // units exist
    expect(json(dsk(['cron', 'install', '--dir', target, '--force', '--json'], { env })).env_file_created).toBe(false);
    expect(fs.readFileSync(path.join(target, 'dsk-rotate.env'), 'utf8')).toBe(envBefore);
  });

  it('every new command has --help with examples', () => {
    for (const c of [['rotate'], ['export', 'k8s'], ['export', 'env'], ['cron', 'print'], ['cron', 'install']]) {
      const r = dsk([...c, '--help']);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/Examples?:/);
    }
  });
});
