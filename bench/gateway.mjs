#!/usr/bin/env node
/**
 * Gateway benchmark: autocannon on loopback, all in one run, side by side:
 *   direct   the stub upstream, no proxy (the baseline)
 *   gateway  `dsk serve` in front of it, plain bearer key
 *   signed   `dsk serve`, each request signed (fresh nonce, HMAC over the body)
 *   nodeproxy  a minimal node:http reverse proxy with no auth: what Node itself costs per hop,
 *            so the gateway's own work (auth, limits, metrics) can be told apart from it
 *   nginx    a plain nginx reverse proxy with no auth (only when `nginx` is installed)
 * For each: a fixed rate of 1,000 requests/s (latency overhead) and saturation (throughput).
 * The stub, the gateway and nginx run as separate processes; autocannon runs here.
 *
 *   npm run build && node bench/gateway.mjs [--duration 3] [--rounds 3] [--connections 50]
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import http from 'node:http';
import autocannon from 'autocannon';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DSK = path.join(ROOT, 'bin', 'dsk.js');
const { signHeaders } = await import(path.join(ROOT, 'dist', 'gateway', 'signature.js'));
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const DURATION = arg('duration', 3);
const ROUNDS = arg('rounds', 3);
const CONNECTIONS = arg('connections', 50);
const RATE = 1000;
const children = [];
const cleanup = () => children.forEach((c) => c.exitCode === null && c.kill('SIGTERM'));
process.on('exit', cleanup);

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-bench-gw-'));
fs.chmodSync(tmp, 0o700);
const home = path.join(tmp, 'home');
const pass = [1, 2, 3].map((i) => {
  const f = path.join(tmp, `p${i}.pass`);
  fs.writeFileSync(f, `bench-passphrase-${i}-${Math.random()}\n`, { mode: 0o600 });
  return f;
});
const env = { ...process.env, DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':') };
const run = (args) => {
  const r = spawnSync(process.execPath, [DSK, ...args], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dsk ${args[0]} failed: ${r.stderr}`);
  return r.stdout;
};
run(['init', '--shares', '3', '--threshold', '3', ...pass.flatMap((p) => ['--passphrase-file', p])]);
const key = JSON.parse(run(['keygen', '--name', 'bench', '--role', 'developer', '--json']));

/** Spawns a node process that prints a line matching `re` once it listens. */
function start(cmd, args, re, opts = {}) {
  const p = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
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
const gwUrl = await start(process.execPath, [DSK, 'serve', '--upstream', upstream, '--listen', '127.0.0.1:0', '--rps', '100000000', '--burst', '100000000', '--max-concurrent', '100000', '--json'], /"url":\s*"([^"]+)"/);

const NODE_PROXY = `
const http = require('node:http');
const agent = new http.Agent({ keepAlive: true, maxSockets: 256 });
const s = http.createServer({ noDelay: true }, (req, res) => {
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
});
s.listen(0, '127.0.0.1', () => console.log('port ' + s.address().port));`;
const nodeProxyUrl = `http://127.0.0.1:${await start(process.execPath, ['-e', NODE_PROXY], /port (\d+)/)}`;

let nginxUrl = null;
let nginxNote = '';
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
  const p = spawn('nginx', ['-c', conf, '-p', tmp], { stdio: 'ignore' });
  children.push(p);
  for (let i = 0; i < 50; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/v1/models`);
      nginxUrl = `http://127.0.0.1:${port}`;
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  if (!nginxUrl) nginxNote = 'nginx is installed but did not start; skipped';
} else nginxNote = 'nginx not installed (command -v nginx failed); the nginx row is skipped';

const body = JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hello' }] });
const PATH = '/v1/chat/completions';

function target(name) {
  const base = { direct: upstream, nodeproxy: nodeProxyUrl, gateway: gwUrl, signed: gwUrl, nginx: nginxUrl }[name];
  const headers = { 'content-type': 'application/json' };
  if (name === 'gateway') headers.authorization = `Bearer ${key.api_key}`;
  const o = { url: base + PATH, method: 'POST', body, headers };
  if (name === 'signed')
    o.requests = [
      {
        method: 'POST',
        path: PATH,
        setupRequest: (req) => ({ ...req, body, headers: { ...headers, ...signHeaders({ apiKey: key.api_key, apiSecret: key.api_secret, keyId: key.id, method: 'POST', path: PATH, body }) } }),
      },
    ];
  return o;
}

/**
 * Open-loop fixed rate with microsecond timing (autocannon reports whole milliseconds, too coarse
 * for a sub-millisecond overhead): every 10 ms, send RATE/100 requests over a keep-alive agent,
 * whatever the previous ones are doing, and time each with hrtime.
 */
async function fixedRate(o, seconds) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
  const u = new URL(o.url);
  const lat = [];
  let failed = 0;
  const one = () =>
    new Promise((resolve) => {
      const headers = { ...o.headers, ...(o.requests ? o.requests[0].setupRequest({ headers: {} }).headers : {}), 'content-length': Buffer.byteLength(o.body) };
      const t0 = process.hrtime.bigint();
      const req = http.request({ hostname: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers }, (res) => {
        res.resume();
        res.on('end', () => {
          if (res.statusCode !== 200) failed++;
          lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
          resolve();
        });
      });
      req.on('error', () => (failed++, resolve()));
      req.end(o.body);
    });
  const pending = [];
  const perTick = RATE / 100;
  const start = performance.now();
  for (let tick = 0; tick < seconds * 100; tick++) {
    const due = start + tick * 10;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    for (let i = 0; i < perTick; i++) pending.push(one());
  }
  await Promise.all(pending);
  agent.destroy();
  lat.sort((a, b) => a - b);
  const q = (p) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))];
  return { p50: q(0.5), p99: q(0.99), failed };
}

function cannon(o, extra) {
  return new Promise((resolve, reject) => autocannon({ ...o, duration: DURATION, ...extra }, (err, r) => (err ? reject(err) : resolve(r))));
}

const names = ['direct', 'nodeproxy', 'gateway', 'signed', ...(nginxUrl ? ['nginx'] : [])];
// The machine is shared: targets run interleaved, ROUNDS times, and each figure is the median
// across rounds, so a burst of outside load hits every target alike instead of one of them.
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const samples = Object.fromEntries(names.map((n) => [n, []]));
for (const n of names) await cannon(target(n), { connections: 10, duration: 1 }); // warm-up
for (let round = 0; round < ROUNDS; round++) {
  for (const n of names) {
    const fixed = await fixedRate(target(n), DURATION);
    const sat = await cannon(target(n), { connections: CONNECTIONS });
    samples[n].push({ fixed_p50: fixed.p50, fixed_p99: fixed.p99, sat_rps: sat.requests.average, sat_p50: sat.latency.p50, sat_p99: sat.latency.p99, failed: fixed.failed + sat.non2xx + sat.errors });
  }
}
const results = {};
for (const n of names) {
  const xs = samples[n];
  results[n] = Object.fromEntries(Object.keys(xs[0]).map((f) => [f, f === 'failed' ? xs.reduce((a, x) => a + x.failed, 0) : median(xs.map((x) => x[f]))]));
}
cleanup();

const d = results.direct;
const pad = (s, n) => String(s).padEnd(n);
const lines = [];
lines.push(`node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0].model}), load average ${os.loadavg()[0].toFixed(1)}; ${DURATION}s per run, median of ${ROUNDS} interleaved rounds; POST ${PATH} (non-streaming), loopback`);
lines.push('');
lines.push('| target | 1000 rps: p50 ms | p99 ms | Δp50 ms | Δp99 ms | saturation req/s | sat p50 ms | sat p99 ms | throughput vs direct | failed |');
lines.push('|---|---|---|---|---|---|---|---|---|---|');
for (const n of names) {
  const r = results[n];
  lines.push(`| ${n} | ${r.fixed_p50.toFixed(3)} | ${r.fixed_p99.toFixed(3)} | ${n === 'direct' ? '—' : (r.fixed_p50 - d.fixed_p50).toFixed(3)} | ${n === 'direct' ? '—' : (r.fixed_p99 - d.fixed_p99).toFixed(3)} | ${Math.round(r.sat_rps)} | ${r.sat_p50} | ${r.sat_p99} | ${(r.sat_rps / d.sat_rps).toFixed(2)}× | ${r.failed} |`);
}
if (nginxNote) lines.push('', nginxNote);
lines.push('', `gateway vs the minimal node proxy: throughput ${(results.gateway.sat_rps / results.nodeproxy.sat_rps).toFixed(2)}×, Δp50 at 1000 rps ${(results.gateway.fixed_p50 - results.nodeproxy.fixed_p50).toFixed(3)} ms`);
if (results.nginx) lines.push('', `gateway vs nginx throughput: ${(results.gateway.sat_rps / results.nginx.sat_rps).toFixed(2)}×; signed vs nginx: ${(results.signed.sat_rps / results.nginx.sat_rps).toFixed(2)}×`);
console.log(lines.join('\n'));
fs.rmSync(tmp, { recursive: true, force: true });
process.exit(0);
