/**
 * Every HSM failure provoked for real against SoftHSM2: the exit code, the one-line message that
 * names the PKCS#11 function and return value, and that nothing was left behind or changed.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DSK, dsk, json, passphraseFiles, snapshot } from './helpers.js';
import { hasPkcs11Tool, MODULE, pkcs11Tool, requireSoftHsm, softHsm, USER_PIN, type SoftHsm } from './hsm-helpers.js';

const HSM = requireSoftHsm();

function init(h: SoftHsm, home: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  return dsk(['init', '--backend', 'pkcs11', '--home', home, ...args], { env: { ...h.env, DSK_HSM_PIN: USER_PIN, ...env } });
}

/** Nothing under dir but what was there: no home, no staging directory. */
function leftovers(dir: string): string[] {
  return fs.readdirSync(dir).filter((n) => n.startsWith('home') || n.startsWith('.home'));
}

const TICK_MS = 1000 / (Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100);

/** CPU time (user + system) of a process's main thread, in ms, from /proc (Linux). */
function mainThreadCpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) * TICK_MS;
}

/**
 * Resolves once `pid` is working with the token: the PKCS#11 library is mapped into the process and
 * its main thread (where every C_Sign runs) has used AFTER_LOAD_MS of CPU since. Progress is
 * measured in CPU time, not wall time, because a loaded machine stretches the wall time of
 * start-up past any fixed sleep, while an idle one finishes the whole keygen within it (the cause
 * of this test's failures under load). C_Initialize takes a few ms of CPU and one derivation
 * (100,000 C_Sign calls) well over a second, so the signal lands inside token work either way.
 */
async function inTokenWork(pid: number, exited: Promise<unknown>): Promise<{ wallMs: number; cpuMs: number; loadedCpuMs: number }> {
  const AFTER_LOAD_MS = 300;
  const t0 = Date.now();
  let gone = false;
  void exited.then(() => (gone = true));
  let loadedCpuMs: number | null = null;
  while (!gone && Date.now() - t0 < 60_000) {
    try {
      if (loadedCpuMs === null && fs.readFileSync(`/proc/${pid}/maps`, 'utf8').includes(path.basename(MODULE))) loadedCpuMs = mainThreadCpuMs(pid);
      const cpuMs = mainThreadCpuMs(pid);
      if (loadedCpuMs !== null && cpuMs >= loadedCpuMs + AFTER_LOAD_MS) return { wallMs: Date.now() - t0, cpuMs, loadedCpuMs };
    } catch {
      // the process is exiting: reported below
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`keygen ${gone ? 'exited' : 'was still starting'} after ${Date.now() - t0} ms before it had worked ${AFTER_LOAD_MS} ms of CPU with the token (loaded at ${loadedCpuMs ?? '-'} ms CPU)`);
}

describe.skipIf(!HSM)('dsk init --backend pkcs11: refusals', () => {
  let h: SoftHsm;
  let home: string;
  beforeAll(() => {
    h = softHsm();
    h.initToken('dsk-err');
    home = path.join(h.dir, 'home');
  });
  const objects = () => (hasPkcs11Tool ? pkcs11Tool(h, ['--token-label', 'dsk-err', '--login', '--pin', USER_PIN, '--list-objects']).stdout : '');

  it.each([
    ['no --token-label', ['--pkcs11-module', MODULE], /needs --token-label/],
    ['no --pkcs11-module', ['--token-label', 'dsk-err'], /needs --pkcs11-module/],
    ['software-only --shares', ['--pkcs11-module', MODULE, '--token-label', 'dsk-err', '--shares', '3'], /--shares is for the software backend/],
    ['half the recovery flags', ['--pkcs11-module', MODULE, '--token-label', 'dsk-err', '--recovery-shares', '3'], /both --recovery-shares and --recovery-threshold/],
    ['a too-long token label', ['--pkcs11-module', MODULE, '--token-label', 'x'.repeat(33)], /--token-label: a token label must be 1 to 32 bytes/],
    ['recovery-only --kdf without recovery', ['--pkcs11-module', MODULE, '--token-label', 'dsk-err', '--kdf', 'scrypt'], /need --recovery-shares/],
    ['--recover points at hsm recover', ['--pkcs11-module', MODULE, '--token-label', 'dsk-err', '--recover'], /use dsk hsm recover/],
    ['a bad key label', ['--pkcs11-module', MODULE, '--token-label', 'dsk-err', '--key-label', ' lead'], /--key-label: a key label must be/],
  ])('usage: %s (2)', (_n, args, msg) => {
    const r = init(h, home, args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(msg);
    expect(leftovers(h.dir)).toEqual([]);
  });

  it('recovery fragments to a directory that does not exist: 2 before the token is touched', () => {
    const before = objects();
    const pass = passphraseFiles(h.dir, 2, 'frag-dir');
    const missing = path.join(h.dir, 'no-such-dir');
    const r = init(h, home, ['--pkcs11-module', MODULE, '--token-label', 'dsk-err', '--recovery-shares', '2', '--recovery-threshold', '2', ...pass.flatMap((p) => ['--passphrase-file', p]), '--fragment-dir', missing]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`dsk: error: --fragment-dir: fragment directory ${missing} is not a directory\ndsk: hint: create it first (mode 0700)`);
    expect(leftovers(h.dir)).toEqual([]);
    expect(objects()).toBe(before);
  });

  it('pkcs11 flags with the software backend are refused (2)', () => {
    const r = dsk(['init', '--home', home, '--token-label', 'dsk-err']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--token-label needs --backend pkcs11');
  });

  it('a wrong PIN: 3, C_Login: CKR_PIN_INCORRECT, one attempt, nothing created', () => {
    const before = objects();
    const r = init(h, home, ['--pkcs11-module', MODULE, '--token-label', 'dsk-err'], { DSK_HSM_PIN: '0000' });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/^dsk: error: C_Login: CKR_PIN_INCORRECT: wrong user PIN\n/);
    expect(r.stderr).not.toContain('0000');
    expect(leftovers(h.dir)).toEqual([]);
    expect(objects()).toBe(before);
  });

  it('no PIN source and no terminal: 3 at once, no prompt', () => {
    const r = init(h, home, ['--pkcs11-module', MODULE, '--token-label', 'dsk-err'], { DSK_HSM_PIN: '' });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('no terminal to ask on');
    expect(r.stderr).toContain('--pin-file');
  });

  it('the PIN from --pin-file; a PIN file others can read is refused', () => {
    const pin = path.join(h.dir, 'pin.txt');
    fs.writeFileSync(pin, `${USER_PIN}\n`, { mode: 0o644 });
    fs.chmodSync(pin, 0o644);
    const loose = init(h, home, ['--pkcs11-module', MODULE, '--token-label', 'dsk-err', '--pin-file', pin], { DSK_HSM_PIN: '' });
    expect(loose.code).toBe(5);
    expect(loose.stderr).toContain('accessible by group or others');
    expect(leftovers(h.dir)).toEqual([]);
    fs.chmodSync(pin, 0o600);
    const ok = init(h, path.join(h.dir, 'home-pinfile'), ['--pkcs11-module', MODULE, '--token-label', 'dsk-err', '--key-label', 'via-pin-file', '--pin-file', pin, '--json'], { DSK_HSM_PIN: '' });
    expect(json(ok).key_label).toBe('via-pin-file');
    fs.rmSync(path.join(h.dir, 'home-pinfile'), { recursive: true });
  });

  it('a missing module file: 4, naming the path', () => {
    const r = init(h, home, ['--pkcs11-module', path.join(h.dir, 'nope.so'), '--token-label', 'dsk-err']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`dsk: error: PKCS#11 module ${path.join(h.dir, 'nope.so')}: no such file`);
    expect(leftovers(h.dir)).toEqual([]);
  });

  it('a random file named x.so, and a real shared library that is not PKCS#11: 7', () => {
    const x = path.join(h.dir, 'x.so');
    fs.writeFileSync(x, Buffer.from('not a library, just bytes\n'.repeat(40)));
    const r = init(h, home, ['--pkcs11-module', x, '--token-label', 'dsk-err']);
    expect(r.code).toBe(7);
    expect(r.stderr).toContain(`dsk: error: ${x} is not a loadable PKCS#11 library`);
    const libz = ['/lib/x86_64-linux-gnu/libz.so.1', '/usr/lib/x86_64-linux-gnu/libz.so.1', '/lib/aarch64-linux-gnu/libz.so.1'].find((p) => fs.existsSync(p));
    if (libz) {
      const z = init(h, home, ['--pkcs11-module', libz, '--token-label', 'dsk-err']);
      expect(z.code).toBe(7);
      expect(z.stderr).toContain('is not a loadable PKCS#11 library');
    }
    expect(leftovers(h.dir)).toEqual([]);
  });

  it('an unknown token label: 4, listing the labels that exist', () => {
    const r = init(h, home, ['--pkcs11-module', MODULE, '--token-label', 'no-such-token']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`dsk: error: no token labelled 'no-such-token'`);
    expect(r.stderr).toContain(`dsk: hint: tokens present: 'dsk-err'`);
    expect(leftovers(h.dir)).toEqual([]);
  });

  it('a token without CKM_SHA256_HMAC: 7, naming the mechanism', () => {
    const conf = path.join(h.dir, 'nohmac.conf');
    fs.writeFileSync(conf, fs.readFileSync(h.conf, 'utf8') + 'slots.mechanisms = CKM_SHA_1_HMAC,CKM_GENERIC_SECRET_KEY_GEN\n');
    const r = init(h, home, ['--pkcs11-module', MODULE, '--token-label', 'dsk-err'], { SOFTHSM2_CONF: conf });
    expect(r.code).toBe(7);
    expect(r.stderr).toContain("token 'dsk-err' does not support CKM_SHA256_HMAC");
    const conf2 = path.join(h.dir, 'nogen.conf');
    fs.writeFileSync(conf2, fs.readFileSync(h.conf, 'utf8') + 'slots.mechanisms = CKM_SHA256_HMAC\n');
    const r2 = init(h, home, ['--pkcs11-module', MODULE, '--token-label', 'dsk-err'], { SOFTHSM2_CONF: conf2 });
    expect(r2.code).toBe(7);
    expect(r2.stderr).toContain('does not support CKM_GENERIC_SECRET_KEY_GEN');
    expect(leftovers(h.dir)).toEqual([]);
  });
});

describe.skipIf(!HSM)('an existing pkcs11 home whose token goes wrong', () => {
  let h: SoftHsm;
  let home: string;
  let env: NodeJS.ProcessEnv;
  let keyId: string;
  const hsmFile = () => path.join(home, 'master_key.hsm');
  const keygen = (e: NodeJS.ProcessEnv = {}) => dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env: { ...env, ...e } });
  const keyCount = () => json(dsk(['keys', 'list', '--json'], { env })).length;
  const tool = (args: string[]) => pkcs11Tool(h, ['--token-label', 'dsk-home', '--login', '--pin', USER_PIN, ...args]);
  beforeAll(() => {
    h = softHsm();
    h.initToken('dsk-home');
    home = path.join(h.dir, 'home');
    env = { ...h.env, DSK_HOME: home, DSK_HSM_PIN: USER_PIN };
    keyId = json(dsk(['init', '--backend', 'pkcs11', '--pkcs11-module', MODULE, '--token-label', 'dsk-home', '--json'], { env })).key_id;
  });

  it('a wrong PIN: 3, no key issued, keys.db untouched', () => {
    const before = fs.readFileSync(path.join(home, 'keys.db'));
    const count = keyCount();
    const r = keygen({ DSK_HSM_PIN: '9999' });
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stderr).error).toMatchObject({ code: 'ERR_PIN', message: expect.stringContaining('C_Login: CKR_PIN_INCORRECT') });
    expect(keyCount()).toBe(count);
    expect(fs.readFileSync(path.join(home, 'keys.db')).equals(before)).toBe(true);
  });

  it('Ctrl-C during a derivation finalizes the module and exits 130', async () => {
    const before = keyCount();
    const child = spawn(process.execPath, [DSK, 'keygen', '--name', 'interrupted', '--role', 'developer'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.on('exit', (code, signal) => r({ code, signal })));
    const at = await inTokenWork(child.pid!, exited);
    console.log(`SIGINT at ${at.wallMs} ms wall, ${at.cpuMs} ms main-thread CPU (module loaded at ${at.loadedCpuMs} ms CPU)`);
    child.kill('SIGINT');
    expect(await exited, stderr).toEqual({ code: 130, signal: null });
    expect(stderr).toBe('dsk: error: interrupted (SIGINT); the PKCS#11 module was finalized\n');
    expect(keyCount()).toBe(before);
  });

  it('master_key.hsm pointing at a vanished module file: 4', () => {
    const orig = fs.readFileSync(hsmFile(), 'utf8');
    try {
      fs.writeFileSync(hsmFile(), orig.replace(JSON.stringify(MODULE), JSON.stringify(path.join(h.dir, 'gone.so'))));
      const r = keygen();
      expect(r.code).toBe(4);
      expect(r.stderr).toContain('gone.so: no such file');
    } finally {
      fs.writeFileSync(hsmFile(), orig);
    }
  });

  it('master_key.hsm with an altered key check value: 5', () => {
    const orig = fs.readFileSync(hsmFile(), 'utf8');
    const count = keyCount();
    try {
      const f = JSON.parse(orig);
      f.key_check_value = f.key_check_value.replace(/^./, (c: string) => (c === '0' ? '1' : '0'));
      fs.writeFileSync(hsmFile(), JSON.stringify(f));
      const r = keygen();
      expect(r.code).toBe(5);
      expect(r.stderr).toContain('does not match the key check value in master_key.hsm');
      expect(keyCount()).toBe(count);
    } finally {
      fs.writeFileSync(hsmFile(), orig);
    }
  });

  it.skipIf(!hasPkcs11Tool)('the key object replaced by an extractable one: 5; deleted: 4', () => {
    const snapBefore = snapshot(path.join(home));
    const count = keyCount();
    expect(tool(['--delete-object', '--type', 'secrkey', '--label', 'dsk-master']).code).toBe(0);
    const missing = keygen();
    expect(missing.code).toBe(4);
    expect(JSON.parse(missing.stderr).error.message).toContain("token 'dsk-home' holds no key labelled 'dsk-master'");
    const gen = tool(['--keygen', '--key-type', 'GENERIC:32', '--label', 'dsk-master', '--id', keyId, '--extractable']);
    expect(gen.code).toBe(0);
    const unsafe = keygen();
    expect(unsafe.code).toBe(5);
    expect(unsafe.stderr).toMatch(/has unsafe attributes: .*CKA_SENSITIVE is false.*CKA_EXTRACTABLE is true/);
    expect(keyCount()).toBe(count);
    // the refusals only appended UNSEAL_FAILURE audit rows; keys.db and master_key.hsm are as they were
    const after = snapshot(path.join(home));
    expect(after['keys.db']).toBe(snapBefore['keys.db']);
    expect(after['master_key.hsm']).toBe(snapBefore['master_key.hsm']);
  });
});
