/**
 * `dsk hsm recover` in a home whose operator checks are on. The token is gone, so the admin's
 * one-time code (its TOTP secret is sealed under the master key) is checked with the key rebuilt
 * from the recovery fragments, not by unsealing through the token. Regression: the check once
 * unsealed through the lost token, ignoring the command's own passphrase flags, so recovery could
 * not run at all once an admin had enrolled. Real SoftHSM2, the real CLI.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { dsk, json, passphraseFiles, snapshot } from './helpers.js';
import { pkcs11Home, requireSoftHsm, softHsm, type Setup } from './hsm-helpers.js';
import { secretFromUri, totpCode, totpStep } from '../src/domain/totp.js';

const HSM = requireSoftHsm();

describe.skipIf(!HSM)('hsm recover with operator checks on', () => {
  let s: Setup;
  let pass: string[];
  let secret: Buffer;
  let step: number;
  const as = (actor: string, args: string[], extra: NodeJS.ProcessEnv = {}) => dsk(['--actor', actor, ...args], { env: { ...s.env, ...extra } });
  const audit = () => {
    const db = new Database(path.join(s.home, 'audit_log', 'audit.db'), { readonly: true });
    try {
      return db.prepare('SELECT action, actor, details FROM events ORDER BY seq').all() as { action: string; actor: string; details: string }[];
    } finally {
      db.close();
    }
  };

  beforeAll(() => {
    const hsm = softHsm();
    pass = passphraseFiles(hsm.dir, 3, 'recovery');
    s = pkcs11Home(hsm, 'dsk-op', ['--recovery-shares', '3', '--recovery-threshold', '2', '--kdf', 'scrypt', '--kdf-cost', '15', ...pass.flatMap((p) => ['--passphrase-file', p])]);
    const added = json(as('root', ['operator', 'add', 'alice', '--role', 'admin', '--json']));
    secret = secretFromUri(added.otpauth_uri);
    step = totpStep(Date.now());
    const confirmed = as('alice', ['operator', 'confirm', 'alice', '--code', totpCode(secret, step * 30_000), '--json']);
    expect(json(confirmed).operator_checks_started).toBe(true);
  });

  it('after the token is lost: a stranger and a wrong code are refused (3), the token untouched; the right code recovers, audited', () => {
    // lose the token, then put a fresh one with the same label in its place
    const tokens = path.join(s.hsm!.dir, 'tokens');
    fs.rmSync(tokens, { recursive: true });
    fs.mkdirSync(tokens, { mode: 0o700 });
    s.hsm!.initToken('dsk-op');
    const env = { DSK_PASSPHRASE_FILES: '' };
    const recover = ['hsm', 'recover', '--passphrase-file', pass[1], '--passphrase-file', pass[2], '--json'];

    const stranger = as('mallory', recover, env);
    expect(stranger.code).toBe(3);
    expect(JSON.parse(stranger.stderr).error.code).toBe('ERR_NOT_OPERATOR');

    // keys.db records the failed code (lockout counting) and the audit log the refusal; nothing else changes
    const files = () => {
      const f = snapshot(s.home);
      for (const p of ['keys.db', path.join('audit_log', 'audit.db'), path.join('audit_log', 'HEAD')]) delete f[p];
      return f;
    };
    const before = files();
    const good = totpCode(secret, (step + 1) * 30_000);
    const wrong = String((Number(good) + 500_000) % 1e6).padStart(6, '0');
    const refused = as('alice', ['--otp', wrong, ...recover], env);
    expect(refused.code, refused.stderr).toBe(3);
    expect(JSON.parse(refused.stderr).error.code).toBe('ERR_OTP_INVALID');
    expect(files()).toEqual(before);
    const keys = new Database(path.join(s.home, 'keys.db'), { readonly: true });
    expect(keys.prepare("SELECT count(*) AS n FROM operator_failures WHERE name = 'alice'").get()).toEqual({ n: 1 });
    keys.close();
    expect(json(as('alice', ['hsm', 'info', '--json'])).key).toMatchObject({ label: 'dsk-master', present: false });
    expect(audit().at(-1)).toMatchObject({ action: 'OTP_FAILURE', actor: 'alice' });
    expect(JSON.parse(audit().at(-1)!.details)).toMatchObject({ operator: 'alice', reason: 'wrong_or_stale', permission: 'admin' });

    const r = json(as('alice', ['--otp', good, ...recover], env));
    expect(r).toMatchObject({ token_label: 'dsk-op', key_label: 'dsk-master', origin: 'imported' });
    const last = audit().at(-1)!;
    expect(last).toMatchObject({ action: 'MASTER_RECOVER', actor: 'alice' });
    expect(JSON.parse(last.details)).toMatchObject({ token_label: 'dsk-op', key_id: r.key_id });
    // the home works through the new token object, and the audit chain (MACs included) is intact
    expect(json(as('alice', ['audit', 'verify', '--json']))).toMatchObject({ ok: true, mode: 'structure+mac' });
  });
});
