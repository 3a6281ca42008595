/** Shared test helpers: temporary homes, passphrase files, and spawning the real built `dsk`. */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const DSK = path.join(ROOT, 'bin', 'dsk.js');

export function tmpDir(prefix = 'dsk-test-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  fs.chmodSync(d, 0o700);
  return d;
}

/** Writes n custodian passphrase files (0600) and returns their paths. */
export function passphraseFiles(dir: string, n: number, tag = 'custodian'): string[] {
  return Array.from({ length: n }, (_, i) => {
    const f = path.join(dir, `${tag}${i + 1}.pass`);
    fs.writeFileSync(f, `${tag}-${i + 1}-${crypto.randomBytes(4).toString('hex')}\n`, { mode: 0o600 });
    return f;
  });
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

const BASE_ENV = () => {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const k of ['DSK_HOME', 'DSK_ACTOR', 'DSK_PASSPHRASE_FILES', 'DSK_HSM_PIN', 'DSK_OTP', 'DSK_DEBUG']) delete env[k];
  return env;
};

/** Runs the built dsk synchronously with no terminal (stdin closed unless `input`). */
export function dsk(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; cwd?: string } = {}): RunResult {
  const r = spawnSync(process.execPath, [DSK, ...args], {
    env: { ...BASE_ENV(), ...opts.env },
    input: opts.input ?? '',
    cwd: opts.cwd,
    encoding: 'utf8',
    timeout: 120_000,
  });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Async variant, for concurrency and crash tests. */
export function dskAsync(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}) {
  return spawn(process.execPath, [DSK, ...args], { env: { ...BASE_ENV(), ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function json<T = any>(r: RunResult): T {
  if (r.code !== 0) throw new Error(`dsk exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

/** A software home with 5 fragments, threshold 3; returns its paths and an env that unseals it. */
export function makeHome(dir = tmpDir(), opts: { shares?: number; threshold?: number; extraArgs?: string[] } = {}) {
  const shares = opts.shares ?? 5;
  const threshold = opts.threshold ?? 3;
  const home = path.join(dir, 'home');
  const pass = passphraseFiles(dir, shares);
  const r = dsk(['init', '--home', home, '--shares', String(shares), '--threshold', String(threshold), ...pass.flatMap((p) => ['--passphrase-file', p]), ...(opts.extraArgs ?? [])]);
  if (r.code !== 0) throw new Error(`init failed: ${r.stderr}`);
  const env = { DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.slice(0, threshold).join(':') };
  return { dir, home, pass, env };
}

/** SHA-256 of every file under dir (relative path → hash), to prove a failed command changed nothing. */
export function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}

export function hasCommand(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/**
 * Whether a tool some tests need is installed, for `describe.skipIf(!requireTool(…))`. When it is
 * missing: under CI=true this throws, so the file fails naming the tool (CI never skips silently);
 * elsewhere it prints which tests skip and why, and returns false.
 */
export function requireTool(name: string, tests: string, opts: { present?: boolean; install?: string } = {}): boolean {
  if (opts.present ?? hasCommand(name)) return true;
  const missing = `${name} not found (install ${opts.install ?? name})`;
  if (process.env.CI === 'true') throw new Error(`${missing}: CI=true, and ${tests} must run in CI`);
  console.warn(`skipping ${tests}: ${missing}`);
  return false;
}
