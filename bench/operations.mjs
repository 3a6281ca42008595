#!/usr/bin/env node
/**
 * Day-two operations, each side by side with its baseline in the same run:
 *
 *   access log   `dsk serve --access-log-file F` vs `dsk serve` without it: saturation throughput
 *                and p99 with autocannon (50 connections), rounds interleaved (a home with one key)
 *   completion   `dsk __complete keys-live` (what a TAB on a key id costs) vs `node -e 0`, on a
 *                home with 10,000 keys
 *   doctor       `dsk doctor --json` vs `dsk status --json` (another read-only look at the home)
 *
 *   npm run build && node bench/operations.mjs [--duration 3] [--rounds 3] [--runs 10]
 */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import Database from 'better-sqlite3';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DSK = path.join(ROOT, 'bin', 'dsk.js');
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const DURATION = arg('duration', 3);
const ROUNDS = arg('rounds', 3);
const RUNS = arg('runs', 10);
const KEYS = 10_000;
const children = [];
process.on('exit', () => children.forEach((c) => c.exitCode === null && c.kill('SIGKILL')));

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-bench-ops-'));
fs.chmodSync(tmp, 0o700);
const home = path.join(tmp, 'home');
const pass = [1, 2].map((i) => {
  const f = path.join(tmp, `p${i}.pass`);
  fs.writeFileSync(f, `bench-passphrase-${i}-${crypto.randomBytes(6).toString('hex')}\n`, { mode: 0o600 });
  return f;
});
const env = { ...process.env, DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':') };
const run = (args) => {
  const r = spawnSync(process.execPath, [DSK, ...args], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dsk ${args[0]} failed: ${r.stderr}`);
  return r.stdout;
};
run(['init', '--shares', '2', '--threshold', '2', ...pass.flatMap((p) => ['--passphrase-file', p])]);
const key = JSON.parse(run(['keygen', '--name', 'bench', '--role', 'developer', '--json']));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ratio = (a, b) => (a / b).toFixed(2);

// --- gateways with and without the access log, behind the same stub upstream
function start(args, re) {
  const p = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(p);
  return new Promise((resolve, reject) => {
    let out = '';
    const on = (d) => {
      out += d;
      const m = re.exec(out);
      if (m) resolve(m.length > 2 ? m.slice(1) : m[1]);
    };
    p.stdout.on('data', on);
    p.stderr.on('data', on);
    p.on('exit', (c) => reject(new Error(`exited ${c}: ${out}`)));
  });
}
const stubPort = await start(['-e', `import(${JSON.stringify(path.join(ROOT, 'dist/gateway/stub-upstream.js'))}).then(m => m.startStubUpstream({ record: false })).then(s => console.log('port ' + s.port))`], /port (\d+)/);
const serveArgs = [DSK, 'serve', '--upstream', `http://127.0.0.1:${stubPort}`, '--listen', '127.0.0.1:0', '--rps', '100000000', '--burst', '100000000', '--max-concurrent', '100000', '--json'];
const logFile = path.join(tmp, 'access.log');
const STARTED = /"url":\s*"([^"]+)"[\s\S]*"pid":\s*(\d+)/;
const started = ([url, pid]) => ({ url, pid: Number(pid) });
const gateways = {
  plain: started(await start(serveArgs, STARTED)),
  logged: started(await start([...serveArgs, '--access-log', 'json', '--access-log-file', logFile], STARTED)),
};
const urls = { plain: gateways.plain.url, logged: gateways.logged.url };
/** user + system CPU of a process so far, in ms (/proc/PID/stat fields 14 and 15, clock ticks of 10 ms). */
const cpuMs = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
};
const body = JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hello' }] });
const cannon = (url, o = {}) =>
  new Promise((resolve, reject) =>
    autocannon({ url: `${url}/v1/chat/completions`, method: 'POST', body, headers: { 'content-type': 'application/json', authorization: `Bearer ${key.api_key}` }, connections: 50, duration: DURATION, ...o }, (e, r) => (e ? reject(e) : resolve(r))),
  );
for (const u of Object.values(urls)) await cannon(u, { connections: 10, duration: 1 });
const samples = { plain: [], logged: [] };
for (let r = 0; r < ROUNDS; r++)
  for (const n of r % 2 ? ['logged', 'plain'] : ['plain', 'logged']) {
    const res = await cannon(urls[n]);
    samples[n].push({ rps: res.requests.average, p99: res.latency.p99, errors: res.errors + res.non2xx });
  }
// CPU per request: a fixed number of requests, the gateway's own CPU time read from /proc (robust
// against other load on the machine, which only stretches wall-clock figures).
const FIXED = 5000;
const cpu = { plain: [], logged: [] };
for (let r = 0; r < ROUNDS; r++)
  for (const n of r % 2 ? ['logged', 'plain'] : ['plain', 'logged']) {
    const before = cpuMs(gateways[n].pid);
    await cannon(urls[n], { connections: 10, amount: FIXED, duration: 1000 });
    cpu[n].push(((cpuMs(gateways[n].pid) - before) * 1000) / FIXED);
  }
const cpuPer = { plain: median(cpu.plain), logged: median(cpu.logged) };
const gw = Object.fromEntries(Object.entries(samples).map(([n, s]) => [n, { rps: median(s.map((x) => x.rps)), p99: median(s.map((x) => x.p99)), errors: s.reduce((a, x) => a + x.errors, 0) }]));
const logged = fs.readFileSync(logFile, 'utf8').split('\n').filter(Boolean).length;

for (const c of children) c.kill('SIGTERM');

// Rows shaped like real ones, inserted directly (deriving 10,000 keys would measure PBKDF2).
const db = new Database(path.join(home, 'keys.db'));
const insert = db.prepare(
  `INSERT INTO keys (id, name, owner, role, status, key_hash, salt, secret_sealed, created_at, expires_at, rotate_every_ms, max_uses, use_count, updated_at)
   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
);
const now = Date.now();
db.transaction(() => {
  for (let i = 0; i < KEYS; i++)
    insert.run(crypto.randomBytes(6).toString('hex'), `service-${i}`, `team-${i % 50}`, 'developer', i % 5 ? 'active' : 'retired', crypto.randomBytes(32).toString('hex'), crypto.randomBytes(16).toString('hex'), crypto.randomBytes(76), now - i * 60_000, null, 90 * 86_400_000, 100_000, 0, now);
})();
db.close();

// --- spawned commands, interleaved A, B, A, B, …
function timeSpawn(argv) {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0 && argv.includes('status')) throw new Error(r.stderr.toString());
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, out: r.stdout.toString() };
}
function sideBySide(a, b) {
  const ta = [];
  const tb = [];
  for (let i = 0; i < RUNS; i++) {
    ta.push(timeSpawn(a).ms);
    tb.push(timeSpawn(b).ms);
  }
  return { a: median(ta), b: median(tb) };
}
const live = timeSpawn([DSK, '__complete', 'keys-live']).out.trim().split('\n').length;
const complete = sideBySide([DSK, '__complete', 'keys-live'], ['-e', '0']);
const doctor = sideBySide([DSK, 'doctor', '--json'], [DSK, 'status', '--json']);

console.log(`node ${process.version}, ${os.cpus().length} CPUs, load average ${os.loadavg()[0].toFixed(1)}; ${KEYS} keys (${live} live)\n`);
console.log('| measurement | dsk | baseline | ratio |');
console.log('|---|---|---|---|');
console.log(`| gateway saturation with --access-log-file | ${Math.round(gw.logged.rps)} req/s, p99 ${gw.logged.p99} ms | ${Math.round(gw.plain.rps)} req/s, p99 ${gw.plain.p99} ms (no access log) | ${ratio(gw.logged.rps, gw.plain.rps)} |`);
console.log(`| gateway CPU per request with --access-log-file (${FIXED} requests) | ${cpuPer.logged.toFixed(0)} µs | ${cpuPer.plain.toFixed(0)} µs (no access log) | ${ratio(cpuPer.logged, cpuPer.plain)} |`);
console.log(`| \`dsk __complete keys-live\` (${live} ids) | ${complete.a.toFixed(1)} ms | ${complete.b.toFixed(1)} ms (\`node -e 0\`) | ${ratio(complete.a, complete.b)} |`);
console.log(`| \`dsk doctor --json\` | ${doctor.a.toFixed(1)} ms | ${doctor.b.toFixed(1)} ms (\`dsk status --json\`) | ${ratio(doctor.a, doctor.b)} |`);
console.log(`\naccess lines written: ${logged}; failed requests: plain ${gw.plain.errors}, logged ${gw.logged.errors}`);
fs.rmSync(tmp, { recursive: true, force: true });
