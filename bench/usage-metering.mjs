#!/usr/bin/env node
/**
 * What token accounting costs the gateway, same run, side by side: `dsk serve` with counting on
 * (request model read, include_usage added to streams, answers scanned, hourly counters) and off,
 * each in its own process in front of the same stub upstream, for a non-streamed and a streamed
 * (SSE, 5 chunks) chat completion. Saturation throughput and p50 with autocannon, and the CPU time
 * each gateway process spent per request (from /proc: steadier than throughput on a shared
 * machine); the pairs run interleaved ROUNDS times and each figure is the median.
 *
 *   npx tsc -p . && node bench/usage-metering.mjs [--duration 3] [--rounds 3] [--connections 50]
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DSK = path.join(ROOT, 'bin', 'dsk.js');
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const DURATION = arg('duration', 3);
const ROUNDS = arg('rounds', 3);
const CONNECTIONS = arg('connections', 50);
const children = [];
process.on('exit', () => children.forEach((c) => c.exitCode === null && c.kill('SIGTERM')));

// ---- the metering work alone, in this process: CPU per request, steadier than any load test here
const { meterRequest, answerTap } = await import(path.join(ROOT, 'dist/gateway/usage-meter.js'));
const { PassThrough } = await import('node:stream');
const reqBody = Buffer.from(JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hello there' }] }));
const streamBody = Buffer.from(JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hello there' }], stream: true }));
const jsonAnswer = Buffer.from(JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion', created: 1, model: 'deepseek-stub', choices: [{ index: 0, message: { role: 'assistant', content: 'echo: hello there '.repeat(20) }, finish_reason: 'stop' }], usage: { prompt_tokens: 2, completion_tokens: 60, total_tokens: 62 } }));
const chunk = (i) => `data: ${JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: 'deepseek-stub', choices: [{ index: 0, delta: { content: `piece ${i} ` }, finish_reason: null }], usage: null })}\n\n`;
const sseAnswer = [...Array.from({ length: 5 }, (_, i) => Buffer.from(chunk(i))), Buffer.from(`data: ${JSON.stringify({ id: 'chatcmpl-x', object: 'chat.completion.chunk', created: 1, model: 'deepseek-stub', choices: [], usage: { prompt_tokens: 2, completion_tokens: 5, total_tokens: 7 } })}\n\ndata: [DONE]\n\n`)];
/** One answer through a stream as the proxy pipes it: metering on (tap) or off (a bare pass-through). */
async function oneAnswer(on, shape) {
  const ur = new PassThrough();
  ur.headers = { 'content-type': shape === 'json' ? 'application/json' : 'text/event-stream' };
  let tap = null;
  if (on) {
    const m = meterRequest('POST /v1/chat/completions', shape === 'json' ? reqBody : streamBody, true);
    tap = answerTap(m.injected);
  }
  // as the proxy does: a rewrite is applied chunk by chunk, otherwise the answer is piped as is
  const rw = tap?.attach(ur) ?? null;
  const sink = new PassThrough();
  sink.resume();
  if (rw) {
    ur.on('data', (c) => {
      const o = rw.chunk(c);
      if (o) sink.write(o);
    });
    ur.on('end', () => sink.end(rw.end() ?? undefined));
  } else ur.pipe(sink);
  const done = new Promise((r) => sink.on('end', r));
  for (const c of shape === 'json' ? [jsonAnswer] : sseAnswer) ur.write(c);
  ur.end();
  await done;
  return tap?.finish();
}
const MICRO_N = 20_000;
const micro = {};
for (const shape of ['json', 'stream'])
  for (const on of [false, true, false, true]) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < MICRO_N; i++) await oneAnswer(on, shape);
    const d = process.cpuUsage(t0);
    micro[`${shape}/${on ? 'on' : 'off'}`] = Math.min(micro[`${shape}/${on ? 'on' : 'off'}`] ?? Infinity, (d.user + d.system) / MICRO_N);
  }

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-bench-usage-'));
fs.chmodSync(tmp, 0o700);
const home = path.join(tmp, 'home');
const pass = [1, 2].map((i) => {
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
run(['init', '--shares', '2', '--threshold', '2', ...pass.flatMap((p) => ['--passphrase-file', p])]);
const key = JSON.parse(run(['keygen', '--name', 'bench', '--role', 'developer', '--json']));

function start(args, re) {
  const p = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(p);
  return new Promise((resolve, reject) => {
    let out = '';
    const on = (d) => {
      out += d;
      const m = re.exec(out);
      if (m) resolve({ value: m[1], pid: p.pid });
    };
    p.stdout.on('data', on);
    p.stderr.on('data', on);
    p.on('exit', (c) => reject(new Error(`exited ${c}: ${out}`)));
  });
}

const { value: stubPort } = await start(['-e', `import(${JSON.stringify(path.join(ROOT, 'dist/gateway/stub-upstream.js'))}).then(m => m.startStubUpstream({ record: false })).then(s => console.log('port ' + s.port))`], /port (\d+)/);
/** A gateway process over the same home with token counting on or off. */
const GATEWAY = (countTokens) => `
const dist = ${JSON.stringify(path.join(ROOT, 'dist'))};
const { openUnsealed, defaultEnv } = await import(dist + '/app/home.js');
const { passphrasesFromFiles } = await import(dist + '/cli/secrets.js');
const { startGateway, gatewayOptions } = await import(dist + '/gateway/server.js');
const h = await openUnsealed(process.env.DSK_HOME, defaultEnv('bench'), { passphrases: async () => passphrasesFromFiles(process.env.DSK_PASSPHRASE_FILES.split(':')), pin: async () => Buffer.alloc(0) });
const o = gatewayOptions(h.config.gateway, { upstream: 'http://127.0.0.1:${stubPort}', listen: '127.0.0.1:0', rps: 1e8, burst: 1e8, maxConcurrent: 100000 });
const gw = await startGateway(h, { ...o, countTokens: ${countTokens} });
console.log('url ' + gw.url);`;
// a script file, not -e: the gateway's writer thread inherits execArgv, and --input-type breaks it
const script = (on) => {
  const f = path.join(tmp, `gateway-${on ? 'on' : 'off'}.mjs`);
  fs.writeFileSync(f, GATEWAY(on));
  return f;
};
const gws = { on: await start([script(true)], /url (\S+)/), off: await start([script(false)], /url (\S+)/) };
const urls = { on: gws.on.value, off: gws.off.value };
/** CPU time (user + system, ms) a process has used: what one request costs, whatever else runs. */
const cpuMs = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
};

const bodies = {
  json: JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hello there' }] }),
  stream: JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hello there' }], stream: true }),
};
const opts = (mode, shape) => ({
  url: `${urls[mode]}/v1/chat/completions`,
  method: 'POST',
  body: bodies[shape],
  headers: { 'content-type': 'application/json', authorization: `Bearer ${key.api_key}`, 'x-stub-delay-ms': '0', 'x-stub-chunks': '5' },
});
const cannon = (o, extra) => new Promise((resolve, reject) => autocannon({ ...o, duration: DURATION, ...extra }, (e, r) => (e ? reject(e) : resolve(r))));

const combos = [];
for (const shape of ['json', 'stream']) for (const mode of ['off', 'on']) combos.push([shape, mode]);
const samples = Object.fromEntries(combos.map(([s, m]) => [`${s}/${m}`, []]));
for (const [s, m] of combos) await cannon(opts(m, s), { connections: 10, duration: 1 });
for (let round = 0; round < ROUNDS; round++) {
  // alternate which mode goes first, so a load swing does not always favour the same one
  for (const shape of ['json', 'stream'])
    for (const mode of round % 2 ? ['on', 'off'] : ['off', 'on']) {
      const cpu0 = cpuMs(gws[mode].pid);
      const r = await cannon(opts(mode, shape), { connections: CONNECTIONS });
      const cpu = cpuMs(gws[mode].pid) - cpu0;
      samples[`${shape}/${mode}`].push({ rps: r.requests.average, p50: r.latency.p50, cpu_us: (cpu * 1000) / Math.max(1, r.requests.total), failed: r.non2xx + r.errors });
    }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const res = Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, { rps: median(xs.map((x) => x.rps)), p50: median(xs.map((x) => x.p50)), cpu_us: median(xs.map((x) => x.cpu_us)), failed: xs.reduce((a, x) => a + x.failed, 0) }]));

// the counters really were written: requests and tokens of the "on" gateway are in the store
await new Promise((r) => setTimeout(r, 2500));
const report = JSON.parse(run(['usage', '--since', '1d', '--json']));

const lines = [];
lines.push(`node ${process.version}, ${os.cpus().length} cores, load average ${os.loadavg()[0].toFixed(1)}; ${DURATION}s per run, ${CONNECTIONS} connections, median of ${ROUNDS} interleaved rounds; POST /v1/chat/completions on loopback`);
lines.push('');
lines.push('| answer | accounting | saturation req/s | p50 ms | gateway CPU µs/request | throughput on/off | CPU on/off | failed |');
lines.push('|---|---|---|---|---|---|---|---|');
for (const shape of ['json', 'stream'])
  for (const mode of ['off', 'on']) {
    const r = res[`${shape}/${mode}`];
    const off = res[`${shape}/off`];
    lines.push(`| ${shape === 'json' ? 'JSON' : 'SSE stream (5 chunks)'} | ${mode} | ${Math.round(r.rps)} | ${r.p50} | ${Math.round(r.cpu_us)} | ${mode === 'on' ? (r.rps / off.rps).toFixed(3) + '×' : '—'} | ${mode === 'on' ? (r.cpu_us / off.cpu_us).toFixed(3) + '×' : '—'} | ${r.failed} |`);
  }
lines.push('', `The metering work alone (${MICRO_N} answers through a stream as the proxy pipes them, CPU µs per answer, best of 2): ` + ['json', 'stream'].map((sh) => `${sh === 'json' ? 'JSON' : 'SSE'} off ${micro[`${sh}/off`].toFixed(1)}, on ${micro[`${sh}/on`].toFixed(1)} (+${(micro[`${sh}/on`] - micro[`${sh}/off`]).toFixed(1)} µs)`).join('; '));
lines.push('', `store after the run: ${report.total.requests} requests, ${report.total.tokens} tokens, ${report.total.no_usage} answers without usage`);
console.log(lines.join('\n'));
fs.rmSync(tmp, { recursive: true, force: true });
process.exit(0);
