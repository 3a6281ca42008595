#!/usr/bin/env node
/**
 * Benchmark: `dsk rotate --due` over a large home, against the bound set by key derivation.
 *
 *   node bench/rotation.mjs [--keys 100000] [--due 10000]
 *
 * Populates a real home by direct SQL inserts (real sealed material from one issued key, reused;
 * rotation never opens an old key's material), then times the real CLI. Each successor costs one
 * PBKDF2-HMAC-SHA256 at 100,000 iterations, so the floor is
 *
 *   bound = due × (one derivation, measured here, same run) ÷ cores
 *
 * and the ratio wall ÷ bound says how much the rest (unseal, planning, SQLite commits, audit rows)
 * adds. Requires a build (npx tsc -p .).
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DSK = path.join(ROOT, 'bin', 'dsk.js');
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const KEYS = arg('keys', 100_000);
const DUE = arg('due', 10_000);
const DAY = 86_400_000;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-bench-rot-'));
fs.chmodSync(dir, 0o700);
const home = path.join(dir, 'home');
const pass = [1, 2].map((i) => {
  const f = path.join(dir, `p${i}`);
  fs.writeFileSync(f, `bench-custodian-${i}-${crypto.randomBytes(4).toString('hex')}\n`, { mode: 0o600 });
  return f;
});
const env = { ...process.env, DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':'), NO_COLOR: '1' };
/** Runs the CLI under sh so `times` reports its CPU (user + sys), which load on the box does not inflate. */
const dsk = (args) => {
  const out = path.join(dir, 'out.json');
  const t = process.hrtime.bigint();
  const r = spawnSync('/bin/sh', ['-c', '"$@" > "$OUT"; rc=$?; times >&2; exit $rc', 'sh', process.execPath, DSK, ...args], { env: { ...env, OUT: out }, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0) throw new Error(`dsk ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  const secs = (r.stderr.trim().split('\n').pop() ?? '').match(/(\d+)m([\d.]+)s/g) ?? [];
  const cpu = secs.reduce((a, x) => { const [, m, s2] = x.match(/(\d+)m([\d.]+)s/); return a + Number(m) * 60 + Number(s2); }, 0) * 1000;
  return { ms, cpu, out: fs.readFileSync(out, 'utf8') };
};

try {
  dsk(['init', '--shares', '2', '--threshold', '2', ...pass.flatMap((p) => ['--passphrase-file', p])]);
  const sample = JSON.parse(dsk(['keygen', '--name', 'sample', '--role', 'automation', '--json']).out);
  const db = new Database(path.join(home, 'keys.db'));
  const proto = db.prepare('SELECT salt, secret_sealed FROM keys WHERE id = ?').get(sample.id);
  db.prepare('DELETE FROM keys').run();
  const ins = db.prepare(
    `INSERT INTO keys (id, name, role, status, key_hash, salt, secret_sealed, created_at, rotate_every_ms, max_uses, updated_at)
     VALUES (?, ?, 'automation', 'active', ?, ?, ?, ?, ?, 100000, ?)`,
  );
  const now = Date.now();
  db.transaction(() => {
    for (let i = 0; i < KEYS; i++) {
      const created = i < DUE ? now - 100 * DAY : now - (i % 80) * DAY; // DUE keys past 90 d, the rest not
      ins.run(crypto.randomBytes(6).toString('hex'), `svc-${i}`, crypto.randomBytes(32).toString('hex'), proto.salt, proto.secret_sealed, created, 90 * DAY, created);
    }
  })();
  db.close();

  // The baseline, same run: one derivation exactly as rotation does it (PBKDF2 100k iterations).
  const times = [];
  for (let i = 0; i < 15; i++) {
    const t = process.hrtime.bigint();
    crypto.pbkdf2Sync(crypto.randomBytes(32), crypto.randomBytes(16), 100_000, 32, 'sha256');
    times.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  times.sort((a, b) => a - b);
  const one = times[Math.floor(times.length / 2)];
  const cores = os.availableParallelism();
  const bound = (DUE * one) / cores;
  // Second baseline: what the pool actually achieves right now (the box may be shared).
  const SAMPLE = Math.min(DUE, 200);
  const pbkdf2 = (await import('node:util')).promisify(crypto.pbkdf2);
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: SAMPLE }, () => pbkdf2(crypto.randomBytes(32), crypto.randomBytes(16), 100_000, 32, 'sha256')));
  const achievable = ((Number(process.hrtime.bigint() - t0) / 1e6) * DUE) / SAMPLE;

  const dry = dsk(['rotate', '--due', '--dry-run', '--json']);
  const dryN = JSON.parse(dry.out).actions.length;
  const run = dsk(['rotate', '--due', '--json']);
  const rotated = JSON.parse(run.out).actions.filter((a) => a.action === 'rotate').length;
  const again = dsk(['rotate', '--due', '--json']);
  const againN = JSON.parse(again.out).actions.length;
  if (rotated !== DUE || dryN !== DUE || againN !== 0) throw new Error(`expected ${DUE} rotations, got dry ${dryN}, run ${rotated}, rerun ${againN}`);

  const load = os.loadavg()[0].toFixed(1);
  console.log(`rotate --due: ${KEYS} keys, ${DUE} due, ${cores} cores, load average ${load}`);
  console.log(`  one derivation (PBKDF2 100k, median of 15)   ${one.toFixed(1)} ms`);
  console.log(`  bound = due × derivation ÷ cores             ${(bound / 1000).toFixed(1)} s`);
  console.log(`  raw parallel derivations now (${SAMPLE} sampled), × due  ${(achievable / 1000).toFixed(1)} s`);
  console.log(`  rotate --due (wall, whole CLI run)            ${(run.ms / 1000).toFixed(1)} s`);
  console.log(`  ratio wall ÷ bound                            ${(run.ms / bound).toFixed(2)}`);
  console.log(`  ratio wall ÷ raw parallel derivations         ${(run.ms / achievable).toFixed(2)}`);
  console.log(`  per rotated key                               ${(run.ms / DUE).toFixed(1)} ms`);
  console.log(`  CPU of the run (user+sys) ÷ (due × derivation) ${(run.cpu / (DUE * one)).toFixed(2)}   (${(run.cpu / 1000).toFixed(1)} s CPU)`);
  console.log(`  rotate --due --dry-run (plan only)            ${(dry.ms / 1000).toFixed(2)} s`);
  console.log(`  rerun with nothing due (idempotent)           ${(again.ms / 1000).toFixed(2)} s`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
