/**
 * The key lifecycle on both master-key backends from one suite, then what only the HSM backend
 * has: the key object as an independent client (OpenSC pkcs11-tool) sees it, `hsm info`, and
 * the refusal of a duplicate key label (recovery: hsm-recovery.test.ts). Real SoftHSM2 tokens,
 * real SQLite homes, the real built CLI.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dsk, json, makeHome, tmpDir } from './helpers.js';
import { hasPkcs11Tool, MODULE, pkcs11Home, pkcs11Tool, rederive, requireSoftHsm, softHsm, USER_PIN, type Setup } from './hsm-helpers.js';

const HSM = requireSoftHsm();
const BACKENDS = HSM ? (['software', 'pkcs11'] as const) : (['software'] as const);

describe.each(BACKENDS)('key lifecycle on the %s backend', (backend) => {
  let s: Setup;
  let issued: { id: string; api_key: string; api_secret: string };
  beforeAll(() => {
    if (backend === 'software') {
      const m = makeHome(tmpDir(), { extraArgs: ['--kdf', 'scrypt', '--kdf-cost', '15'] });
      s = { home: m.home, env: m.env, pass: m.pass };
    } else s = pkcs11Home(softHsm());
  });

  it('init created a home that names its backend and holds no key material', () => {
    const st = json(dsk(['status', '--json'], { env: s.env }));
    expect(st.backend).toBe(backend);
    if (backend === 'pkcs11') {
      expect(st.hsm).toMatchObject({ token_label: 'dsk-test', key_label: 'dsk-master', origin: 'generated', recovery: null });
      expect(fs.existsSync(path.join(s.home, 'key_fragments'))).toBe(false);
      const f = JSON.parse(fs.readFileSync(path.join(s.home, 'master_key.hsm'), 'utf8'));
      expect(Object.keys(f).sort()).toEqual(['created_at', 'format', 'key_check_value', 'key_id', 'key_label', 'mechanism', 'module', 'origin', 'recovery', 'token_label', 'token_serial']);
      expect(f.module).toBe(MODULE);
      expect(fs.statSync(path.join(s.home, 'master_key.hsm')).mode & 0o777).toBe(0o600);
    } else {
      expect(fs.existsSync(path.join(s.home, 'master_key.hsm'))).toBe(false);
    }
  });

  it('keygen issues a key that re-derives from the master key and its salt', async () => {
    issued = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env: s.env }));
    expect(issued.api_key).toMatch(/^dsk_[0-9a-f]{12}_[0-9a-f]{64}_[0-9A-Za-z]{6}$/);
    expect(await rederive(s, issued.id)).toBe(issued.api_key);
  });

  it('revoke changes the state, and status counts it', () => {
    const r = json(dsk(['keys', 'revoke', issued.id, '--reason', 'test', '--json'], { env: s.env }));
    expect(r.status).toBe('revoked');
    const st = json(dsk(['status', '--json'], { env: s.env }));
    expect(st.keys.revoked).toBe(1);
    expect(st.audit.rows).toBeGreaterThanOrEqual(3);
    const human = dsk(['status'], { env: s.env });
    expect(human.stdout).toMatch(new RegExp(`backend\\s+${backend}`));
    if (backend === 'pkcs11') expect(human.stdout).toContain("token 'dsk-test', key 'dsk-master'");
  });
});

describe.skipIf(!HSM)('the master key object in the token', () => {
  let s: Setup;
  beforeAll(() => {
    s = pkcs11Home(softHsm());
  });

  it.skipIf(!hasPkcs11Tool)('pkcs11-tool sees a sensitive, never-extractable secret key and cannot read its value', () => {
    const list = pkcs11Tool(s.hsm!, ['--token-label', 'dsk-test', '--login', '--pin', USER_PIN, '--list-objects']);
    expect(list.code).toBe(0);
    const f = JSON.parse(fs.readFileSync(path.join(s.home, 'master_key.hsm'), 'utf8'));
    const obj = list.stdout.split(/\n(?=\S)/).find((b) => b.includes('label:      dsk-master'))!;
    expect(obj).toMatch(/^Secret Key Object; Generic secret length 32/);
    expect(obj).toContain(`ID:         ${f.key_id}`);
    expect(obj).toMatch(/Access:.*\bsensitive\b/);
    expect(obj).toMatch(/Access:.*never extractable/);
    const out = path.join(s.hsm!.dir, 'value.bin');
    const read = pkcs11Tool(s.hsm!, ['--token-label', 'dsk-test', '--login', '--pin', USER_PIN, '--read-object', '--type', 'secrkey', '--label', 'dsk-master', '-o', out]);
    expect(read.code).not.toBe(0);
    expect(read.stderr).toContain('CKR_ATTRIBUTE_SENSITIVE');
    expect(fs.existsSync(out) && fs.statSync(out).size > 0).toBe(false);
    // without login the private object is invisible
    expect(pkcs11Tool(s.hsm!, ['--token-label', 'dsk-test', '--list-objects']).stdout).not.toContain('dsk-master');
  });

  it('hsm info reports module, token, mechanisms and the key attributes', () => {
    const i = json(dsk(['hsm', 'info', '--json'], { env: s.env }));
    expect(i.module).toBe(MODULE);
    expect(i.library.manufacturer).toBe('SoftHSM');
    const tok = i.tokens.find((t: { label: string }) => t.label === 'dsk-test');
    expect(tok.mechanisms).toEqual({ CKM_SHA256_HMAC: true, CKM_GENERIC_SECRET_KEY_GEN: true });
    expect(i.key_origin).toBe('generated');
    expect(i.key.present).toBe(true);
    expect(i.key.attributes).toMatchObject({ token: true, private: true, sensitive: true, extractable: false, never_extractable: true, sign: true, encrypt: false, decrypt: false, wrap: false, unwrap: false, derive: false, value_len: 32 });
    const noPin = json(dsk(['hsm', 'info', '--json'], { env: { ...s.env, DSK_HSM_PIN: '' } }));
    expect(noPin.key).toMatchObject({ checked: false });
    expect(dsk(['hsm', 'info', '--help']).stdout).toContain('Examples:');
  });

  it('a second init with the same key label is refused (6) and leaves nothing behind', () => {
    const home2 = path.join(s.hsm!.dir, 'home2');
    const before = pkcs11Tool(s.hsm!, ['--token-label', 'dsk-test', '--login', '--pin', USER_PIN, '--list-objects']).stdout;
    const r = dsk(['init', '--backend', 'pkcs11', '--pkcs11-module', MODULE, '--token-label', 'dsk-test', '--home', home2], { env: s.env });
    expect(r.code).toBe(6);
    expect(r.stderr).toContain("dsk: error: token 'dsk-test' already holds a key labelled 'dsk-master'");
    expect(fs.existsSync(home2)).toBe(false);
    expect(fs.readdirSync(s.hsm!.dir).filter((n) => n.startsWith('.home2'))).toEqual([]);
    if (hasPkcs11Tool) expect(pkcs11Tool(s.hsm!, ['--token-label', 'dsk-test', '--login', '--pin', USER_PIN, '--list-objects']).stdout).toBe(before);
  });

  it('another key label in the same token makes an independent home', () => {
    const home2 = path.join(s.hsm!.dir, 'home3');
    const r = json(dsk(['init', '--backend', 'pkcs11', '--pkcs11-module', MODULE, '--token-label', 'dsk-test', '--key-label', 'dsk-second', '--home', home2, '--json'], { env: s.env }));
    expect(r).toMatchObject({ backend: 'pkcs11', key_label: 'dsk-second', origin: 'generated', recovery: null });
    const first = JSON.parse(fs.readFileSync(path.join(s.home, 'master_key.hsm'), 'utf8'));
    expect(r.key_check_value).not.toBe(first.key_check_value);
  });
});
