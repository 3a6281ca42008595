#!/usr/bin/env node
/**
 * Fuzzing (not part of `vitest run`; about 5 minutes): fast-check runs generated inputs against
 * every parser that reads something an attacker or a damaged file controls, and reports, per target,
 * how many inputs it tried and the crashes it found. A crash is an exception that is not one of
 * dsk's own errors (DskError with an exit code) where one may be thrown, or any exception where the
 * code promises never to throw, or a 5xx / dropped connection from the live gateway.
 *
 *   npm run build && node bench/fuzz.mjs [--runs N] [--only target,…] [--seed S]
 *
 * Targets: request (the gateway's request-path parsers and the target normaliser), gateway (a live `dsk serve` on loopback),
 * config (dsk.json loading), keytext (key text and key-id arguments), audit (the audit row walker
 * and the HEAD decoder), archive (the archive reader, on mutated archives written to disk).
 * The figures go to docs/benchmarks.md; every crash found becomes a test.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (m) => import(path.join(root, 'dist', m));
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const RUNS = Number(opt('runs', 100_000));
const ONLY = opt('only', null)?.split(',');
const SEED = Number(opt('seed', Date.now() % 2 ** 31));

const { parseCredential, clientIp } = await dist('gateway/credentials.js');
const { parseSignatureHeaders, timestampFresh, bodyHash, canonicalString, NonceCache } = await dist('gateway/signature.js');
const { looksLikeJwt, tokenKid } = await dist('gateway/jwt.js');
const { RouteTable } = await dist('gateway/routes.js');
const { normaliseTarget } = await dist('gateway/path.js');
const { parseKeyOptions, allowListOf } = await dist('gateway/key-options.js');
const { gatewayOptions } = await dist('gateway/options.js');
const { configFromText } = await dist('store/config-file.js');
const { policyMs } = await dist('domain/policy.js');
const { parseApiKey, assertKeyId, formatApiKey } = await dist('domain/key-text.js');
const { walkChain } = await dist('audit/verify.js');
const { parseHead } = await dist('audit/head.js');
const { chainHash, rowMac, canonicalJson, GENESIS_HASH } = await dist('audit/chain.js');
const { verifyArchive, headerMac, ARCHIVE_FORMAT } = await dist('audit/archive.js');
const { isDskError } = await dist('kernel/errors.js');

const results = [];

/** Runs `prop` RUNS times; a failure is recorded (with fast-check's shrunk counterexample), then the target goes on with a new seed. */
async function target(name, arb, check, { runs = RUNS, async = false } = {}) {
  if (ONLY && !ONLY.includes(name)) return;
  const t0 = Date.now();
  let tried = 0;
  const crashes = [];
  let seed = SEED;
  while (tried < runs && crashes.length < 5) {
    const left = runs - tried;
    let n = 0;
    const prop = async ? fc.asyncProperty(arb, async (v) => (n++, await check(v))) : fc.property(arb, (v) => (n++, check(v)));
    const r = async ? await fc.check(prop, { numRuns: left, seed }) : fc.check(prop, { numRuns: left, seed });
    tried += r.failed ? r.numRuns : left;
    if (!r.failed) break;
    crashes.push({ counterexample: JSON.stringify(r.counterexample).slice(0, 600), error: String(r.errorInstance?.stack ?? r.error).split('\n').slice(0, 4).join(' | ') });
    seed++;
  }
  const ms = Date.now() - t0;
  results.push({ target: name, inputs: tried, crashes: crashes.length, seconds: +(ms / 1000).toFixed(1), seed: SEED });
  console.log(`${name.padEnd(8)} ${String(tried).padStart(7)} inputs  ${crashes.length} crash(es)  ${(ms / 1000).toFixed(1)} s`);
  for (const c of crashes) console.log(`  CRASH ${c.error}\n    input ${c.counterexample}`);
}

/** dsk's own errors may be thrown (they map to an exit code); anything else is a crash. */
function onlyDskErrors(f) {
  try {
    f();
  } catch (e) {
    if (!isDskError(e)) throw e;
  }
}

// ----- request: the gateway's request-path parsers, on whole generated requests
const text = fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 60 }));
const key = fc.tuple(fc.stringMatching(/^[0-9a-f]{12}$/), fc.stringMatching(/^[0-9a-f]{64}$/)).map(([i, s]) => formatApiKey(i, s));
const nearKey = fc.tuple(key, fc.nat(87), fc.string({ maxLength: 3 })).map(([k, i, s]) => k.slice(0, i) + s + k.slice(i + 1));
const authValue = fc.oneof(text, key.map((k) => `Bearer ${k}`), nearKey.map((k) => `Bearer ${k}`), fc.constantFrom('Bearer', 'Bearer ', 'Basic xx', 'bearer  x'), fc.array(text, { maxLength: 3 }));
const segment = fc.oneof(fc.constantFrom('v1', 'models', 'chat', 'completions', '..', '.', '%2e%2e', '%2E%2E', '..%2f', '%2f', '%2F', '.%2e', '%252e', '%5c', '\\', '%', '', 'dsk', 'audit', 'metrics', 'healthz', '*'), fc.string({ maxLength: 12 }));
const reqPath = fc.tuple(fc.array(segment, { maxLength: 6 }), fc.option(fc.string({ maxLength: 40 }))).map(([s, q]) => `/${s.join('/')}${q === null ? '' : `?${q}`}`);
const method = fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'), fc.stringMatching(/^[A-Z]{1,10}$/));
const request = fc.record({
  method,
  path: fc.oneof(reqPath, text),
  authorization: fc.option(authValue, { nil: undefined }),
  apiKey: fc.option(fc.oneof(text, key, nearKey), { nil: undefined }),
  timestamp: fc.option(fc.oneof(text, fc.integer().map(String), fc.double().map(String)), { nil: undefined }),
  nonce: fc.option(text, { nil: undefined }),
  signature: fc.option(text, { nil: undefined }),
  xff: fc.option(fc.oneof(text, fc.ipV4().map((a) => `${a}, 10.0.0.1`), fc.ipV6()), { nil: undefined }),
  body: fc.oneof(text, fc.jsonValue().map((v) => JSON.stringify(v))),
});
const routes = new RouteTable(gatewayOptions(undefined, { upstream: 'http://127.0.0.1:1' }).routes);
const nonces = new NonceCache();
await target('request', request, (r) => {
  const headers = { authorization: r.authorization, 'x-api-key': r.apiKey, 'x-timestamp': r.timestamp, 'x-nonce': r.nonce, 'x-signature': r.signature };
  const c = parseCredential(headers);
  if (c.ok && typeof c.text !== 'string') throw new Error('credential text is not a string');
  if (c.ok) {
    parseApiKey(c.text);
    if (looksLikeJwt(c.text)) tokenKid(c.text);
  }
  const s = parseSignatureHeaders(headers);
  if (s.present && s.ok !== false) canonicalString({ timestamp: String(s.timestamp), nonce: String(s.nonce), method: r.method, path: r.path, bodySha256: bodyHash(r.body), keyId: '000000000000' });
  if (r.timestamp !== undefined) timestampFresh(Array.isArray(r.timestamp) ? r.timestamp[0] : r.timestamp, Date.now());
  if (typeof r.nonce === 'string') nonces.checkAndAdd('000000000000', r.nonce, Date.now());
  clientIp('127.0.0.1', r.xff, true);
  // The target as the gateway sees it: refused, or a normalised path that matches the same route
  // after an upstream decodes it and removes dot segments.
  const n = normaliseTarget(r.path);
  if (n.ok) {
    const route = routes.match(r.method, n.path);
    const resolved = path.posix.normalize(n.path.replace(/%([0-9a-f]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16))));
    if (route && route.name.endsWith('/*') && !resolved.startsWith(route.name.split(' ')[1].slice(0, -1))) throw new Error(`${n.path} escapes ${route.name}`);
    if (normaliseTarget(n.path + n.query).path !== n.path) throw new Error(`normalising ${n.path} again changes it`);
  }
  allowListOf(parseKeyOptions(r.body));
});

// ----- gateway: a live dsk serve on loopback, in process, against a stub upstream
if (!ONLY || ONLY.includes('gateway')) {
  const { openUnsealed, defaultEnv } = await dist('app/home.js');
  const { issueKey } = await dist('app/keys.js');
  const { startGateway } = await dist('gateway/server.js');
  const { startStubUpstream } = await dist('gateway/stub-upstream.js');
  const { spawnSync } = await import('node:child_process');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-fuzz-'));
  fs.chmodSync(dir, 0o700);
  const home = path.join(dir, 'home');
  const pass = [1, 2].map((i) => {
    const f = path.join(dir, `p${i}`);
    fs.writeFileSync(f, `fuzz-passphrase-${i}-${crypto.randomBytes(4).toString('hex')}\n`, { mode: 0o600 });
    return f;
  });
  const init = spawnSync(process.execPath, [path.join(root, 'bin/dsk.js'), 'init', '--home', home, '--shares', '2', '--threshold', '2', '--passphrase-file', pass[0], '--passphrase-file', pass[1]], { encoding: 'utf8' });
  if (init.status !== 0) throw new Error(init.stderr);
  const { passphrasesFromFiles } = await dist('cli/secrets.js');
  const h = await openUnsealed(home, defaultEnv('fuzz'), { passphrases: async () => passphrasesFromFiles(pass), pin: async () => Buffer.alloc(0) });
  const k = await issueKey(h, { name: 'fuzz', role: 'developer' });
  const up = await startStubUpstream();
  // Limits high enough that the fuzzer reaches every stage of the pipeline instead of being blocked.
  const gw = await startGateway(h, gatewayOptions(h.config.gateway, { upstream: up.url, listen: '127.0.0.1:0', rps: 1e9, burst: 1e9, maxFailures: 1e9, keyMaxFailures: 1e9, maxConcurrent: 1e9 }));
  const base = new URL(gw.url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  const headerName = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,20}$/);
  const headerVal = fc.string({ maxLength: 100 }).map((v) => v.replace(/[\r\n\0]/g, ''));
  const routesPath = fc.tuple(fc.constantFrom('/v1/models', '/v1/chat/completions', '/v1/completions', '/v1/embeddings', '/v1/models/x', '/healthz', '/metrics', '/dsk/audit'), fc.option(fc.string({ maxLength: 30 }))).map(([p, q]) => (q === null ? p : `${p}?${q}`));
  const liveReq = fc.record({
    method: fc.oneof({ arbitrary: fc.constantFrom('GET', 'POST'), weight: 3 }, { arbitrary: method, weight: 1 }),
    path: fc.oneof({ arbitrary: routesPath, weight: 2 }, { arbitrary: reqPath, weight: 1 }),
    auth: fc.oneof({ arbitrary: fc.constant(`Bearer ${k.api_key}`), weight: 4 }, { arbitrary: authValue.filter((v) => typeof v === 'string').map((v) => v.replace(/[\r\n\0]/g, '')), weight: 1 }, { arbitrary: fc.constant(undefined), weight: 1 }),
    extra: fc.dictionary(headerName, headerVal, { maxKeys: 4 }),
    body: fc.oneof(fc.constant(''), fc.jsonValue().map((v) => JSON.stringify(v)), fc.string({ maxLength: 300 })),
  });
  const send = (r, viaAgent = agent) =>
    new Promise((resolve) => {
      const headers = { ...r.extra };
      for (const n of Object.keys(headers)) if (['content-length', 'transfer-encoding', 'host', 'connection', 'expect', 'upgrade'].includes(n.toLowerCase())) delete headers[n];
      if (r.auth) headers.authorization = r.auth;
      let req;
      try {
        req = http.request({ host: base.hostname, port: base.port, method: r.method, path: r.path.replace(/[^\x21-\x7e]/g, (c) => encodeURIComponent(c)), headers, agent: viaAgent }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode }));
          res.on('error', (e) => resolve({ error: e.message }));
        });
      } catch (e) {
        return resolve({ skipped: e.message }); // the client refused to send it (invalid header or path)
      }
      req.on('error', (e) => resolve({ error: e.message }));
      req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      req.end(r.body);
    });
  const statuses = new Map();
  await target(
    'gateway',
    liveReq,
    async (r) => {
      let out = await send(r);
      // A reused keep-alive socket the server closed meanwhile is the client's race, not a crash:
      // only a failure on a fresh connection counts.
      if (out.error) out = await send(r, false);
      if (out.skipped) return;
      if (out.error) throw new Error(`connection failed: ${out.error}`);
      statuses.set(out.status, (statuses.get(out.status) ?? 0) + 1);
      if (out.status >= 500 && out.status !== 502 && out.status !== 503 && out.status !== 504) throw new Error(`status ${out.status}`);
    },
    { async: true },
  );
  console.log(`  statuses: ${[...statuses].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}×${n}`).join(' ')}`);
  agent.destroy();
  await gw.close();
  await up.close();
  await h.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

// ----- config: dsk.json loading (text → schema → defaults → the policy every command derives)
const validConfig = { format: 'dsk-config/1', home_id: 'a'.repeat(32), backend: 'software', created_at: new Date().toISOString(), policy: { grace: '48h', rotate_every: '90d', max_uses: 100000, expires: null, warn_within: '7d' }, roles: { admin: ['model.invoke', 'key.manage'] } };
const field = fc.constantFrom('format', 'home_id', 'backend', 'created_at', 'policy', 'roles', 'gateway', 'policy.grace', 'policy.rotate_every', 'policy.max_uses', 'policy.expires', 'policy.warn_within', 'roles.admin', 'roles.x', 'extra');
const mutated = fc.tuple(fc.array(fc.tuple(field, fc.jsonValue()), { maxLength: 4 })).map(([edits]) => {
  const c = structuredClone(validConfig);
  for (const [f, v] of edits) {
    const [a, b] = f.split('.');
    if (b === undefined) c[a] = v;
    else if (c[a] && typeof c[a] === 'object') c[a][b] = v;
  }
  return JSON.stringify(c);
});
await target('config', fc.oneof(fc.string({ maxLength: 300 }), fc.jsonValue().map((v) => JSON.stringify(v)), mutated), (t) =>
  onlyDskErrors(() => {
    const c = configFromText(t);
    policyMs(c.policy); // a config that loads must never fail later
  }),
);

// ----- keytext: key text parsing and key-id arguments
await target('keytext', fc.oneof(text, key, nearKey, key.map((k) => k.toUpperCase()), fc.stringMatching(/^dsk_[0-9a-f]{0,14}_?[0-9a-f]{0,70}_?[0-9A-Za-z]{0,8}$/)), (t) => {
  const p = parseApiKey(t);
  if (p.ok && formatApiKey(p.id, p.secret) !== t) throw new Error('parse/format disagree');
  onlyDskErrors(() => assertKeyId(t));
});

// ----- audit: the row walker (rows as a damaged database or archive would hand them over) and HEAD
const anyCell = fc.oneof(fc.string({ maxLength: 80 }), fc.integer(), fc.constant(null), fc.double(), fc.boolean(), fc.jsonValue());
const auditKey = crypto.randomBytes(32);
function validRows(n) {
  const out = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const r = [seq, new Date(1e12 + seq).toISOString(), seq % 3 ? 'KEY_CREATE' : 'UNSEAL_FAILURE', 'a', null, null, canonicalJson({ n: seq }), prev];
    const h = chainHash(...r);
    out.push([...r, h, seq % 3 ? rowMac(auditKey, h) : null]);
    prev = h;
  }
  return out;
}
const base10 = validRows(10);
const rowsArb = fc.oneof(
  fc.array(fc.array(anyCell, { minLength: 0, maxLength: 11 }), { maxLength: 6 }),
  fc.tuple(fc.nat(9), fc.nat(9), anyCell).map(([i, j, v]) => base10.map((r, k) => (k === i ? r.map((c, m) => (m === j ? v : c)) : r))),
  fc.tuple(fc.nat(9), fc.nat(9)).map(([i, j]) => {
    const r = base10.slice();
    [r[i], r[j]] = [r[j], r[i]];
    return r;
  }),
);
await target(
  'audit',
  fc.tuple(rowsArb, fc.boolean(), fc.string({ maxLength: 200 })),
  async ([rows, keyed, head]) => {
    const w = await walkChain({ chunks: [rows], start: { seq: 1, prev_hash: GENESIS_HASH, from: 'genesis' }, auditKey: keyed ? auditKey : null });
    if (typeof w.ok !== 'boolean') throw new Error('no verdict');
    parseHead(head);
    parseHead(JSON.stringify({ format: 'dsk-audit-head/1', seq: rows.length, hash: head, mac: null }));
  },
  { async: true },
);

// ----- archive: the reader on archives written to disk, damaged line by line and byte by byte
{
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'dsk-fuzz-arch-'));
  const file = path.join(dir, 'a.jsonl.gz');
  const rows = validRows(30).map((r) => JSON.stringify(Object.fromEntries(['seq', 'ts', 'action', 'actor', 'source_ip', 'key_id', 'details', 'prev_hash', 'hash', 'mac'].map((c, i) => [c, r[i]]))));
  const h0 = { format: ARCHIVE_FORMAT, home_id: 'f'.repeat(32), first_seq: 1, last_seq: 30, first_prev_hash: GENESIS_HASH, last_hash: validRows(30)[29][8], rows: 30, created_at: new Date().toISOString() };
  const header = JSON.stringify({ ...h0, mac: headerMac(auditKey, h0) });
  const archiveArb = fc.oneof(
    // line-level: replace, drop or add lines (the header included), gzip as dsk does
    fc.array(fc.tuple(fc.nat(30), fc.oneof(fc.string({ maxLength: 100 }), fc.jsonValue().map((v) => JSON.stringify(v)), fc.constant(null))), { maxLength: 3 }).map((edits) => {
      const lines = [header, ...rows];
      for (const [i, v] of edits) {
        if (v === null) lines.splice(i, 1);
        else lines[i] = v;
      }
      return Buffer.concat([zlib.gzipSync(lines[0] + '\n'), zlib.gzipSync(lines.slice(1).join('\n') + '\n')]);
    }),
    // byte-level: flips and cuts in the compressed file
    fc.tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.option(fc.nat())).map(([flips, cut]) => {
      const b = Buffer.concat([zlib.gzipSync(header + '\n'), zlib.gzipSync(rows.join('\n') + '\n')]);
      for (const [i, v] of flips) b[i % b.length] = v;
      return cut === null ? b : b.subarray(0, cut % b.length);
    }),
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  );
  await target(
    'archive',
    fc.tuple(archiveArb, fc.boolean()),
    async ([bytes, keyed]) => {
      fs.writeFileSync(file, bytes);
      let rep;
      try {
        rep = await verifyArchive(file, keyed ? auditKey : null, null);
      } catch (e) {
        if (!isDskError(e)) throw e;
        return;
      }
      if (typeof rep.ok !== 'boolean') throw new Error('no verdict');
    },
    { async: true },
  );
  fs.rmSync(dir, { recursive: true, force: true });
}

console.log('\n' + JSON.stringify({ node: process.version, seed: SEED, results }, null, 2));
process.exit(results.some((r) => r.crashes) ? 1 : 0);
