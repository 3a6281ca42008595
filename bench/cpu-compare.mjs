#!/usr/bin/env node
/**
 * CPU time of the same work in two built checkouts (this one and BEFORE), interleaved in one run:
 * a change compared with the tree before it. CPU time (utime + stime from /proc) moves far less
 * with machine load than wall time does, so the comparison holds on a busy machine.
 *
 *   1. `dsk --version`                          CPU ms per run
 *   2. `dsk keys list --json` over 10,000 keys  CPU ms per run
 *   3. `dsk serve`, bearer key and signed requests through the stub upstream: CPU µs per request
 *
 *   npm run build && node bench/cpu-compare.mjs BEFORE_DIR [--rounds 5] [--requests 5000]
 * BEFORE_DIR is another checkout with node_modules and dist/ built (e.g. a git worktree).
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const AFTER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BEFORE = path.resolve(process.argv[2] ?? '');
if (!process.argv[2] || !fs.existsSync(path.join(BEFORE, 'bin', 'dsk.js'))) {
  console.error('usage: node bench/cpu-compare.mjs BEFORE_DIR [--rounds N] [--requests N]');
  process.exit(2);
}
const arg = (n, d) => (process.argv.includes(`--${n}`) ? Number(process.argv[process.argv.indexOf(`--${n}`) + 1]) : d);
const ROUNDS = arg('rounds', 5);
const N = arg('requests', 5000);
const CONNECTIONS = 10;
const TREES = { before: BEFORE, after: AFTER };

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-cpu-'));
fs.chmodSync(tmp, 0o700);
const pass = [1, 2].map((i) => {
  const f = path.join(tmp, `p${i}`);
  fs.writeFileSync(f, `bench-custodian-${i}-${crypto.randomBytes(6).toString('hex')}\n`, { mode: 0o600 });
  return f;
});
const envFor = (home) => ({ ...process.env, NO_COLOR: '1', DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':') });
const dsk = (tree, home, args) => {
  const r = spawnSync(process.execPath, [path.join(TREES[tree], 'bin', 'dsk.js'), ...args], { env: envFor(home), encoding: 'utf8', maxBuffer: 1 << 28 });
  if (r.status !== 0) throw new Error(`${tree}: dsk ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};
/** CPU ms of one child process, from its rusage (python3 reads RUSAGE_CHILDREN around the run). */
function cpuOfRun(tree, home, args) {
  const py = `import resource,subprocess,sys
b=resource.getrusage(resource.RUSAGE_CHILDREN)
subprocess.run(sys.argv[1:],stdout=subprocess.DEVNULL,check=True)
a=resource.getrusage(resource.RUSAGE_CHILDREN)
print((a.ru_utime-b.ru_utime+a.ru_stime-b.ru_stime)*1000)`;
  const r = spawnSync('python3', ['-c', py, process.execPath, path.join(TREES[tree], 'bin', 'dsk.js'), ...args], { env: envFor(home), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number(r.stdout);
}
const procCpuMs = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // CLK_TCK = 100
};
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// One home per tree, each made by its own dsk (the newer one may migrate an older schema).
const homes = {};
for (const tree of ['before', 'after']) {
  const home = path.join(tmp, `home-${tree}`);
  dsk(tree, home, ['init', '--shares', '2', '--threshold', '2', ...pass.flatMap((p) => ['--passphrase-file', p])]);
  homes[tree] = home;
}
// 10,000 key rows shaped like real ones, inserted with SQLite directly (deriving them would take
// minutes of PBKDF2 and measure nothing about listing).
const { default: Database } = await import(path.join(AFTER, 'node_modules', 'better-sqlite3', 'lib', 'index.js'));
for (const home of Object.values(homes)) {
  const db = new Database(path.join(home, 'keys.db'));
  const ins = db.prepare(`INSERT INTO keys (id, name, owner, role, status, key_hash, salt, secret_sealed, created_at, expires_at, rotate_every_ms, max_uses, use_count, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)`);
  const now = Date.now();
  db.transaction(() => {
    for (let i = 0; i < 10_000; i++) ins.run(crypto.randomBytes(6).toString('hex'), `service-${i}`, `team-${i % 50}`, ['admin', 'developer', 'auditor', 'automation'][i % 4], 'active', crypto.randomBytes(32).toString('hex'), crypto.randomBytes(16).toString('hex'), crypto.randomBytes(76), now - i, null, 90 * 86_400_000, 100_000, 0, now);
  })();
  db.close();
}
const keys = {};
for (const tree of ['before', 'after']) keys[tree] = JSON.parse(dsk(tree, homes[tree], ['keygen', '--name', 'bench', '--role', 'developer', '--json']));

const res = { before: { version: [], list: [], bearer: [], signed: [] }, after: { version: [], list: [], bearer: [], signed: [] } };
for (const tree of ['before', 'after']) cpuOfRun(tree, homes[tree], ['keys', 'list', '--json']); // warm caches, migrate

const { signHeaders } = await import(path.join(AFTER, 'dist', 'gateway', 'signature.js'));
const { startStubUpstream } = await import(path.join(AFTER, 'dist', 'gateway', 'stub-upstream.js'));
const stub = await startStubUpstream({ record: false });
const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
const body = JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hi' }] });
function one(url, key, signed) {
  const headers = signed
    ? { ...signHeaders({ apiKey: key.api_key, apiSecret: key.api_secret, keyId: key.id, method: 'POST', path: '/v1/chat/completions', body }), 'content-type': 'application/json' }
    : { authorization: `Bearer ${key.api_key}`, 'content-type': 'application/json' };
  return new Promise((resolve, reject) => {
    const r = http.request(url + '/v1/chat/completions', { method: 'POST', headers, agent }, (s) => {
      s.resume();
      s.on('end', () => (s.statusCode === 200 ? resolve() : reject(new Error(`status ${s.statusCode}`))));
    });
    r.on('error', reject);
    r.end(body);
  });
}
async function load(url, key, signed, n) {
  let i = 0;
  await Promise.all(Array.from({ length: CONNECTIONS }, async () => { while (i++ < n) await one(url, key, signed); }));
}

for (let round = 0; round < ROUNDS; round++) {
  for (const tree of ['before', 'after']) {
    res[tree].version.push(cpuOfRun(tree, homes[tree], ['--version']));
    res[tree].list.push(cpuOfRun(tree, homes[tree], ['keys', 'list', '--json']));
    const p = spawn(process.execPath, [path.join(TREES[tree], 'bin', 'dsk.js'), 'serve', '--upstream', stub.url, '--listen', '127.0.0.1:0', '--rps', '100000000', '--burst', '100000000', '--json'], { env: envFor(homes[tree]), stdio: ['ignore', 'pipe', 'pipe'] });
    const url = await new Promise((resolve, reject) => {
      let out = '';
      p.stdout.on('data', (d) => {
        out += d;
        const m = /"url":\s*"([^"]+)"/.exec(out);
        if (m) resolve(m[1]);
      });
      p.on('exit', (c) => reject(new Error(`${tree}: dsk serve exited ${c}`)));
    });
    for (const signed of [false, true]) {
      await load(url, keys[tree], signed, 500); // warm-up
      const c0 = procCpuMs(p.pid);
      await load(url, keys[tree], signed, N);
      res[tree][signed ? 'signed' : 'bearer'].push(((procCpuMs(p.pid) - c0) / N) * 1000);
    }
    p.kill('SIGTERM');
    await new Promise((r) => p.once('exit', r));
  }
}
await stub.close();
agent.destroy();
fs.rmSync(tmp, { recursive: true, force: true });

console.log(`\n## CPU time, before vs after (node ${process.version}, ${os.cpus().length} CPUs, load ${os.loadavg()[0].toFixed(2)}, ${ROUNDS} rounds, medians)\n`);
console.log('| measurement | before | after | after ÷ before |');
console.log('|---|---|---|---|');
const line = (name, k, unit) => {
  const b = median(res.before[k]);
  const a = median(res.after[k]);
  console.log(`| ${name} | ${b.toFixed(0)} ${unit} | ${a.toFixed(0)} ${unit} | ${(a / b).toFixed(2)} |`);
};
line('dsk --version', 'version', 'ms');
line('dsk keys list --json (10,000 keys)', 'list', 'ms');
line('dsk serve, bearer key, per request', 'bearer', 'µs');
line('dsk serve, signed request, per request', 'signed', 'µs');
process.exit(0);
