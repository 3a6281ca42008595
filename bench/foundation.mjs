#!/usr/bin/env node
/**
 * Foundation benchmarks, each side by side with a baseline measured in the same run:
 *
 *   1. `dsk --version`               vs `node -e 0`          (start-up; target: within 2x)
 *   2. `dsk keys list --json`, 10,000 keys  vs `node -e 0`  (start-up + SQLite + JSON)
 *   3. in-process key verification (parseApiKey + SHA-256 + Map lookup + constant-time compare,
 *      i.e. verifyKeyText)          vs a bare SHA-256 + Map lookup loop (target: >= 1/3 the rate)
 *
 * Spawned runs are interleaved (A, B, A, B, …) so load from other processes hits both sides alike.
 * Usage: npm run build && node bench/foundation.mjs [--runs N] [--keys N] [--verify N]
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DSK = path.join(ROOT, 'bin', 'dsk.js');
const arg = (name, dflt) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const RUNS = arg('runs', 20);
const KEYS = arg('keys', 10_000);
const VERIFY = arg('verify', 200_000);

if (!fs.existsSync(path.join(ROOT, 'dist', 'cli', 'main.js'))) {
  console.error('bench: dist/ is missing; run `npm run build` first');
  process.exit(1);
}
const { formatApiKey } = await import(path.join(ROOT, 'dist', 'domain', 'key-text.js'));
const { verifyKeyText } = await import(path.join(ROOT, 'dist', 'app', 'keys.js'));
const { sha256Hex } = await import(path.join(ROOT, 'dist', 'kernel', 'crypto.js'));
const { default: Database } = await import('better-sqlite3');

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const ms = (ns) => Number(ns) / 1e6;

function timeSpawn(argv, env) {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, argv, { env: { ...process.env, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 28 });
  const elapsed = ms(process.hrtime.bigint() - t);
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { elapsed, stdout: r.stdout };
}

/** Interleaves runs of a and b; returns median milliseconds of each. */
function sideBySide(a, b, runs) {
  timeSpawn(a.argv, a.env); // warm the file cache
  timeSpawn(b.argv, b.env);
  const ta = [];
  const tb = [];
  for (let i = 0; i < runs; i++) {
    ta.push(timeSpawn(a.argv, a.env).elapsed);
    tb.push(timeSpawn(b.argv, b.env).elapsed);
  }
  return { a: median(ta), b: median(tb) };
}

const results = [];
const row = (name, value, baseline, baseName, ratio, target) => results.push({ name, value, baseline, baseName, ratio, target });

// 1. dsk --version vs node -e 0
{
  const r = sideBySide({ argv: [DSK, '--version'] }, { argv: ['-e', '0'] }, RUNS);
  row('dsk --version', `${r.a.toFixed(1)} ms`, `${r.b.toFixed(1)} ms`, 'node -e 0', r.a / r.b, 'within 2x (ratio <= 2.0)');
}

// 2. dsk keys list --json over 10,000 keys vs node -e 0
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-bench-'));
try {
  fs.chmodSync(tmp, 0o700);
  const home = path.join(tmp, 'home');
  const pass = [1, 2].map((i) => {
    const f = path.join(tmp, `p${i}`);
    fs.writeFileSync(f, `bench-custodian-${i}-${crypto.randomBytes(6).toString('hex')}\n`, { mode: 0o600 });
    return f;
  });
  timeSpawn([DSK, 'init', '--home', home, '--shares', '2', '--threshold', '2', ...pass.flatMap((p) => ['--passphrase-file', p])]);
  // Rows shaped like real ones (hash, salt, sealed secret), inserted directly: deriving 10,000 real
  // keys would take minutes of PBKDF2 and measure nothing about listing.
  const db = new Database(path.join(home, 'keys.db'));
  const insert = db.prepare(
    `INSERT INTO keys (id, name, owner, role, status, key_hash, salt, secret_sealed, created_at, expires_at, rotate_every_ms, max_uses, use_count, updated_at)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const roles = ['admin', 'developer', 'auditor', 'automation'];
  const statuses = ['active', 'active', 'active', 'grace', 'revoked', 'retired'];
  const now = Date.now();
  db.transaction(() => {
    for (let i = 0; i < KEYS; i++) {
      const created = now - i * 60_000;
      insert.run(crypto.randomBytes(6).toString('hex'), `service-${i}`, `team-${i % 50}`, roles[i % 4], statuses[i % 6], crypto.randomBytes(32).toString('hex'), crypto.randomBytes(16).toString('hex'), crypto.randomBytes(12 + 48 + 16), created, i % 3 ? created + 30 * 86_400_000 : null, 90 * 86_400_000, 100_000, i % 1000, created);
    }
  })();
  db.close();
  const env = { DSK_HOME: home };
  const listed = JSON.parse(timeSpawn([DSK, 'keys', 'list', '--json'], env).stdout.toString());
  if (listed.length !== KEYS) throw new Error(`expected ${KEYS} keys listed, got ${listed.length}`);
  const r = sideBySide({ argv: [DSK, 'keys', 'list', '--json'], env }, { argv: ['-e', '0'] }, Math.max(5, Math.floor(RUNS / 2)));
  row(`dsk keys list --json (${KEYS} keys)`, `${r.a.toFixed(1)} ms`, `${r.b.toFixed(1)} ms`, 'node -e 0', r.a / r.b, 'reported');
  const t = sideBySide({ argv: [DSK, 'keys', 'list'], env }, { argv: ['-e', '0'] }, Math.max(5, Math.floor(RUNS / 2)));
  row(`dsk keys list, table (${KEYS} keys)`, `${t.a.toFixed(1)} ms`, `${t.b.toFixed(1)} ms`, 'node -e 0', t.a / t.b, 'reported');
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}

// 3. In-process verification by hash vs a bare SHA-256 + Map lookup loop
{
  const N = 10_000;
  const texts = [];
  const byId = new Map();
  const byHash = new Map();
  for (let i = 0; i < N; i++) {
    const id = crypto.randomBytes(6).toString('hex');
    const text = formatApiKey(id, crypto.randomBytes(32).toString('hex'));
    const keyRow = { id, key_hash: sha256Hex(text), status: 'active', expires_at: null, grace_until: null };
    texts.push(text);
    byId.set(id, keyRow);
    byHash.set(keyRow.key_hash, keyRow);
  }
  const now = Date.now();
  const lookup = (id) => byId.get(id);
  const verifyLoop = (n) => {
    let ok = 0;
    for (let i = 0; i < n; i++) if (verifyKeyText(texts[i % N], lookup, now).ok) ok++;
    return ok;
  };
  const bareLoop = (n) => {
    let ok = 0;
    for (let i = 0; i < n; i++) if (byHash.get(crypto.createHash('sha256').update(texts[i % N]).digest('hex'))) ok++;
    return ok;
  };
  const rate = (fn, n) => {
    const t = process.hrtime.bigint();
    if (fn(n) !== n) throw new Error('a valid key was not accepted');
    return n / (ms(process.hrtime.bigint() - t) / 1000);
  };
  rate(verifyLoop, 20_000); // warm up the JIT on both
  rate(bareLoop, 20_000);
  const rv = [];
  const rb = [];
  for (let round = 0; round < 5; round++) {
    rv.push(rate(verifyLoop, VERIFY / 5));
    rb.push(rate(bareLoop, VERIFY / 5));
  }
  const v = median(rv);
  const b = median(rb);
  row('verifyKeyText (in-process)', `${Math.round(v).toLocaleString('en-US')} /s`, `${Math.round(b).toLocaleString('en-US')} /s`, 'bare sha256+Map loop', v / b, '>= 0.33 of baseline rate');
}

console.log(`\n## Foundation (node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)})\n`);
console.log('| measurement | dsk | baseline | ratio | target |');
console.log('|---|---|---|---|---|');
for (const r of results) console.log(`| ${r.name} | ${r.value} | ${r.baseline} (${r.baseName}) | ${r.ratio.toFixed(2)} | ${r.target} |`);
const version = results[0].ratio;
const verify = results[results.length - 1].ratio;
console.log(`\n--version ratio ${version.toFixed(2)} (target <= 2.0): ${version <= 2 ? 'met' : 'NOT met'}`);
console.log(`verification rate ratio ${verify.toFixed(2)} (target >= 0.33): ${verify >= 1 / 3 ? 'met' : 'NOT met'}`);
