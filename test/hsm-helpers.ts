/**
 * SoftHSM2 for tests: a private SOFTHSM2_CONF and token directory per test, tokens initialised
 * with softhsm2-util. Without SoftHSM2 the HSM tests skip with a printed reason, except under
 * CI=true, where a missing SoftHSM2 is a failure.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { dsk, hasCommand, requireTool, tmpDir } from './helpers.js';
import { openUnsealed, defaultEnv } from '../src/app/home.js';
import { getKey, recoverKeyText } from '../src/app/keys.js';
import { passphrasesFromFiles } from '../src/cli/secrets.js';

const CANDIDATES = [process.env.DSK_TEST_PKCS11_MODULE, '/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so', '/usr/local/lib/softhsm/libsofthsm2.so'];
export const MODULE = CANDIDATES.find((p): p is string => !!p && fs.existsSync(p)) ?? '/usr/lib/softhsm/libsofthsm2.so';
export const USER_PIN = '1234';
export const SO_PIN = '5678';

export const hasPkcs11Tool = hasCommand('pkcs11-tool');

/** Call at the top of an HSM test file: prints why it skips, and fails under CI=true (requireTool). */
export function requireSoftHsm(): boolean {
  const found =
    requireTool(`the SoftHSM2 module (${MODULE})`, 'the HSM tests', { present: fs.existsSync(MODULE), install: 'softhsm2' }) &&
    requireTool('softhsm2-util', 'the HSM tests', { install: 'softhsm2' });
  if (found) requireTool('pkcs11-tool', 'the checks made with an independent PKCS#11 client', { present: hasPkcs11Tool, install: 'opensc' });
  return found;
}

export interface SoftHsm {
  dir: string;
  conf: string;
  env: NodeJS.ProcessEnv;
  initToken(label: string): void;
}

/** A fresh SoftHSM2 configuration whose token directory lives in a new temporary folder. */
export function softHsm(dir = tmpDir('dsk-hsm-')): SoftHsm {
  const tokens = path.join(dir, 'tokens');
  fs.mkdirSync(tokens, { mode: 0o700 });
  const conf = path.join(dir, 'softhsm2.conf');
  fs.writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const env = { SOFTHSM2_CONF: conf };
  return {
    dir,
    conf,
    env,
    initToken(label: string) {
      const r = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', label, '--pin', USER_PIN, '--so-pin', SO_PIN], { env: { ...process.env, ...env }, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`softhsm2-util --init-token failed: ${r.stderr}`);
    },
  };
}

/** Runs pkcs11-tool (OpenSC), an independent PKCS#11 client, against the test token. */
export function pkcs11Tool(h: SoftHsm, args: string[]) {
  const r = spawnSync('pkcs11-tool', ['--module', MODULE, ...args], { env: { ...process.env, ...h.env }, encoding: 'utf8' });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export interface Setup {
  home: string;
  env: NodeJS.ProcessEnv;
  hsm?: SoftHsm;
  pass?: string[];
}

export function pkcs11Home(hsm: SoftHsm, label = 'dsk-test', extra: string[] = []): Setup {
  hsm.initToken(label);
  const home = path.join(hsm.dir, 'home');
  const env = { ...hsm.env, DSK_HOME: home, DSK_HSM_PIN: USER_PIN };
  const r = dsk(['init', '--backend', 'pkcs11', '--pkcs11-module', MODULE, '--token-label', label, '--json', ...extra], { env });
  if (r.code !== 0) throw new Error(`init failed (${r.code}): ${r.stderr}`);
  return { home, env, hsm };
}

/** Re-derives a key from the master key in this process (the seed's derivation via MasterKey.stretch). */
export async function rederive(s: Setup, id: string): Promise<string> {
  if (s.hsm) process.env.SOFTHSM2_CONF = s.hsm.conf;
  const threshold = String(s.env.DSK_PASSPHRASE_FILES ?? '').split(':').filter(Boolean);
  const h = await openUnsealed(s.home, defaultEnv('test'), {
    passphrases: async () => passphrasesFromFiles(threshold),
    pin: async () => Buffer.from(USER_PIN),
  });
  try {
    return await recoverKeyText(h, await getKey(h, id));
  } finally {
    await h.close();
  }
}
