#!/usr/bin/env node
/**
 * Scale-out benchmark, all in one run, side by side on loopback:
 *   direct      the stub upstream alone (baseline)
 *   nodeproxy   a minimal node:http reverse proxy, no auth (what one Node hop costs)
 *   nginx       nginx reverse proxy, no auth, one worker (only when nginx is installed)
 *   gw1         one `dsk serve` process
 *   gw2         two `dsk serve` processes on one home, the load split between them
 *   workers2    one `dsk serve --workers 2` (two workers behind one port)
 * each at a fixed 1,000 requests/s (latency added) and at saturation (throughput); then
 * revocation propagation across two replicas (commit → refused by each, p50/p99) and the cost of a
 * shared nonce check (store.nonces.claim on SQLite against the in-memory cache). With PostgreSQL
 * answering at 127.0.0.1:5432, gw1-pg, gw2-pg and workers2-pg repeat the three on a PostgreSQL home.
 *
 *   npm run build && node bench/replicas.mjs [--duration 2] [--rounds 1] [--connections 40] [--revocations 40]
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DSK = path.join(ROOT, 'bin', 'dsk.js');
const dist = (p) => import(path.join(ROOT, 'dist', p));
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const DURATION = arg('duration', 2);
const ROUNDS = arg('rounds', 1);
const CONNECTIONS = arg('connections', 40);
const REVOCATIONS = arg('revocations', 40);
const RATE = 1000;
const children = [];
const cleanup = () => children.forEach((c) => c.exitCode === null && c.kill('SIGTERM'));
process.on('exit', cleanup);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-bench-rep-'));
fs.chmodSync(tmp, 0o700);
const home = path.join(tmp, 'home');
const pass = [1, 2].map((i) => {
  const f = path.join(tmp, `p${i}.pass`);
  fs.writeFileSync(f, `bench-passphrase-${i}-${Math.random()}\n`, { mode: 0o600 });
  return f;
});
const env = { ...process.env, DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':') };
const dsk = (args) => {
  const r = spawnSync(process.execPath, [DSK, ...args], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dsk ${args[0]} failed: ${r.stderr}`);
  return r.stdout;
};
dsk(['init', '--shares', '2', '--threshold', '2', ...pass.flatMap((p) => ['--passphrase-file', p])]);
const key = JSON.parse(dsk(['keygen', '--name', 'bench', '--role', 'developer', '--json']));

function start(cmd, args, re) {
  const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(p);
  return new Promise((resolve, reject) => {
    let out = '';
    const on = (d) => {
      out += d;
      const m = re.exec(out);
      if (m) resolve(m[1]);
    };
    p.stdout.on('data', on);
    p.stderr.on('data', on);
    p.on('exit', (c) => reject(new Error(`${cmd} exited ${c}: ${out}`)));
  });
}

const stubPort = await start(process.execPath, ['-e', `import(${JSON.stringify(path.join(ROOT, 'dist/gateway/stub-upstream.js'))}).then(m => m.startStubUpstream({ record: false })).then(s => console.log('port ' + s.port))`], /port (\d+)/);
const upstream = `http://127.0.0.1:${stubPort}`;
const serve = (extra = []) => start(process.execPath, [DSK, 'serve', '--upstream', upstream, '--listen', '127.0.0.1:0', '--rps', '100000000', '--burst', '100000000', '--max-concurrent', '100000', '--max-failures', '100000000', '--json', ...extra], /"url":\s*"([^"]+)"/);
const [gwA, gwB, workers] = [await serve(), await serve(), await serve(['--workers', '2'])];

// The same three on a second home whose store is PostgreSQL (a fresh database on 127.0.0.1:5432),
// when one answers.
let pgTargets = {};
let pgNote = '';
const pgDb = `dsk_bench_${process.pid}`;
if (spawnSync('pg_isready', ['-h', '127.0.0.1', '-p', '5432']).status === 0) {
  spawnSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-c', `CREATE DATABASE ${pgDb}`], { encoding: 'utf8' });
  const pgHome = path.join(tmp, 'pghome');
  const r = spawnSync(process.execPath, [DSK, 'init', '--home', pgHome, '--shares', '2', '--threshold', '2', '--store', `postgres://postgres@127.0.0.1:5432/${pgDb}`, ...pass.flatMap((p) => ['--passphrase-file', p])], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`init on PostgreSQL failed: ${r.stderr}`);
  const pgEnv = { ...env, DSK_HOME: pgHome };
  const pgKey = JSON.parse(spawnSync(process.execPath, [DSK, 'keygen', '--name', 'bench', '--role', 'developer', '--json'], { env: pgEnv, encoding: 'utf8' }).stdout);
  const servePg = (extra = []) => {
    const p = spawn(process.execPath, [DSK, 'serve', '--upstream', upstream, '--listen', '127.0.0.1:0', '--rps', '100000000', '--burst', '100000000', '--max-concurrent', '100000', '--max-failures', '100000000', '--json', ...extra], { env: pgEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(p);
    return new Promise((resolve, reject) => {
      let out = '';
      p.stdout.on('data', (d) => {
        out += d;
        const m = /"url":\s*"([^"]+)"/.exec(out);
        if (m) resolve(m[1]);
      });
      p.on('exit', (c) => reject(new Error(`dsk serve (PostgreSQL) exited ${c}`)));
    });
  };
  const [a, b, w] = [await servePg(), await servePg(), await servePg(['--workers', '2'])];
  pgTargets = { 'gw1-pg': { urls: [a], key: pgKey }, 'gw2-pg': { urls: [a, b], key: pgKey }, 'workers2-pg': { urls: [w], key: pgKey } };
} else pgNote = 'PostgreSQL not answering at 127.0.0.1:5432: the -pg rows are skipped';
const progress = (m) => process.stderr.write(`bench: ${m}\n`);
progress('gateways up');

const NODE_PROXY = `
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
http.createServer({ noDelay: true }, (req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = Buffer.concat(chunks);
    const up = http.request({ hostname: '127.0.0.1', port: ${stubPort}, method: req.method, path: req.url, headers: { 'content-type': 'application/json', 'content-length': body.length }, agent }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.end(body);
  });
}).listen(0, '127.0.0.1', function () { console.log('port ' + this.address().port); });`;
const nodeProxy = `http://127.0.0.1:${await start(process.execPath, ['-e', NODE_PROXY], /port (\d+)/)}`;

let nginx = null;
if (spawnSync('sh', ['-c', 'command -v nginx']).status === 0) {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const conf = path.join(tmp, 'nginx.conf');
  fs.writeFileSync(
    conf,
    `worker_processes 1; daemon off; pid ${tmp}/nginx.pid; error_log ${tmp}/nginx.err warn;
events { worker_connections 4096; }
http { access_log off; client_body_temp_path ${tmp}/body; proxy_temp_path ${tmp}/proxy; fastcgi_temp_path ${tmp}/fcgi; uwsgi_temp_path ${tmp}/uwsgi; scgi_temp_path ${tmp}/scgi;
  upstream up { server 127.0.0.1:${stubPort}; keepalive 64; }
  server { listen 127.0.0.1:${port}; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; } } }\n`,
  );
  children.push(spawn('nginx', ['-c', conf, '-p', tmp], { stdio: 'ignore' }));
  for (let i = 0; i < 50 && !nginx; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/v1/models`);
      nginx = `http://127.0.0.1:${port}`;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

const PATH = '/v1/chat/completions';
const body = JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hello' }] });
const headersOf = (k) => ({ 'content-type': 'application/json', authorization: `Bearer ${k.api_key}` });
const TARGETS = Object.fromEntries(
  Object.entries({ direct: [upstream], nodeproxy: [nodeProxy], ...(nginx ? { nginx: [nginx] } : {}), gw1: [gwA], gw2: [gwA, gwB], workers2: [workers] })
    .map(([n, urls]) => [n, { urls, key }])
    .concat(Object.entries(pgTargets)),
);

/** Open loop at RATE requests/s spread over `urls`, each timed with hrtime; p50/p99 in ms. */
async function fixedRate({ urls, key: k }, seconds) {
  const headers = headersOf(k);
  const agents = urls.map(() => new http.Agent({ keepAlive: true, maxSockets: 64 }));
  const lat = [];
  let failed = 0;
  let n = 0;
  const one = () =>
    new Promise((resolve) => {
      const i = n++ % urls.length;
      const u = new URL(urls[i]);
      const t0 = process.hrtime.bigint();
      const req = http.request({ hostname: u.hostname, port: u.port, path: PATH, method: 'POST', agent: agents[i], headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) failed++;
          lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
          resolve();
        });
      });
      req.on('error', () => (failed++, resolve()));
      req.end(body);
    });
  const pending = [];
  const start = performance.now();
  for (let tick = 0; tick < seconds * 100; tick++) {
    const wait = start + tick * 10 - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    for (let i = 0; i < RATE / 100; i++) pending.push(one());
  }
  await Promise.all(pending);
  agents.forEach((a) => a.destroy());
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  return { p50: q(0.5), p99: q(0.99), failed };
}

/** Saturation: one autocannon per URL at once, connections split; requests/s summed. */
async function saturate({ urls, key: k }) {
  const headers = headersOf(k);
  const runs = await Promise.all(
    urls.map(
      (u) =>
        new Promise((resolve, reject) =>
          autocannon({ url: u + PATH, method: 'POST', body, headers, connections: Math.max(1, Math.floor(CONNECTIONS / urls.length)), duration: DURATION }, (e, r) => (e ? reject(e) : resolve(r))),
        ),
    ),
  );
  return { rps: runs.reduce((a, r) => a + r.requests.average, 0), p50: Math.max(...runs.map((r) => r.latency.p50)), failed: runs.reduce((a, r) => a + r.non2xx + r.errors, 0) };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const names = Object.keys(TARGETS);
const samples = Object.fromEntries(names.map((n) => [n, []]));
for (const n of names) await saturate(TARGETS[n]).catch(() => null); // warm-up
for (let round = 0; round < ROUNDS; round++)
  for (const n of names) {
    progress(n);
    const f = await fixedRate(TARGETS[n], DURATION);
    const s = await saturate(TARGETS[n]);
    samples[n].push({ p50: f.p50, p99: f.p99, rps: s.rps, sat_p50: s.p50, failed: f.failed + s.failed });
  }
const res = Object.fromEntries(names.map((n) => [n, Object.fromEntries(Object.keys(samples[n][0]).map((k) => [k, median(samples[n].map((x) => x[k]))]))]));

progress('revocations');
// Revocation propagation: revoke in this process (one store commit), then poll both replicas.
const { openUnsealed, defaultEnv } = await dist('app/home.js');
const { issueKey, revokeKey } = await dist('app/keys.js');
const { passphrasesFromFiles } = await dist('cli/secrets.js');
const agent = new http.Agent({ keepAlive: true });
const status = (url, k) =>
  new Promise((resolve) => {
    const u = new URL(url);
    http.get({ hostname: u.hostname, port: u.port, path: '/v1/models', agent, headers: { authorization: `Bearer ${k}` } }, (r) => (r.resume(), r.on('end', () => resolve(r.statusCode)))).on('error', () => resolve(0));
  });
const { NonceCache } = await dist('gateway/signature.js');
const CLAIMS = 3000;

/** Revocation propagation to two replicas (ms, sorted) and µs per shared nonce claim, on one home. */
async function storeFigures(homeDir, urls, keyId) {
  const h = await openUnsealed(homeDir, defaultEnv('bench'), { passphrases: async () => passphrasesFromFiles(pass), pin: async () => Buffer.alloc(0) });
  try {
    const victims = [];
    for (let i = 0; i < REVOCATIONS; i++) victims.push(await issueKey(h, { name: `victim-${i}`, role: 'developer' }));
    await new Promise((r) => setTimeout(r, 600));
    const seen = [];
    for (const v of victims) {
      await revokeKey(h, v.id, 'bench', 'MANUAL');
      const t0 = performance.now();
      await Promise.all(
        urls.map(async (u) => {
          while ((await status(u, v.api_key)) !== 401) await new Promise((r) => setTimeout(r, 2));
          seen.push(performance.now() - t0);
        }),
      );
    }
    seen.sort((a, b) => a - b);
    const t = performance.now();
    for (let i = 0; i < CLAIMS; i++) await h.store.nonces.claim(keyId, `n-${i}-${Math.random()}`, Date.now() + 600_000, Date.now());
    return { seen, claimUs: ((performance.now() - t) * 1000) / CLAIMS };
  } finally {
    await h.close();
  }
}
const pq = (xs, p) => xs[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const figures = { sqlite: await storeFigures(home, [gwA, gwB], key.id) };
if (pgTargets['gw2-pg']) figures.postgres = await storeFigures(path.join(tmp, 'pghome'), pgTargets['gw2-pg'].urls, pgTargets['gw2-pg'].key.id);

progress('nonces');
const cache = new NonceCache();
const t = performance.now();
for (let i = 0; i < CLAIMS; i++) cache.checkAndAdd(key.id, `n-${i}-${Math.random()}`, Date.now());
const cacheUs = ((performance.now() - t) * 1000) / CLAIMS;
cleanup();
if (Object.keys(pgTargets).length) {
  await new Promise((r) => setTimeout(r, 500));
  spawnSync('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-c', `DROP DATABASE IF EXISTS ${pgDb} WITH (FORCE)`]);
}

const d = res.direct;
const lines = [`node ${process.version}, ${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(1)}; ${DURATION}s per run, median of ${ROUNDS} round(s); POST ${PATH}, loopback; gw* on SQLite, *-pg on PostgreSQL`, ''];
lines.push('| target | 1000 rps p50 ms | p99 ms | Δp50 vs direct ms | saturation req/s | vs direct | vs nodeproxy | failed |', '|---|---|---|---|---|---|---|---|');
for (const n of names) {
  const r = res[n];
  lines.push(`| ${n} | ${r.p50.toFixed(3)} | ${r.p99.toFixed(3)} | ${n === 'direct' ? '—' : (r.p50 - d.p50).toFixed(3)} | ${Math.round(r.rps)} | ${(r.rps / d.rps).toFixed(2)}× | ${(r.rps / res.nodeproxy.rps).toFixed(2)}× | ${r.failed} |`);
}
if (pgNote) lines.push('', pgNote);
lines.push('', `throughput gw2 / gw1: ${(res.gw2.rps / res.gw1.rps).toFixed(2)}×; workers2 / gw1: ${(res.workers2.rps / res.gw1.rps).toFixed(2)}×`);
for (const [engine, f] of Object.entries(figures)) {
  lines.push(`${engine}: revocation propagation across 2 replicas (${f.seen.length} observations): p50 ${pq(f.seen, 0.5).toFixed(1)} ms, p99 ${pq(f.seen, 0.99).toFixed(1)} ms, max ${f.seen.at(-1).toFixed(1)} ms`);
  lines.push(`${engine}: shared nonce check ${f.claimUs.toFixed(1)} µs per check (${CLAIMS})`);
}
lines.push(`in-memory nonce check: ${cacheUs.toFixed(2)} µs per check (${CLAIMS})`);
console.log(lines.join('\n'));
fs.rmSync(tmp, { recursive: true, force: true });
process.exit(0);
