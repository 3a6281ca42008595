/**
 * The published package, as a user gets it: `npm pack` (its prepack script cleans dist/ and
 * builds), then `npm install -g` of the tarball into a temporary prefix, then the installed `dsk`
 * binary and the library (`import … from 'dsk'`, 'dsk/client') used from there.
 *
 * The pack runs in a copy of the build inputs, not in this worktree: prepack deletes dist/, which
 * the other test files are running from at the same time. The global install compiles the native
 * dependencies (better-sqlite3, pkcs11js), about a minute on an idle machine; it needs the npm
 * registry or the cache `npm ci` filled (--prefer-offline), nothing else.
 */
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../src/domain/derivation.js';
import { passphraseFiles, ROOT, tmpDir } from './helpers.js';

const INSTALL_TIMEOUT_MS = 15 * 60_000;
const TRACER = path.join(ROOT, 'test', 'fixtures', 'trace-loads.mjs');

function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}) {
  // Neither a home from the environment nor the settings an outer `npm test` exports (its prefix).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('DSK_') && !/^npm_/i.test(k)));
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: INSTALL_TIMEOUT_MS, ...opts, env: { ...env, NO_COLOR: '1', ...opts.env } });
  const out = { code: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
  if (r.error) throw r.error;
  return out;
}

function ok(r: { code: number | null; stdout: string; stderr: string }, what: string) {
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string; files: string[]; main: string; types: string; exports: Record<string, unknown> };
let dir: string;
let prefix: string;
let installed: string;
let dskBin: string;
let tarball: string;

beforeAll(() => {
  dir = tmpDir('dsk-pack-');
  // The build inputs and every path the package lists except dist/, which prepack builds afresh;
  // node_modules is shared (the build reads typescript and the type packages from it).
  const copy = path.join(dir, 'source');
  const inputs = ['package.json', 'package-lock.json', 'tsconfig.json', 'src', ...pkg.files.filter((f) => !f.startsWith('!') && f !== 'dist')];
  for (const f of new Set(inputs)) if (fs.existsSync(path.join(ROOT, f))) fs.cpSync(path.join(ROOT, f), path.join(copy, f), { recursive: true });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(copy, 'node_modules'));

  const packed = ok(run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: copy }), 'npm pack');
  tarball = path.join(dir, (JSON.parse(packed.slice(packed.indexOf('['))) as { filename: string }[])[0].filename);

  prefix = path.join(dir, 'prefix');
  ok(run('npm', ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: dir }), 'npm install -g');
  installed = path.join(prefix, 'lib', 'node_modules', 'dsk');
  dskBin = path.join(prefix, 'bin', 'dsk');
}, INSTALL_TIMEOUT_MS);

// The installed package with its compiled native modules is tens of megabytes.
afterAll(() => {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** Runs the installed binary in a temporary home, away from this worktree. */
const dsk = (args: string[], env: NodeJS.ProcessEnv = {}) => run(dskBin, args, { cwd: dir, env });

/** Runs an ES module snippet from the prefix's lib/, where `import 'dsk'` resolves to the installed package. */
const node = (code: string, args: string[] = [], nodeArgs: string[] = [], env: NodeJS.ProcessEnv = {}) =>
  run(process.execPath, [...nodeArgs, '--input-type=module', '-e', code, ...args], { cwd: path.join(prefix, 'lib'), env });

describe('npm pack + npm install -g', () => {
  it('packs only the listed files: no sources, tests, source maps or build state', () => {
    const list = ok(run('tar', ['-tzf', tarball]), 'tar').split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
    expect(list).toContain('bin/dsk.js');
    expect(list).toContain('README.md');
    expect(list).toContain('dist/index.js');
    expect(list).toContain('dist/index.d.ts');
    expect(list).toContain('dist/gateway/client.d.ts');
    expect(list.filter((f) => !/^(dist|bin|docs)\/|^(README\.md|package\.json|LICENSE)$/.test(f))).toEqual([]);
    expect(list.filter((f) => f.endsWith('.map') || f.includes('tsbuildinfo') || (f.endsWith('.ts') && !f.endsWith('.d.ts')))).toEqual([]);
  });

  it('main, types and every export point at files the package contains', () => {
    const targets = [pkg.main, pkg.types, ...Object.values(pkg.exports).flatMap((e) => (typeof e === 'string' ? [e] : Object.values(e as Record<string, string>)))];
    for (const t of targets) expect(fs.existsSync(path.join(installed, t)), t).toBe(true);
  });

  it('installs no development dependency and no second CLI framework', () => {
    const deps = fs.readdirSync(path.join(installed, 'node_modules'));
    for (const dev of ['typescript', 'vitest', 'fast-check', 'openai', 'autocannon', 'yargs', 'qrcode']) expect(deps).not.toContain(dev);
  });

  it('the installed dsk answers --version and derive --help', () => {
    expect(ok(dsk(['--version']), 'dsk --version').trim()).toBe(pkg.version);
    const help = ok(dsk(['derive', '--help']), 'dsk derive --help');
    expect(help).toContain('--master-key-file');
    expect(help).toContain('Example');
  });

  it('the installed dsk initialises a home and issues a key; the library parses the key and derives as dsk derive does', async () => {
    const home = path.join(dir, 'home');
    const pass = passphraseFiles(dir, 2);
    ok(dsk(['init', '--home', home, '--shares', '2', '--threshold', '2', ...pass.flatMap((p) => ['--passphrase-file', p])]), 'dsk init');
    const issued = JSON.parse(ok(dsk(['keygen', '--name', 'packaged', '--role', 'developer', '--owner', 'qa', '--json'], { DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':') }), 'dsk keygen')) as { id: string; api_key: string };

    const mk = path.join(dir, 'mk.bin');
    const master = crypto.randomBytes(32);
    fs.writeFileSync(mk, master, { mode: 0o600 });
    const salt = '00112233445566778899aabbccddeeff';
    const derived = (JSON.parse(ok(dsk(['derive', '--master-key-file', mk, '--salt', salt, '--json']), 'dsk derive')) as { api_key: string }).api_key;
    expect(derived).toBe(await generateApiKey(master, Buffer.from(salt, 'hex')));

    const lib = JSON.parse(
      ok(
        node(
          `import fs from 'node:fs';
          import * as dsk from 'dsk';
          import * as client from 'dsk/client';
          const [key, mk, salt] = process.argv.slice(1);
          const parsed = dsk.parseApiKey(key);
          console.log(JSON.stringify({
            exports: Object.keys(dsk).sort(),
            client: Object.keys(client).sort(),
            parsed: parsed.ok && parsed.id,
            round_trip: parsed.ok && dsk.formatApiKey(parsed.id, parsed.secret) === key,
            tampered: dsk.parseApiKey(key.slice(0, -1) + (key.endsWith('A') ? 'B' : 'A')),
            derived: await dsk.generateApiKey(fs.readFileSync(mk), Buffer.from(salt, 'hex')),
            signed: Object.keys(client.signHeaders({ apiKey: key, apiSecret: 's', keyId: parsed.id, method: 'POST', path: '/v1/chat/completions', body: '{}' })).sort(),
          }));`,
          [issued.api_key, mk, salt],
        ),
        'import dsk',
      ),
    );
    expect(lib.exports).toEqual(['bodyHash', 'canonicalString', 'checksum', 'computeSignature', 'formatApiKey', 'generateApiKey', 'isKeyId', 'parseApiKey', 'signHeaders', 'signedFetch']);
    expect(lib.client).toEqual(['bodyHash', 'canonicalString', 'computeSignature', 'signHeaders', 'signedFetch']);
    expect(lib.parsed).toBe(issued.id);
    expect(lib.round_trip).toBe(true);
    expect(lib.tampered).toEqual({ ok: false, reason: 'BAD_CHECKSUM' });
    expect(lib.derived).toBe(derived);
    expect(lib.signed).toEqual(['Authorization', 'X-Nonce', 'X-Signature', 'X-Timestamp']);
  });

  it('importing the library loads no native module, no store and no CLI code', () => {
    const trace = path.join(dir, 'trace.txt');
    ok(node(`await import('dsk'); await import('dsk/client');`, [], ['--import', TRACER], { DSK_TRACE_LOADS: trace }), 'import dsk');
    const loaded = fs.readFileSync(trace, 'utf8').split('\n').filter((u) => u.includes('/node_modules/dsk/'));
    expect(loaded.some((u) => u.endsWith('/dist/index.js'))).toBe(true);
    expect(loaded.filter((u) => /\/node_modules\/dsk\/node_modules\/|\/dist\/(cli|store|app|master|audit)\//.test(u))).toEqual([]);
  });
});
