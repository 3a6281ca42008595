#!/usr/bin/env node
/**
 * The cost of source labels per request (network map + GeoIP country + ASN, read with `maxmind`),
 * side by side with no lookup, in one run:
 *
 *   1. in-process, per call (median of interleaved rounds): nothing (the loop itself), the cached
 *      lookup the gateway does per request, the uncached lookup (a new address), and the whole
 *      per-request hook (cached labels + the learned-history check of anomaly.ts)
 *   2. end to end: two `dsk serve` processes on the same home, one with gateway.geoip_db,
 *      gateway.asn_db and a network map, one without; autocannon against each, interleaved
 *      rounds; X-Forwarded-For (with --trust-proxy) rotating over the test addresses
 *
 *   npm run build && node bench/geoip.mjs [--duration 2] [--rounds 3] [--connections 20]
 * The MaxMind test databases are read from test/fixtures/geoip (or DSK_GEOIP_DIR).
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DSK = path.join(ROOT, 'bin', 'dsk.js');
const GEO = process.env.DSK_GEOIP_DIR ?? path.resolve(ROOT, 'test/fixtures/geoip');
const CITY = path.join(GEO, 'GeoIP2-City-Test.mmdb');
const ASN = path.join(GEO, 'GeoLite2-ASN-Test.mmdb');
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const DURATION = arg('duration', 2);
const ROUNDS = arg('rounds', 3);
const CONNECTIONS = arg('connections', 20);
const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

const { SourceLabeler } = await import(path.join(ROOT, 'dist/gateway/source-labels.js'));
const { SourceHistory } = await import(path.join(ROOT, 'dist/gateway/anomaly.js'));
const { SideWrites } = await import(path.join(ROOT, 'dist/gateway/side-writes.js'));

const NETWORK = Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`10.${i}.0.0/16`, `site-${i}`]));
const TEST_IPS = ['81.2.69.142', '2.125.160.216', '89.160.20.112', '216.160.83.56', '175.16.199.0', '1.128.0.1', '2001:218::1'];
// 1,000 client addresses: the test addresses, private ones inside the map, public ones outside any database
const ips = Array.from({ length: 1000 }, (_, i) => (i < TEST_IPS.length ? TEST_IPS[i] : i % 2 ? `10.${i % 20}.${(i >> 8) & 255}.${i & 255}` : `198.51.${(i >> 8) & 255}.${i & 255}`));

// ---- 1. in-process
const labeler = new SourceLabeler({ network: NETWORK, geoipDb: CITY, asnDb: ASN });
const history = new SourceHistory([], 0, new SideWrites());
for (const ip of ips) history.observe('k1', ip, labeler.labels(ip), 0); // learned: the steady state
const N = 200_000;
let sink = 0;
const cases = {
  none: () => {
    for (let i = 0; i < N; i++) sink += ips[i % 1000].length;
  },
  cached: () => {
    for (let i = 0; i < N; i++) sink += labeler.labels(ips[i % 1000]).site.length;
  },
  uncached: () => {
    for (let i = 0; i < N / 10; i++) sink += labeler.lookup(ips[i % 1000]).site.length;
  },
  hook: () => {
    for (let i = 0; i < N; i++) {
      const ip = ips[i % 1000];
      sink += history.observe('k1', ip, labeler.labels(ip), 1).length;
    }
  },
};
const ns = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (let r = 0; r < 7; r++)
  for (const [k, f] of Object.entries(cases)) {
    const t0 = process.hrtime.bigint();
    f();
    ns[k].push(Number(process.hrtime.bigint() - t0) / (k === 'uncached' ? N / 10 : N));
  }
console.log(`in-process, ns per request (median of 7 interleaved rounds of ${N} calls; ${ips.length} distinct addresses):`);
console.log('| case | ns/request | over the bare loop |');
console.log('|---|---|---|');
for (const k of Object.keys(cases)) console.log(`| ${k} | ${median(ns[k]).toFixed(0)} | ${k === 'none' ? '—' : (median(ns[k]) - median(ns.none)).toFixed(0)} |`);

// ---- 2. end to end
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-bench-geo-'));
fs.chmodSync(tmp, 0o700);
const homes = {};
const children = [];
process.on('exit', () => children.forEach((c) => c.exitCode === null && c.kill('SIGTERM')));
const pass = [1, 2].map((i) => {
  const f = path.join(tmp, `p${i}.pass`);
  fs.writeFileSync(f, `bench-passphrase-${i}-${Math.random()}\n`, { mode: 0o600 });
  return f;
});
const run = (env, args) => {
  const r = spawnSync(process.execPath, [DSK, ...args], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`dsk ${args[0]} failed: ${r.stderr}`);
  return r.stdout;
};
function start(env, args, re) {
  const p = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
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
    p.on('exit', (c) => reject(new Error(`exited ${c}: ${out}`)));
  });
}
const stubPort = await start(process.env, ['-e', `import(${JSON.stringify(path.join(ROOT, 'dist/gateway/stub-upstream.js'))}).then(m => m.startStubUpstream({ record: false })).then(s => console.log('port ' + s.port))`], /port (\d+)/);
const urls = {};
let apiKey;
for (const side of ['off', 'geoip']) {
  const home = path.join(tmp, side);
  const env = { ...process.env, DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':') };
  run(env, ['init', '--shares', '2', '--threshold', '2', ...pass.flatMap((p) => ['--passphrase-file', p])]);
  if (side === 'geoip') {
    const cfg = JSON.parse(fs.readFileSync(path.join(home, 'dsk.json'), 'utf8'));
    Object.assign(cfg, { network: NETWORK, gateway: { geoip_db: CITY, asn_db: ASN, anomaly_learning: '0s' } });
    fs.writeFileSync(path.join(home, 'dsk.json'), JSON.stringify(cfg));
  }
  homes[side] = env;
  const key = JSON.parse(run(env, ['keygen', '--name', 'bench', '--role', 'developer', '--json']));
  urls[side] = { url: await start(env, [DSK, 'serve', '--upstream', `http://127.0.0.1:${stubPort}`, '--listen', '127.0.0.1:0', '--trust-proxy', '--rps', '100000000', '--burst', '100000000', '--max-concurrent', '100000', '--json'], /"url":\s*"([^"]+)"/), key: key.api_key };
}
apiKey = null;
const results = { off: [], geoip: [] };
for (let r = 0; r < ROUNDS; r++)
  for (const side of ['off', 'geoip']) {
    let i = 0;
    const res = await autocannon({
      url: `${urls[side].url}/v1/models`,
      connections: CONNECTIONS,
      duration: DURATION,
      requests: [{ setupRequest: (req) => ({ ...req, headers: { authorization: `Bearer ${urls[side].key}`, 'x-forwarded-for': ips[i++ % ips.length] } }) }],
    });
    results[side].push({ rps: res.requests.average, p50: res.latency.p50, p99: res.latency.p99, errors: res.errors + res.non2xx });
  }
console.log(`\nend to end, GET /v1/models via dsk serve, ${CONNECTIONS} connections, ${DURATION} s × ${ROUNDS} interleaved rounds (medians):`);
console.log('| gateway | req/s | p50 ms | p99 ms | failed |');
console.log('|---|---|---|---|---|');
const m = {};
for (const side of ['off', 'geoip']) {
  m[side] = { rps: median(results[side].map((x) => x.rps)), p50: median(results[side].map((x) => x.p50)), p99: median(results[side].map((x) => x.p99)) };
  console.log(`| ${side === 'off' ? 'no source labels' : 'network map + GeoIP + ASN'} | ${m[side].rps.toFixed(0)} | ${m[side].p50} | ${m[side].p99} | ${results[side].reduce((a, x) => a + x.errors, 0)} |`);
}
console.log(`\nthroughput with labels / without: ${(m.geoip.rps / m.off.rps).toFixed(3)}×`);
void sink;
process.exit(0);
