/**
 * Recovery fragments for the HSM backend: a pkcs11 home made with --recovery-shares survives the
 * loss of its token; `dsk hsm recover` restores the same key into a fresh token and keys issued
 * before still re-derive. Real SoftHSM2 tokens, the real built CLI.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { DSK, dsk, json, passphraseFiles, snapshot } from './helpers.js';
import { hasPkcs11Tool, MODULE, pkcs11Home, pkcs11Tool, rederive, requireSoftHsm, softHsm, USER_PIN, type Setup } from './hsm-helpers.js';
import { openUnsealed, defaultEnv } from '../src/app/home.js';
import { getKey, openSigningSecret } from '../src/app/keys.js';
import { lastRows } from '../src/audit/query.js';

const HSM = requireSoftHsm();

describe.skipIf(!HSM)('recovery fragments', () => {
  let s: Setup;
  let pass: string[];
  let issued: { id: string; api_key: string; api_secret: string };
  beforeAll(() => {
    const hsm = softHsm();
    pass = passphraseFiles(hsm.dir, 3, 'recovery');
    s = pkcs11Home(hsm, 'dsk-old', ['--recovery-shares', '3', '--recovery-threshold', '2', '--kdf', 'scrypt', '--kdf-cost', '15', ...pass.flatMap((p) => ['--passphrase-file', p])]);
  });
  afterAll(() => {
    delete process.env.SOFTHSM2_CONF;
  });

  it('init imports the key and writes fragments; the origin says so', () => {
    const f = JSON.parse(fs.readFileSync(path.join(s.home, 'master_key.hsm'), 'utf8'));
    expect(f).toMatchObject({ origin: 'imported', recovery: { threshold: 2, shares: 3 } });
    expect(fs.readdirSync(path.join(s.home, 'key_fragments')).sort()).toEqual(['frag1.enc', 'frag2.enc', 'frag3.enc', 'metadata.json']);
    const i = json(dsk(['hsm', 'info', '--json'], { env: s.env }));
    expect(i.key_origin).toBe('imported');
    expect(i.key.attributes).toMatchObject({ sensitive: true, extractable: false, never_extractable: false });
    issued = json(dsk(['keygen', '--name', 'before-loss', '--role', 'automation', '--json'], { env: s.env }));
  });

  it('after the token is lost, hsm recover restores the same key into a new token', async () => {
    // lose the token: wipe SoftHSM's token directory, then initialise a fresh, different token
    const tokens = path.join(s.hsm!.dir, 'tokens');
    fs.rmSync(tokens, { recursive: true });
    fs.mkdirSync(tokens, { mode: 0o700 });
    const lost = dsk(['keygen', '--name', 'x', '--role', 'automation'], { env: s.env });
    expect(lost.code).toBe(4);
    expect(lost.stderr).toContain("no token labelled 'dsk-old'");
    s.hsm!.initToken('dsk-new');

    const env = { ...s.env, DSK_PASSPHRASE_FILES: '' };
    const wrong = passphraseFiles(s.hsm!.dir, 2, 'wrong');
    const before = snapshot(s.home);
    const bad = dsk(['hsm', 'recover', '--token-label', 'dsk-new', ...wrong.flatMap((p) => ['--passphrase-file', p])], { env });
    expect(bad.code).toBe(3);
    expect(snapshot(s.home)).toEqual(before);

    const r = json(dsk(['hsm', 'recover', '--token-label', 'dsk-new', '--passphrase-file', pass[2], '--passphrase-file', pass[0], '--json'], { env }));
    expect(r).toMatchObject({ token_label: 'dsk-new', key_label: 'dsk-master', origin: 'imported' });
    const f = JSON.parse(fs.readFileSync(path.join(s.home, 'master_key.hsm'), 'utf8'));
    expect(f).toMatchObject({ token_label: 'dsk-new', key_id: r.key_id });

    expect(await rederive(s, issued.id)).toBe(issued.api_key);
    const h = await openUnsealed(s.home, defaultEnv('test'), { passphrases: async () => [], pin: async () => Buffer.from(USER_PIN) });
    try {
      const rows = (await lastRows(h.store, 5)).map((x) => x.action);
      expect(rows).toContain('MASTER_RECOVER');
      expect(openSigningSecret(h.sealKey!, await getKey(h, issued.id))).toBe(issued.api_secret);
    } finally {
      await h.close();
    }
    expect(json(dsk(['keys', 'revoke', issued.id, '--json'], { env: s.env })).status).toBe('revoked');

    const again = dsk(['hsm', 'recover', '--token-label', 'dsk-new', '--passphrase-file', pass[0], '--passphrase-file', pass[1]], { env });
    expect(again.code).toBe(6);
    expect(again.stderr).toContain("already holds a key labelled 'dsk-master'");
  });

  it.skipIf(!hasPkcs11Tool)('an init that fails after the key object was created destroys it and leaves nothing', async () => {
    const h = softHsm();
    h.initToken('dsk-race');
    const home = path.join(h.dir, 'home');
    const p = passphraseFiles(h.dir, 3, 'race');
    // The recovery path seals three fragments (PBKDF2, 600,000 iterations each) before it imports
    // the key; a file that appears in the target meanwhile makes the final rename refuse (6).
    const child = spawn(process.execPath, [DSK, 'init', '--backend', 'pkcs11', '--pkcs11-module', MODULE, '--token-label', 'dsk-race', '--home', home, '--recovery-shares', '3', '--recovery-threshold', '2', ...p.flatMap((f) => ['--passphrase-file', f])], {
      env: { ...process.env, ...h.env, DSK_HSM_PIN: USER_PIN },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
    for (let i = 0; i < 500 && !fs.readdirSync(h.dir).some((n) => n.startsWith('.home.init-')); i++) await new Promise((r) => setTimeout(r, 10));
    fs.mkdirSync(home, { mode: 0o700 });
    fs.writeFileSync(path.join(home, 'someone-elses-file'), 'x');
    expect(await exited).toBe(6);
    expect(stderr).toContain('already exists and is not empty');
    expect(fs.readdirSync(h.dir).filter((n) => n.startsWith('.home'))).toEqual([]);
    expect(fs.readdirSync(home)).toEqual(['someone-elses-file']);
    const objs = pkcs11Tool(h, ['--token-label', 'dsk-race', '--login', '--pin', USER_PIN, '--list-objects']);
    expect(objs.code).toBe(0);
    expect(objs.stdout).not.toContain('dsk-master');
  });

  it('a home made without recovery flags has nothing to recover from (4)', () => {
    const t = pkcs11Home(softHsm(), 'dsk-plain');
    const r = dsk(['hsm', 'recover', '--passphrase-file', pass[0], '--passphrase-file', pass[1]], { env: t.env });
    expect(r.code).toBe(4);
    expect(r.stderr).toContain('has no recovery fragments');
  });
});
