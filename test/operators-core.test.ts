/**
 * Operators at the core level, with an injected clock: lockout and its expiry without sleeping,
 * replay and staleness, the automation role, tamper detection, and the policy write ordering.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import { makeHome, tmpDir } from './helpers.js';
import { withHome } from '../src/cli/session.js';
import { openUnsealed, type Home } from '../src/app/home.js';
import { fixedClock, systemRandom } from '../src/kernel/clock.js';
import { passphrasesFromFiles } from '../src/cli/secrets.js';
import {
  addOperator, authorizeOperator, checkOperator, confirmEnrolment, getOperator, LOCKOUT_DURATION_MS, LOCKOUT_WINDOW_MS,
  operatorsEnforced, removeOperator, resetOtp, verifyOperatorOtp,
} from '../src/app/operators.js';
import { secretFromUri, totpCode } from '../src/domain/totp.js';
import { setPermission } from '../src/app/policy.js';
import { loadConfig } from '../src/store/config-file.js';
import type { DskError } from '../src/kernel/errors.js';

const T0 = Date.parse('2026-03-01T12:00:10Z'); // 10 s into a 30 s step
const clock = fixedClock(T0);
let home: string;
let pass: string[];
let h: Home;
const secrets: Record<string, Buffer> = {};

function as(actor: string): Home {
  h.env.actor = actor;
  return h;
}
const code = (name: string, dt = 0) => totpCode(secrets[name], clock.now() + dt);
const actions = (since = 0) => h.store.events.after(since, 100_000);
const head = async () => (await h.store.events.last())!.seq;
/** Another connection to keys.db, as someone editing the file behind dsk's back. */
function tamper<T>(fn: (db: Database.Database) => T): T {
  const db = new Database(path.join(home, 'keys.db'));
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

async function rejects(p: Promise<unknown> | (() => unknown), code: string, exit: number): Promise<DskError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect((e as DskError).code).toBe(code);
    expect((e as DskError).exitCode).toBe(exit);
    return e as DskError;
  }
  throw new Error(`expected ${code}`);
}

beforeAll(async () => {
  const m = makeHome(tmpDir(), { shares: 2, threshold: 2, extraArgs: ['--kdf', 'scrypt', '--kdf-cost', '15'] });
  home = m.home;
  pass = m.pass;
  h = await openUnsealed(home, { clock, random: systemRandom, actor: 'root', sourceIp: null }, { passphrases: async () => passphrasesFromFiles(m.pass), pin: async () => Buffer.alloc(0) });
});
afterAll(async () => {
  await h?.close();
});

describe('operators (core, injected clock)', () => {
  it('stays open until an admin confirms a second factor, then enforces', async () => {
    expect((await operatorsEnforced(h))).toBe(false);
    const a = (await addOperator(as('root'), 'alice', 'admin'));
    secrets.alice = secretFromUri(a.otpauth_uri!);
    expect(a.operator.enrolled_at).toBeNull();
    // A pending admin does not turn checks on: anyone may still act.
    expect(await checkOperator(h, 'mallory', { permission: 'key.manage', sensitive: true })).toEqual({ mode: 'open' });
    for (const [n, role] of [['bob', 'developer'], ['cron', 'automation'], ['audrey', 'auditor']] as const) {
      const r = (await addOperator(h, n, role));
      if (r.otpauth_uri) secrets[n] = secretFromUri(r.otpauth_uri);
    }
    expect((await getOperator(h, 'cron'))!.totp_sealed).toBeNull();
    expect((await getOperator(h, 'audrey'))!.totp_sealed).toBeNull();
    expect((await getOperator(h, 'bob'))!.totp_sealed).not.toBeNull();
    const done = await confirmEnrolment(as('alice'), 'alice', code('alice', -30_000));
    expect(done.enforced_now).toBe(true);
    expect((await operatorsEnforced(h))).toBe(true);
    expect((await actions()).map((r) => r.action).slice(-2)).toEqual(['OPERATOR_ENROL', 'OPERATORS_ENFORCED']);
    // The otpauth URI (and so the secret) is in no audit row.
    const b32 = new URL(a.otpauth_uri!).searchParams.get('secret')!;
    expect(JSON.stringify((await actions()))).not.toContain(b32);
    await confirmEnrolment(as('bob'), 'bob', code('bob'));
  });

  it('refuses unknown operators and missing permissions, auditing operator and permission', async () => {
    const s = (await head());
    await rejects(checkOperator(h, 'mallory', { permission: null }), 'ERR_NOT_OPERATOR', 3);
    const e = await rejects(checkOperator(h, 'bob', { permission: 'key.manage' }), 'ERR_PERMISSION', 3);
    expect(e.message).toContain('key.manage');
    await rejects(checkOperator(h, 'audrey', { permission: 'admin', sensitive: true }), 'ERR_PERMISSION', 3);
    const rows = (await actions(s));
    expect(rows.map((r) => r.action)).toEqual(['OPERATOR_DENIED', 'OPERATOR_DENIED', 'OPERATOR_DENIED']);
    expect(rows.map((r) => JSON.parse(r.details))).toMatchObject([
      { operator: 'mallory', permission: 'none', reason: 'not_an_operator' },
      { operator: 'bob', role: 'developer', permission: 'key.manage', reason: 'missing_permission' },
      { operator: 'audrey', role: 'auditor', permission: 'admin', reason: 'missing_permission' },
    ]);
    expect(await checkOperator(h, 'audrey', { permission: 'audit.view' })).toMatchObject({ mode: 'enforced', needsOtp: false });
  });

  it('lets automation run exactly the commands marked automationAllowed, without a code', async () => {
    const due = { permission: 'key.manage' as const, sensitive: true, automationAllowed: true };
    expect(await authorizeOperator(h, 'cron', due, async () => null)).toMatchObject({ mode: 'enforced', needsOtp: false });
    const emergency = { permission: 'key.manage' as const, sensitive: true };
    expect((await rejects(checkOperator(h, 'cron', emergency), 'ERR_PERMISSION', 3)).message).toContain('key.manage');
    await rejects(checkOperator(h, 'cron', { permission: null, sensitive: true }), 'ERR_OTP_NOT_ENROLLED', 3);
    // Humans need a code even for automationAllowed commands.
    expect(await checkOperator(h, 'alice', due)).toMatchObject({ needsOtp: true });
    await rejects(authorizeOperator(h, 'alice', due, async () => null), 'ERR_NO_OTP', 3);
  });

  it('applies the role matrix to every command (role × access), naming the missing permission', async () => {
    // The access each command declares (src/cli/commands/*; rotate, export and audit as the brief gives them).
    const KM = 'key.manage' as const;
    const COMMANDS: Record<string, Parameters<typeof checkOperator>[2]> = {
      status: { permission: null }, 'keys list': { permission: null }, 'keys show': { permission: null },
      'policy show': { permission: null }, 'operator list': { permission: null }, 'operator confirm': { permission: null },
      keygen: { permission: KM }, 'keys revoke': { permission: KM, sensitive: true },
      rotate: { permission: KM, sensitive: true }, 'rotate --due': { permission: KM, sensitive: true, automationAllowed: true },
      'rotate --emergency': { permission: KM, sensitive: true }, export: { permission: KM, sensitive: true },
      'audit query': { permission: 'audit.view' },
      'policy set': { permission: 'admin', sensitive: true }, 'policy add-role': { permission: 'admin', sensitive: true },
      'operator add': { permission: 'admin', sensitive: true }, 'operator remove': { permission: 'admin', sensitive: true },
    };
    const open = ['status', 'keys list', 'keys show', 'policy show', 'operator list', 'operator confirm'];
    // A = allowed, O = allowed with a one-time code, otherwise the permission named in the refusal.
    const EXPECT: Record<string, Record<string, string>> = {
      alice: { keygen: 'A', 'audit query': 'A' },
      bob: { keygen: KM, 'keys revoke': KM, rotate: KM, 'rotate --due': KM, 'rotate --emergency': KM, export: KM, 'audit query': 'audit.view' },
      audrey: { keygen: KM, 'keys revoke': KM, rotate: KM, 'rotate --due': KM, 'rotate --emergency': KM, export: KM, 'audit query': 'A' },
      cron: { keygen: KM, 'keys revoke': KM, rotate: KM, 'rotate --due': 'A', 'rotate --emergency': KM, export: KM, 'audit query': 'audit.view' },
    };
    for (const [who, row] of Object.entries(EXPECT))
      for (const [cmd, access] of Object.entries(COMMANDS)) {
        const want = open.includes(cmd) ? 'A' : row[cmd] ?? (who === 'alice' ? 'O' : 'admin');
        const s = (await head());
        let got: string;
        try {
          const d = await checkOperator(h, who, access);
          got = d.mode === 'enforced' && d.needsOtp ? 'O' : 'A';
        } catch (e) {
          expect((e as DskError).exitCode).toBe(3);
          got = /lacks the (\S+) permission/.exec((e as Error).message)?.[1] ?? (e as DskError).code;
          expect(JSON.parse((await actions(s))[0].details)).toMatchObject({ operator: who, permission: got });
        }
        expect(`${who} ${cmd}: ${got}`).toBe(`${who} ${cmd}: ${want}`);
      }
  });

  it('accepts a code once: replays, earlier steps and stale codes fail and are counted', async () => {
    clock.advance(60_000);
    const s = (await head());
    const now = code('alice');
    expect(await verifyOperatorOtp(as('alice'), 'alice', now)).toBeGreaterThan(0);
    expect((await rejects(verifyOperatorOtp(h, 'alice', now), 'ERR_OTP_REPLAYED', 3)).message).toContain('failure 1 of 5');
    await rejects(verifyOperatorOtp(h, 'alice', code('alice', -30_000)), 'ERR_OTP_REPLAYED', 3);
    await rejects(verifyOperatorOtp(h, 'alice', code('alice', -90_000)), 'ERR_OTP_INVALID', 3);
    // The next step's code is still good (±1 step), once; then success resets the count.
    await verifyOperatorOtp(h, 'alice', code('alice', 30_000));
    expect((await actions(s)).map((r) => [r.action, JSON.parse(r.details).reason])).toEqual([
      ['OTP_FAILURE', 'replayed'],
      ['OTP_FAILURE', 'replayed'],
      ['OTP_FAILURE', 'wrong_or_stale'],
    ]);
    await rejects(verifyOperatorOtp(h, 'alice', '12a456'), 'ERR_OTP_SHAPE', 2);
  });

  it('locks after 5 failures in 15 minutes, refuses everything while locked, and lets go after 15 minutes', async () => {
    clock.advance(120_000);
    const wrong = (n: string) => String((Number(code(n)) + 500_000) % 1_000_000).padStart(6, '0');
    // Failures older than the window do not count.
    for (let i = 0; i < 4; i++) await rejects(verifyOperatorOtp(h, 'bob', wrong('bob')), 'ERR_OTP_INVALID', 3);
    clock.advance(LOCKOUT_WINDOW_MS + 1);
    expect((await rejects(verifyOperatorOtp(h, 'bob', wrong('bob')), 'ERR_OTP_INVALID', 3)).message).toContain('failure 1 of 5');
    for (let i = 0; i < 3; i++) await rejects(verifyOperatorOtp(h, 'bob', wrong('bob')), 'ERR_OTP_INVALID', 3);
    const s = (await head());
    const e = await rejects(verifyOperatorOtp(h, 'bob', wrong('bob')), 'ERR_OPERATOR_LOCKED', 3);
    expect(e.message).toMatch(/locked until/);
    expect((await actions(s)).map((r) => r.action)).toEqual(['OTP_FAILURE', 'OPERATOR_LOCKED']);
    // Locked: the right code and even a plain command are refused (and audited).
    await rejects(verifyOperatorOtp(h, 'bob', code('bob')), 'ERR_OPERATOR_LOCKED', 3);
    await rejects(checkOperator(h, 'bob', { permission: null }), 'ERR_OPERATOR_LOCKED', 3);
    expect((await actions(s)).slice(-1)[0]).toMatchObject({ action: 'OPERATOR_DENIED' });
    expect(JSON.parse((await actions(s)).slice(-1)[0].details)).toMatchObject({ operator: 'bob', reason: 'locked' });
    clock.advance(LOCKOUT_DURATION_MS - 1000);
    await rejects(checkOperator(h, 'bob', { permission: null }), 'ERR_OPERATOR_LOCKED', 3);
    clock.advance(1000);
    expect(await checkOperator(h, 'bob', { permission: null })).toMatchObject({ mode: 'enforced' });
    expect(await verifyOperatorOtp(h, 'bob', code('bob'))).toBeGreaterThan(0);
  });

  it('reset-otp replaces the secret at once and clears a lock; the last admin is kept', async () => {
    const old = secrets.bob;
    const r = (await resetOtp(as('alice'), 'bob'));
    secrets.bob = secretFromUri(r.otpauth_uri!);
    expect(secrets.bob.equals(old)).toBe(false);
    await rejects(checkOperator(h, 'bob', { permission: null, sensitive: true }), 'ERR_OTP_NOT_ENROLLED', 3);
    clock.advance(30_000);
    await rejects(confirmEnrolment(h, 'bob', totpCode(old, clock.now())), 'ERR_OTP_INVALID', 3);
    await confirmEnrolment(h, 'bob', code('bob'));
    await rejects(() => removeOperator(h, 'alice'), 'ERR_LAST_ADMIN', 6);
    await rejects(() => resetOtp(h, 'alice'), 'ERR_LAST_ADMIN', 6);
    await removeOperator(h, 'audrey');
    expect((await getOperator(h, 'audrey'))).toBeUndefined();
  });

  it('binds a sealed secret to its operator: moved to another row it does not open', async () => {
    tamper((db) => db.prepare("UPDATE operators SET totp_sealed = (SELECT totp_sealed FROM operators WHERE name = 'alice') WHERE name = 'bob'").run());
    clock.advance(30_000);
    await rejects(verifyOperatorOtp(h, 'bob', code('alice')), 'ERR_SECRET_SEAL', 5);
    await resetOtp(as('alice'), 'bob');
  });

  it('refuses a home whose operators were deleted behind its back', async () => {
    const rows = tamper((db) => {
      const all = db.prepare('SELECT * FROM operators').all();
      db.prepare('DELETE FROM operators').run();
      return all;
    });
    await rejects(checkOperator(h, 'mallory', { permission: null }), 'ERR_OPERATORS_TAMPERED', 5);
    tamper((db) => {
      const ins = db.prepare('INSERT INTO operators VALUES (@name, @role, @totp_sealed, @enrolled_at, @created_at, @created_by, @last_otp_step, @lock_until)');
      for (const r of rows) ins.run(r);
    });
    expect((await operatorsEnforced(h))).toBe(true);
  });

  it('policy changes: audit row first, then dsk.json; a failed write leaves a compensating row', async () => {
    const s = (await head());
    const r = (await setPermission(as('alice'), 'auditor', 'model.invoke', true));
    expect(r.changed).toBe(true);
    expect(loadConfig(home).roles.auditor).toEqual(['model.invoke', 'audit.view']);
    expect((await actions(s)).map((x) => x.action)).toEqual(['CONFIG_CHANGE']);
    expect(JSON.parse((await actions(s))[0].details)).toMatchObject({ change: 'policy.set', role: 'auditor', permission: 'model.invoke', value: 'on' });
    // Make dsk.json unreplaceable: a directory in its place (root ignores mode bits, not this).
    const cfg = path.join(home, 'dsk.json');
    const saved = fs.readFileSync(cfg);
    fs.rmSync(cfg);
    fs.mkdirSync(cfg);
    fs.writeFileSync(path.join(cfg, 'x'), '');
    const s2 = (await head());
    await expect(setPermission(h, 'auditor', 'model.invoke', false)).rejects.toThrow();
    expect((await actions(s2)).map((x) => x.action)).toEqual(['CONFIG_CHANGE', 'CONFIG_CHANGE_FAILED']);
    expect(h.config.roles.auditor).toContain('model.invoke');
    fs.rmSync(cfg, { recursive: true });
    fs.writeFileSync(cfg, saved, { mode: 0o600 });
  });

  it('the session hook unseals a sensitive command run through withHome to check the code, once per process', async () => {
    clock.advance(60_000);
    process.env.DSK_PASSPHRASE_FILES = pass.join(':');
    try {
      const env = { clock, random: systemRandom, actor: 'alice', sourceIp: null };
      const ctx = { home, json: false, color: false, actor: 'alice', env, otp: code('alice') };
      const access = { permission: 'key.manage' as const, sensitive: true };
      expect(await withHome(ctx, access, (hh) => hh.sealKey !== null)).toBe(true);
      const step = (await getOperator(h, 'alice'))!.last_otp_step;
      expect(step).toBe(Math.floor(clock.now() / 30_000));
      // The same process does not ask again (the code is spent).
      expect(await withHome(ctx, access, () => 'again')).toBe('again');
      await rejects(withHome({ ...ctx, actor: 'bob', env: { ...env, actor: 'bob' }, otp: undefined }, access, () => 0), 'ERR_PERMISSION', 3);
    } finally {
      delete process.env.DSK_PASSPHRASE_FILES;
    }
  });
});
