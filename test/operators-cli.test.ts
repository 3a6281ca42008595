/**
 * Operators end to end through the real CLI: enrolment with codes computed here from the printed
 * otpauth URI, every command × role cell on this branch (allowed, or exit 3 naming the missing
 * permission, audited, nothing changed), and replayed, stale and wrong codes.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { dsk, json, makeHome, snapshot, tmpDir, type RunResult } from './helpers.js';
import { secretFromUri, totpCode, totpStep } from '../src/domain/totp.js';

let env: Record<string, string>;
let home: string;
const secrets: Record<string, Buffer> = {};
const lastStep: Record<string, number> = {};
const ADMINS = ['a1', 'a2', 'a3', 'a4', 'a5', 'a6'];
const NON_ADMINS = ['bob', 'audrey', 'cron'];

const run = (actor: string, args: string[], extra: Record<string, string> = {}) => dsk(args, { env: { ...env, DSK_ACTOR: actor, ...extra } });

/**
 * A fresh code for step s (never one already used). Steps now and now+1 are safe whatever the
 * timing; now-1 only early in a step, so a boundary crossed while dsk starts cannot stale it.
 */
function codeFor(name: string): string | null {
  const now = Date.now();
  const cur = totpStep(now);
  const early = now / 1000 - cur * 30 < 18;
  const next = Math.max((lastStep[name] ?? -Infinity) + 1, early ? cur - 1 : cur);
  if (next > cur + 1) return null;
  lastStep[name] = next;
  return totpCode(secrets[name], next * 30_000);
}

/** An admin with a fresh code available, as env for dsk (waits for the next step if all are used). */
function admin(): { actor: string; env: Record<string, string> } {
  for (let tries = 0; tries < 40; tries++) {
    for (const a of ADMINS) {
      const c = codeFor(a);
      if (c) return { actor: a, env: { DSK_OTP: c } };
    }
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000);
  }
  throw new Error('test ran out of admin codes');
}

function audit(since: number) {
  const db = new Database(path.join(home, 'audit_log', 'audit.db'), { readonly: true });
  try {
    return db.prepare('SELECT seq, action, actor, details FROM events WHERE seq > ? ORDER BY seq').all(since) as { seq: number; action: string; actor: string; details: string }[];
  } finally {
    db.close();
  }
}
function auditHead(): number {
  const rows = audit(0);
  return rows.length ? rows[rows.length - 1].seq : 0;
}

/** Everything but the audit log (and its HEAD file), which records the refusal. */
function state() {
  const s = snapshot(home);
  delete s[path.join('audit_log', 'audit.db')];
  delete s[path.join('audit_log', 'HEAD')];
  return s;
}

function expectRefused(r: RunResult, perm: string, actor: string, since: number) {
  expect(r.code, r.stderr).toBe(3);
  expect(r.stderr).toContain(`lacks the ${perm} permission`);
  // under --json the error is one JSON object on stderr, else two lines for a person
  if (r.stderr.startsWith('{')) expect(Object.keys(JSON.parse(r.stderr).error)).toEqual(['code', 'message', 'hint']);
  else expect(r.stderr).toMatch(/^dsk: error: .*\ndsk: hint: /);
  const denied = audit(since).filter((x) => x.action === 'OPERATOR_DENIED').map((x) => JSON.parse(x.details));
  expect(denied).toContainEqual(expect.objectContaining({ operator: actor, permission: perm, reason: 'missing_permission' }));
}

beforeAll(() => {
  const m = makeHome(tmpDir(), { shares: 2, threshold: 2, extraArgs: ['--kdf', 'scrypt', '--kdf-cost', '15'] });
  env = m.env;
  home = m.home;
}, 60_000);

describe('operators through the CLI', () => {
  it('starts open: any actor runs every command and status says so', () => {
    const k = json(run('whoever', ['keygen', '--name', 'open-mode', '--role', 'developer', '--json']));
    expect(run('someone-else', ['keys', 'revoke', k.id]).code).toBe(0);
    const st = json(run('x', ['status', '--json']));
    expect(st.operators).toEqual({ mode: 'open', operators: 0, enrolled_admins: 0 });
    expect(run('x', ['status']).stdout).toMatch(/operators\s+checks off \(open mode/);
  });

  it('enrols operators: QR and URI once, confirmation with a code from the app; the first admin turns checks on', () => {
    const text = run('root', ['operator', 'add', 'a1', '--role', 'admin']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain('▄'); // the terminal QR code
    const uri = /otpauth:\/\/totp\/\S+/.exec(text.stdout)![0];
    expect(uri).toMatch(/algorithm=SHA1&digits=6&period=30/);
    expect(text.stderr).not.toContain('otpauth');
    secrets.a1 = secretFromUri(uri);
    expect(text.stdout).toContain('dsk --actor a1 operator confirm a1 --code CODE');
    for (const [n, role] of [...ADMINS.slice(1).map((a) => [a, 'admin']), ['bob', 'developer'], ['audrey', 'auditor'], ['cron', 'automation']]) {
      const r = json(run('root', ['operator', 'add', n, '--role', role, '--json']));
      expect(r).toMatchObject({ name: n, role, confirmed: false });
      if (role === 'auditor' || role === 'automation') expect(r.otpauth_uri).toBeNull();
      else secrets[n] = secretFromUri(r.otpauth_uri);
    }
    expect(JSON.stringify(audit(0))).not.toContain('otpauth');
    // A wrong first code leaves the enrolment pending.
    const bad = run('a1', ['operator', 'confirm', 'a1', '--code', String((Number(totpCode(secrets.a1, Date.now())) + 3) % 1e6).padStart(6, '0')]);
    expect(bad.code).toBe(3);
    const first = json(run('a1', ['operator', 'confirm', 'a1', '--code', codeFor('a1')!, '--json']));
    expect(first).toMatchObject({ name: 'a1', second_factor: 'enrolled', operator_checks_started: true });
    for (const n of [...ADMINS.slice(1), 'bob']) {
      // Confirming oneself may take the code from DSK_OTP.
      const r = run(n, ['operator', 'confirm', n, '--json'], { DSK_OTP: codeFor(n)! });
      expect(r.code, r.stderr).toBe(0);
    }
    const list = json(run('audrey', ['operator', 'list', '--json']));
    expect(list.checks).toBe('enforced');
    expect(Object.fromEntries(list.operators.map((o: any) => [o.name, o.second_factor]))).toMatchObject({ a1: 'enrolled', bob: 'enrolled', audrey: 'none', cron: 'none' });
    expect(JSON.stringify(list)).not.toMatch(/otpauth|totp_sealed/);
  });

  it('refuses an actor who is not an operator, audited', () => {
    const s = auditHead();
    const r = run('mallory', ['keys', 'list']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("'mallory' is not a registered operator");
    expect(audit(s).map((x) => [x.action, JSON.parse(x.details).operator])).toEqual([['OPERATOR_DENIED', 'mallory']]);
  });

  it('open commands (status, keys list/show, policy show, operator list) run for every role', () => {
    const a = admin();
    const k = json(run(a.actor, ['keygen', '--name', 'shown', '--role', 'developer', '--json']));
    // Each command once, the role rotating (the full role × access matrix is in operators-core).
    const cmds = [['status'], ['keys', 'list'], ['keys', 'show', k.id], ['policy', 'show'], ['operator', 'list']];
    cmds.forEach((args, i) => {
      const actor = ['a1', ...NON_ADMINS][i % 4];
      const r = run(actor, [...args, '--json']);
      expect(r.code, `${actor} ${args.join(' ')}: ${r.stderr}`).toBe(0);
    });
  });

  // command × role: who may run it, and the permission named when refused.
  const CELLS: { name: string; args: () => string[]; perm: string; sensitive: boolean }[] = [
    { name: 'keygen', args: () => ['keygen', '--name', `k${Math.random().toString(36).slice(2, 8)}`, '--role', 'developer', '--json'], perm: 'key.manage', sensitive: false },
    { name: 'keys revoke', args: () => ['keys', 'revoke', freshKey()], perm: 'key.manage', sensitive: true },
    { name: 'policy set', args: () => ['policy', 'set', 'developer', 'audit.view', 'on'], perm: 'admin', sensitive: true },
    { name: 'policy add-role', args: () => ['policy', 'add-role', `r${Math.random().toString(36).slice(2, 8)}`, '--from', 'auditor'], perm: 'admin', sensitive: true },
    { name: 'policy remove-role', args: () => ['policy', 'remove-role', customRole()], perm: 'admin', sensitive: true },
    { name: 'operator add', args: () => ['operator', 'add', `o${Math.random().toString(36).slice(2, 8)}`, '--role', 'auditor'], perm: 'admin', sensitive: true },
    { name: 'operator reset-otp', args: () => ['operator', 'reset-otp', 'bob2'], perm: 'admin', sensitive: true },
    { name: 'operator remove', args: () => ['operator', 'remove', spareOperator()], perm: 'admin', sensitive: true },
  ];
  let keyN = 0;
  function freshKey(): string {
    const a = ADMINS[keyN++ % ADMINS.length];
    return json(run(a, ['keygen', '--name', `victim${keyN}`, '--role', 'developer', '--json'])).id;
  }
  const roles: string[] = [];
  function customRole(): string {
    roles.push(`c${roles.length}`);
    const a = admin();
    expect(run(a.actor, ['policy', 'add-role', roles[roles.length - 1]], a.env).code).toBe(0);
    return roles[roles.length - 1];
  }
  let spare = 0;
  function spareOperator(): string {
    const n = `spare${spare++}`;
    const a = admin();
    expect(run(a.actor, ['operator', 'add', n, '--role', 'auditor'], a.env).code).toBe(0);
    return n;
  }

  it('setup: an operator for reset-otp', () => {
    const a = admin();
    expect(run(a.actor, ['operator', 'add', 'bob2', '--role', 'developer'], a.env).code).toBe(0);
  });

  CELLS.forEach((cell, i) => {
    // One refused role per command, rotating, so each of developer, auditor, automation is refused
    // several commands; the full role × access matrix runs in operators-core.
    const refused = NON_ADMINS[i % 3];
    it(`${cell.name}: admin allowed${cell.sensitive ? ' with a code' : ''}; ${refused} refused naming ${cell.perm}`, () => {
      const args = cell.args();
      const before = state();
      const s = auditHead();
      expectRefused(run(refused, args, { DSK_OTP: '000000' }), cell.perm, refused, s);
      expect(state()).toEqual(before);
      if (cell.sensitive && i < 3) {
        // Without a code and without a terminal: refused at once, never a hang.
        const s0 = auditHead();
        const r = run('a1', args);
        expect(r.code).toBe(3);
        expect(r.stderr).toContain('needs a one-time code');
        expect(audit(s0).map((x) => [x.action, JSON.parse(x.details)])).toEqual([
          ['OPERATOR_DENIED', expect.objectContaining({ operator: 'a1', permission: cell.perm, reason: 'no_code' })],
        ]);
      }
      const a = admin();
      const ok = run(a.actor, args, a.env);
      expect(ok.code, ok.stderr).toBe(0);
    });
  });

  it('replayed, stale and wrong codes are refused with exit 3, counted and audited', () => {
    // A no-op policy change still needs the code: a cheap sensitive command.
    const noop = ['policy', 'set', 'auditor', 'model.invoke', 'off'];
    const a = admin();
    expect(run(a.actor, noop, a.env).code).toBe(0);
    const s = auditHead();
    const before = state();
    const replay = run(a.actor, noop, a.env);
    expect(replay.code).toBe(3);
    expect(replay.stderr).toContain('one-time code already used');
    const stale = run(a.actor, noop, { DSK_OTP: totpCode(secrets[a.actor], Date.now() - 120_000) });
    expect(stale.code).toBe(3);
    expect(stale.stderr).toContain('wrong or expired one-time code (failure 2 of 5)');
    const wrong = run(a.actor, ['--otp', String((Number(totpCode(secrets[a.actor], Date.now())) + 7) % 1e6).padStart(6, '0'), ...noop]);
    expect(wrong.code).toBe(3);
    const malformed = run(a.actor, noop, { DSK_OTP: '12ab56' });
    expect(malformed.code).toBe(2);
    const rows = audit(s).filter((x) => x.action === 'OTP_FAILURE').map((x) => JSON.parse(x.details));
    expect(rows.map((x) => [x.operator, x.reason, x.failures])).toEqual([
      [a.actor, 'replayed', 1],
      [a.actor, 'wrong_or_stale', 2],
      [a.actor, 'wrong_or_stale', 3],
    ]);
    expect(audit(s).filter((x) => x.action === 'CONFIG_CHANGE')).toEqual([]);
    // Failures are recorded in keys.db; nothing else changed.
    const after = state();
    delete after['keys.db'];
    delete before['keys.db'];
    expect(after).toEqual(before);
  });

  it('policy show prints the matrix; bad policy input changes nothing', () => {
    const show = run('audrey', ['policy', 'show']);
    expect(show.stdout).toMatch(/role\s+model\.invoke\s+param\.change\s+audit\.view\s+key\.manage/);
    expect(show.stdout).toMatch(/admin\s+✓\s+✓\s+✓\s+✓/);
    expect(show.stdout).toMatch(/auditor\s+✗\s+✗\s+✓\s+✗/);
    expect(json(run('cron', ['policy', 'show', '--json'])).roles.automation).toEqual(['model.invoke']);
    const before = state();
    const cases: [string[], number][] = [
      [['policy', 'set', 'developer', 'fly', 'on'], 2],
      [['policy', 'set', 'nobody', 'key.manage', 'on'], 4],
      [['policy', 'add-role', 'developer'], 6],
      [['policy', 'remove-role', 'auditor'], 6],
      [['operator', 'add', 'zed', '--role', 'wizard'], 4],
      [['operator', 'add', 'bob', '--role', 'developer'], 6],
      [['operator', 'remove', 'a1'], 3], // no code given
    ];
    for (const [args, code] of cases) {
      const r = run('a2', args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
      expect(r.stderr).toMatch(/^dsk: error: /);
    }
    expect(state()).toEqual(before);
    const a = admin();
    const set = run(a.actor, ['policy', 'set', 'auditor', 'key.manage', 'on', '--json'], a.env);
    expect(json(set).roles.auditor).toEqual(['audit.view', 'key.manage']);
    const cc = audit(0).filter((x) => x.action === 'CONFIG_CHANGE').map((x) => JSON.parse(x.details));
    expect(cc[cc.length - 1]).toMatchObject({ change: 'policy.set', role: 'auditor', permission: 'key.manage', value: 'on' });
    // The auditor now holds key.manage: keygen is allowed for it.
    expect(run('audrey', ['keygen', '--name', 'by-auditor', '--role', 'developer', '--json']).code).toBe(0);
  });
});
