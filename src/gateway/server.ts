/**
 * The authenticating gateway (`dsk serve`): node:http in front of an OpenAI-compatible upstream.
 *
 * Per request, in this order (cheapest refusal first, nothing touches SQLite):
 *   source address blocked?  → 429 ip_blocked
 *   credential header parse  → 401            (Authorization: Bearer / X-Api-Key)
 *   key: checksum → index lookup by id → constant-time SHA-256 compare → state/time (grace works
 *        until grace_until); or JWT: kid → parent key state → HS256 verify
 *   per-key CIDR allow-list  → 403
 *   route → permission → role → 403 (unknown route → 404, never proxied)
 *   body (bounded, → 413), then signature if required or sent: skew, HMAC, nonce → 401
 *   per-key token bucket     → 429 + Retry-After (after the signature, so a key's text without
 *        its secret cannot spend the key's budget)
 *   proxy: request body buffered (requests are small and the signature needs its hash); the
 *   response is piped as it arrives (SSE is not buffered), no compression is added.
 *
 * Refusals are counted in /metrics and written to the audit log in batches: rows are aggregated
 * per (action, source address, reason, key) and flushed once a second together with usage
 * counters, so a flood of bad requests costs one small transaction a second, not one per request.
 */
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { FlushBatch } from './flush-worker.js';
import type { AddressInfo } from 'node:net';
import type { Home } from '../app/home.js';
import type { Permission } from '../domain/roles.js';
import { PERMISSIONS } from '../domain/roles.js';
import { checkUsable, keyView, listKeys, type KeyRow } from '../app/keys.js';
import { auditFilterFromParams, queryAudit } from '../audit/query.js';
import { constantTimeEqual, sha256Hex } from '../kernel/crypto.js';
import { parseApiKey } from '../domain/key-text.js';
import { parseDuration } from '../kernel/duration.js';
import { UnavailableError, UsageError } from '../kernel/errors.js';
import { ioError } from '../kernel/files.js';
import type { Clock } from '../kernel/clock.js';
import { systemClock } from '../kernel/clock.js';
import { KeyIndex, ipAllowed, normalizeIp, type IndexedKey } from './key-index.js';
import { FailureTracker, RateLimiter, type BucketConfig } from './rate-limit.js';
import { Metrics } from './metrics.js';
import { clientIp, parseCredential } from './credentials.js';
import { bodyHash, computeSignature, legacySignature, NonceCache, parseSignatureHeaders, signatureMatches, timestampFresh } from './signature.js';
import { tokenKey, tokenKid, verifyToken } from './jwt.js';

/** Route table: "METHOD /path" or "* /path"; a trailing "/*" matches the prefix. */
export const DEFAULT_ROUTES: Record<string, Permission> = {
  'POST /v1/chat/completions': 'model.invoke',
  'POST /v1/completions': 'model.invoke',
  'POST /v1/embeddings': 'model.invoke',
  'GET /v1/models': 'model.invoke',
  'GET /v1/models/*': 'model.invoke',
  'POST /api/chat': 'model.invoke',
  'POST /api/generate': 'model.invoke',
  'POST /api/embed': 'model.invoke',
  'POST /api/embeddings': 'model.invoke',
  'GET /api/tags': 'model.invoke',
  'POST /api/pull': 'param.change',
  'POST /api/create': 'param.change',
  'DELETE /api/delete': 'param.change',
  'POST /api/copy': 'param.change',
  'POST /api/push': 'param.change',
  'POST /v1/load_lora_adapter': 'param.change',
  'POST /v1/unload_lora_adapter': 'param.change',
  'GET /dsk/audit': 'audit.view',
  'GET /dsk/keys': 'key.manage',
};

export interface GatewayOptions {
  upstream: string;
  host: string;
  port: number;
  requireSignature: boolean;
  allowLegacySignature: boolean;
  maxBodyBytes: number;
  rateLimit: BucketConfig;
  failures: { max: number; windowMs: number; blockMs: number };
  skewS: number;
  trustProxy: boolean;
  routes: Record<string, Permission>;
  tls?: { cert: string; key: string; clientCa?: string };
  upstreamAuthorization?: string;
  drainMs: number;
  flushMs: number;
  pollMs: number;
}

const DEFAULTS = {
  listen: '127.0.0.1:8080',
  max_body: 1024 * 1024,
  rate_limit: { rps: 50, burst: 100 },
  brute_force: { max_failures: 10, window: '60s', block: '5m' },
  skew: '300s',
  drain: '30s',
};

/** Gateway options from dsk.json `gateway` merged under command-line flags. */
export function gatewayOptions(config: Record<string, unknown> | undefined, flags: Partial<Record<string, unknown>>): GatewayOptions {
  const g = (config ?? {}) as Record<string, any>;
  const upstream = (flags.upstream as string) ?? g.upstream;
  if (!upstream) throw new UsageError('ERR_NO_UPSTREAM', 'no upstream: pass --upstream URL or set gateway.upstream in dsk.json', { hint: 'for example --upstream http://127.0.0.1:11434' });
  let u: URL;
  try {
    u = new URL(upstream);
  } catch {
    throw new UsageError('ERR_UPSTREAM_URL', `invalid --upstream '${upstream}': expected an http:// or https:// URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError('ERR_UPSTREAM_URL', `invalid --upstream '${upstream}': expected an http:// or https:// URL`);
  const listen = String(flags.listen ?? g.listen ?? DEFAULTS.listen);
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
  if (!m || Number(m[3]) > 65535) throw new UsageError('ERR_LISTEN_ADDRESS', `invalid --listen '${listen}': expected HOST:PORT`, { hint: 'for example 127.0.0.1:8080 or [::1]:8080 (port 0 picks a free one)' });
  const num = (v: unknown, what: string, min = 1): number => {
    const n = typeof v === 'string' ? Number(v) : (v as number);
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min) throw new UsageError('ERR_NUMBER', `invalid ${what} '${String(v)}': expected a number ≥ ${min}`);
    return n;
  };
  const dur = (v: unknown, what: string) => (typeof v === 'number' ? v : parseDuration(String(v), what));
  const rl = { ...DEFAULTS.rate_limit, ...(g.rate_limit ?? {}) };
  const bf = { ...DEFAULTS.brute_force, ...(g.brute_force ?? {}) };
  const routes: Record<string, Permission> = { ...DEFAULT_ROUTES, ...(g.routes ?? {}) };
  for (const [r, p] of Object.entries(routes)) {
    if (!/^(\*|[A-Z]+) \/\S*$/.test(r)) throw new UsageError('ERR_ROUTE', `gateway.routes: invalid route '${r}'`, { hint: "use 'METHOD /path', '* /path' or a trailing /* for a prefix" });
    if (!(PERMISSIONS as readonly string[]).includes(p)) throw new UsageError('ERR_ROUTE_PERMISSION', `gateway.routes: '${r}' maps to unknown permission '${p}'`, { hint: `known: ${PERMISSIONS.join(', ')}` });
  }
  const tlsCert = (flags.tlsCert as string) ?? g.tls_cert;
  const tlsKey = (flags.tlsKey as string) ?? g.tls_key;
  const clientCa = (flags.clientCa as string) ?? g.client_ca;
  if (!!tlsCert !== !!tlsKey) throw new UsageError('ERR_FLAGS_TOGETHER', '--tls-cert and --tls-key go together');
  if (clientCa && !tlsCert) throw new UsageError('ERR_FLAGS_TOGETHER', '--client-ca needs --tls-cert and --tls-key');
  return {
    upstream: u.toString().replace(/\/$/, ''),
    host: m[1] ?? m[2],
    port: Number(m[3]),
    requireSignature: !!(flags.requireSignature ?? g.require_signature),
    allowLegacySignature: !!(flags.allowLegacySignature ?? g.allow_legacy_signature),
    maxBodyBytes: num(flags.maxBody ?? g.max_body ?? DEFAULTS.max_body, '--max-body'),
    rateLimit: { rps: num(flags.rps ?? rl.rps, 'rate limit rps', 0.001), burst: num(flags.burst ?? rl.burst, 'rate limit burst') },
    failures: {
      max: num(flags.maxFailures ?? bf.max_failures, 'brute_force.max_failures'),
      windowMs: dur(flags.failureWindow ?? bf.window, 'brute_force.window'),
      blockMs: dur(flags.blockFor ?? bf.block, 'brute_force.block'),
    },
    skewS: dur(flags.skew ?? g.skew ?? DEFAULTS.skew, 'signature skew') / 1000,
    trustProxy: !!(flags.trustProxy ?? g.trust_proxy),
    routes,
    tls: tlsCert ? { cert: tlsCert, key: tlsKey, clientCa } : undefined,
    drainMs: dur(flags.drain ?? g.drain ?? DEFAULTS.drain, '--drain'),
    flushMs: 1000,
    pollMs: 250,
  };
}

interface CompiledRoute {
  method: string | null;
  path: string;
  prefix: boolean;
  permission: Permission;
  name: string;
}

function compileRoutes(routes: Record<string, Permission>): CompiledRoute[] {
  return Object.entries(routes).map(([r, permission]) => {
    const [method, p] = r.split(' ');
    const prefix = p.endsWith('/*');
    return { method: method === '*' ? null : method, path: prefix ? p.slice(0, -1) : p, prefix, permission, name: r };
  });
}

function matchRoute(routes: CompiledRoute[], method: string, pathname: string): CompiledRoute | null {
  for (const r of routes) {
    if (r.method && r.method !== method) continue;
    if (r.prefix ? pathname.startsWith(r.path) && pathname.length > r.path.length : pathname === r.path) return r;
  }
  return null;
}

/** OpenAI's error body: {"error":{"message","type","param","code"}}. */
export function errorBody(message: string, type: string, code: string): string {
  return JSON.stringify({ error: { message, type, param: null, code } });
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);
const STRIP_TO_UPSTREAM = new Set([...HOP_BY_HOP, 'authorization', 'x-api-key', 'x-signature', 'x-timestamp', 'x-nonce', 'content-length', 'x-forwarded-for']);

interface Refusal {
  status: number;
  type: string;
  code: string;
  message: string;
  reason: string;
  retryAfter?: number;
  action?: string;
  keyId?: string | null;
}

class AuditBatch {
  #rows = new Map<string, { action: string; source_ip: string; key_id: string | null; details: Record<string, unknown>; count: number; first: string }>();
  static readonly MAX = 10_000;

  add(action: string, ip: string, keyId: string | null, details: Record<string, unknown>, nowMs: number): void {
    let k = `${action}|${ip}|${keyId ?? ''}|${canonical(details)}`;
    if (!this.#rows.has(k) && this.#rows.size >= AuditBatch.MAX) {
      k = `${action}|overflow`;
      details = { reason: 'AGGREGATED_OVERFLOW' };
      ip = '*';
      keyId = null;
    }
    const r = this.#rows.get(k);
    if (r) r.count++;
    else this.#rows.set(k, { action, source_ip: ip, key_id: keyId, details, count: 1, first: new Date(nowMs).toISOString() });
  }

  take() {
    const rows = [...this.#rows.values()];
    this.#rows.clear();
    return rows;
  }

  restore(rows: ReturnType<AuditBatch['take']>): void {
    for (const r of rows) {
      const k = `${r.action}|${r.source_ip}|${r.key_id ?? ''}|${canonical(r.details)}`;
      const e = this.#rows.get(k);
      if (e) e.count += r.count;
      else this.#rows.set(k, r);
    }
  }

  get size(): number {
    return this.#rows.size;
  }
}

function canonical(o: Record<string, unknown>): string {
  return JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]));
}

export interface Gateway {
  url: string;
  port: number;
  metrics: Metrics;
  index: KeyIndex;
  /** writes pending usage and audit rows now (on the writer thread) */
  flush(): Promise<void>;
  /** stop accepting, drain in-flight requests (up to drainMs), flush, stop timers */
  close(): Promise<void>;
}

export async function startGateway(home: Home, o: GatewayOptions, clock: Clock = systemClock): Promise<Gateway> {
  home.requireUnsealed();
  // The request path only reads from this connection (the key index poll, admin endpoints). While
  // another process commits, a read waits at most 100 ms instead of freezing the event loop; a
  // failed poll keeps the last good view and tries again 250 ms later.
  const previousBusy = await home.store.setLockTimeout(100);
  const index = await KeyIndex.load(home);
  index.start(o.pollMs);
  const metrics = new Metrics();
  const limiter = new RateLimiter();
  const failures = new FailureTracker(o.failures);
  const nonces = new NonceCache(o.skewS * 2000);
  const routes = compileRoutes(o.routes);
  const audit = new AuditBatch();
  const usage = new Map<string, { n: number; last: number }>();
  const tokenKeys = new Map<string, Buffer>();
  const upstream = new URL(o.upstream);
  const upstreamBase = upstream.pathname.replace(/\/$/, '');
  const upstreamLib = upstream.protocol === 'https:' ? https : http;
  const agent = new upstreamLib.Agent({ keepAlive: true, maxSockets: 256 });
  const roles = home.config.roles;

  // Writes happen on a worker thread with its own connection (see flush-worker.ts): the request
  // path never waits for an fsync. A batch that fails (store locked, disk full) is merged back
  // and retried on the next tick, so counts and refusal rows are kept, not lost.
  const { auditKey } = home.requireUnsealed();
  const workerFile = import.meta.url.endsWith('.ts') ? '../../dist/gateway/flush-worker.js' : './flush-worker.js';
  const writer = new Worker(new URL(workerFile, import.meta.url), { workerData: { home: home.dir, auditKey: new Uint8Array(auditKey) } });
  writer.unref();
  const inFlightBatches = new Map<number, { counts: [string, number, number][]; rows: FlushBatch['rows']; raw: ReturnType<AuditBatch['take']>; done: () => void }>();
  let batchSeq = 0;
  writer.on('message', (m: { seq?: number; ok?: boolean }) => {
    if (m.seq === undefined) return;
    const b = inFlightBatches.get(m.seq);
    inFlightBatches.delete(m.seq);
    if (!b) return;
    if (!m.ok) {
      for (const [id, n, last] of b.counts) {
        const e = usage.get(id);
        usage.set(id, e ? { n: e.n + n, last: Math.max(e.last, last) } : { n, last });
      }
      audit.restore(b.raw);
    }
    b.done();
  });

  let writerDead = false;
  writer.on('error', () => {
    // The writer thread died (store unopenable): keep counting in memory and say so in /metrics.
    writerDead = true;
    for (const [seq, b] of inFlightBatches) {
      inFlightBatches.delete(seq);
      audit.restore(b.raw);
      b.done();
    }
  });

  /** Sends what is pending to the writer; resolves when every batch sent so far is settled. */
  function flush(): Promise<void> {
    if (!writerDead && (usage.size || audit.size)) {
      const counts = [...usage.entries()].map(([id, u]) => [id, u.n, u.last] as [string, number, number]);
      usage.clear();
      const raw = audit.take();
      const rows = raw.map((r) => ({
        action: r.action,
        actor: r.key_id ? `key:${r.key_id}` : 'anonymous',
        source_ip: r.source_ip,
        key_id: r.key_id,
        details: { ...r.details, count: r.count, first_at: r.first, via: 'dsk serve' },
      }));
      const seq = ++batchSeq;
      const settled = new Promise<void>((done) => inFlightBatches.set(seq, { counts, rows, raw, done }));
      settledBatches.set(seq, settled);
      void settled.then(() => settledBatches.delete(seq));
      writer.postMessage({ seq, counts, rows } satisfies FlushBatch);
    }
    return Promise.all([...settledBatches.values()]).then(() => undefined);
  }
  const settledBatches = new Map<number, Promise<void>>();
  const flushTimer = setInterval(() => void flush(), o.flushMs);
  flushTimer.unref();

  function refuse(res: http.ServerResponse, ip: string, r: Refusal, route: string): void {
    const now = clock.now();
    metrics.authFailure(r.reason);
    if (r.status === 401 && failures.fail(ip, now)) {
      audit.add('BRUTE_FORCE_BLOCK', ip, null, { failures: o.failures.max, window_ms: o.failures.windowMs, blocked_until: new Date(now + o.failures.blockMs).toISOString() }, now);
    }
    if (r.action !== 'NONE') audit.add(r.action ?? 'AUTH_FAILURE', ip, r.keyId ?? null, { reason: r.reason, route, status: r.status }, now);
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json' };
    if (r.retryAfter) headers['retry-after'] = String(r.retryAfter);
    if (r.status === 401) headers['www-authenticate'] = 'Bearer realm="dsk"';
    if (!res.headersSent) {
      res.writeHead(r.status, headers);
      res.end(errorBody(r.message, r.type, r.code));
    } else res.destroy();
  }

  const bad = (reason: string, message = 'invalid api key', code = 'invalid_api_key', keyId: string | null = null): Refusal => ({ status: 401, type: 'invalid_request_error', code, message, reason, keyId });

  /** The key behind a credential, or a refusal. */
  async function authenticate(req: http.IncomingMessage, now: number): Promise<{ key: IndexedKey; via: 'key' | 'jwt'; text: string } | Refusal> {
    const cred = parseCredential(req.headers);
    if (!cred.ok) return bad(cred.code, cred.code === 'MISSING_KEY' ? 'missing api key: send Authorization: Bearer <key> or X-Api-Key' : 'malformed authorization header');
    if (cred.kind === 'key') {
      const p = parseApiKey(cred.text);
      if (!p.ok) return bad(p.reason);
      const k = index.get(p.id);
      if (!k || !constantTimeEqual(sha256Hex(cred.text), k.row.key_hash)) return bad('NOT_FOUND');
      const u = checkUsable(k.row, now);
      if (!u.ok) return bad(u.code, `api key ${k.row.id} is ${u.code.toLowerCase()}`, `key_${u.code.toLowerCase()}`, k.row.id);
      return { key: k, via: 'key', text: cred.text };
    }
    const kid = tokenKid(cred.text);
    const k = kid ? index.get(kid) : undefined;
    if (!k) return bad('TOKEN_INVALID', 'invalid token', 'invalid_token');
    const u = checkUsable(k.row, now);
    if (!u.ok) return bad(u.code, `the key behind this token is ${u.code.toLowerCase()}`, `key_${u.code.toLowerCase()}`, k.row.id);
    let tk = tokenKeys.get(k.row.id);
    if (!tk) tokenKeys.set(k.row.id, (tk = await tokenKey(home.requireUnsealed().master, k.row.id)));
    const v = await verifyToken(cred.text, tk, k.row.id, now);
    if (!v.ok) return bad(v.code, v.code === 'TOKEN_EXPIRED' ? 'token expired' : 'invalid token', v.code === 'TOKEN_EXPIRED' ? 'token_expired' : 'invalid_token', k.row.id);
    return { key: k, via: 'jwt', text: cred.text };
  }

  function checkSignature(req: http.IncomingMessage, k: IndexedKey, via: 'key' | 'jwt', keyText: string, body: Buffer, now: number): Refusal | null {
    const required = o.requireSignature || k.options.require_signature === true;
    const parsed = parseSignatureHeaders(req.headers);
    const id = k.row.id;
    if (!parsed.ok) {
      if (parsed.code === 'SIGNATURE_MISSING' && !required) return null;
      return bad(parsed.code, parsed.code === 'SIGNATURE_MISSING' ? 'this key requires signed requests (X-Timestamp, X-Nonce, X-Signature)' : 'malformed signature headers', 'invalid_signature', id);
    }
    const s = parsed.value;
    if (!timestampFresh(s.timestamp, now, o.skewS)) return bad('SIGNATURE_STALE', 'signature timestamp outside the allowed clock skew', 'invalid_signature', id);
    const secret = index.secretOf(k);
    const target = req.url ?? '/';
    let ok = false;
    let legacy = false;
    if (s.nonce) {
      ok = signatureMatches(computeSignature(secret, { timestamp: s.timestamp, nonce: s.nonce, method: req.method ?? 'GET', path: target, bodySha256: bodyHash(body), keyId: id }), s.signature);
    }
    if (!ok && o.allowLegacySignature && via === 'key') {
      ok = signatureMatches(legacySignature(secret, keyText, s.timestamp, req.method ?? 'GET', target), s.signature);
      legacy = ok;
    }
    if (!ok) return bad(s.nonce || o.allowLegacySignature ? 'SIGNATURE_INVALID' : 'SIGNATURE_MALFORMED', 'signature does not match', 'invalid_signature', id);
    // The legacy formula has no nonce: its signature stands in for one, so an identical request
    // cannot be replayed (a changed body can: the formula does not cover it).
    if (!nonces.checkAndAdd(id, legacy ? `legacy:${s.signature}` : s.nonce, now)) return bad('NONCE_REPLAYED', 'nonce already used', 'invalid_signature', id);
    return null;
  }

  const EMPTY = Buffer.alloc(0);
  function readBody(req: http.IncomingMessage): Promise<Buffer | null> | Buffer | null {
    const cl = req.headers['content-length'];
    if (cl !== undefined && Number(cl) > o.maxBodyBytes) return null;
    if (cl === '0' || (cl === undefined && !req.headers['transfer-encoding'])) return EMPTY;
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (c: Buffer) => {
        size += c.length;
        if (size > o.maxBodyBytes) {
          req.removeAllListeners('data');
          req.pause();
          resolve(null);
        } else chunks.push(c);
      });
      req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
      req.on('error', reject);
    });
  }

  async function adminResponse(res: http.ServerResponse, url: { searchParams: URLSearchParams }, name: string): Promise<void> {
    let payload: unknown;
    if (name === 'GET /dsk/keys') {
      payload = { object: 'list', data: (await listKeys(home)).map(keyView) };
    } else {
      let filter;
      try {
        filter = auditFilterFromParams(url.searchParams, clock.now());
      } catch (e) {
        if (!(e instanceof UsageError)) throw e;
        res.writeHead(400, { 'content-type': 'application/json' });
        return void res.end(errorBody(e.message, 'invalid_request_error', 'invalid_filter'));
      }
      const rows = await queryAudit(home.store, filter);
      payload = { object: 'list', data: rows.map((r) => ({ seq: r.seq, ts: r.ts, action: r.action, actor: r.actor, source_ip: r.source_ip, key_id: r.key_id, details: JSON.parse(r.details) })) };
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(payload));
  }

  function proxy(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, ip: string, done: () => void): void {
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!STRIP_TO_UPSTREAM.has(k) && v !== undefined) headers[k] = v;
    headers['host'] = upstream.host;
    headers['content-length'] = String(body.length);
    headers['x-forwarded-for'] = ip;
    if (o.upstreamAuthorization) headers['authorization'] = o.upstreamAuthorization;
    const up = upstreamLib.request(
      { protocol: upstream.protocol, hostname: upstream.hostname, port: upstream.port, method: req.method, path: upstreamBase + (req.url ?? '/'), headers, agent },
      (ur) => {
        const out: http.OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(ur.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
        res.writeHead(ur.statusCode ?? 502, out);
        // A streamed answer (SSE, chunked) shows its headers at once; a sized one goes out with
        // its body in one write.
        if (ur.headers['content-length'] === undefined) res.flushHeaders();
        ur.pipe(res);
        ur.on('error', () => res.destroy());
        ur.on('end', done);
      },
    );
    up.on('error', () => {
      metrics.upstreamError();
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(errorBody('the upstream model server is unavailable', 'upstream_error', 'upstream_unavailable'));
      } else res.destroy();
      done();
    });
    res.on('close', () => {
      if (!res.writableFinished) up.destroy();
    });
    up.setNoDelay(true);
    up.end(body);
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const now = clock.now();
    const ip = normalizeIp(clientIp(req.socket.remoteAddress, req.headers['x-forwarded-for'], o.trustProxy));
    let keyLabel = '-';
    let routeLabel = 'unknown';
    metrics.inFlight++;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      metrics.inFlight--;
      metrics.request(keyLabel, routeLabel, res.statusCode, Number(process.hrtime.bigint() - started) / 1e9);
    };
    res.on('close', finish);
    const target = req.url ?? '/';
    const q = target.indexOf('?');
    const pathname = q < 0 ? target : target.slice(0, q);
    const url = { pathname, get searchParams() { return new URL(target, 'http://gateway').searchParams; } };
    if (req.method === 'GET' && url.pathname === '/healthz') {
      routeLabel = '/healthz';
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"status":"ok"}');
    }
    if (req.method === 'GET' && url.pathname === '/metrics') {
      routeLabel = '/metrics';
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return void res.end(metrics.render({ keys: index.all().length, reloads: index.reloads }));
    }
    const blocked = failures.blockedFor(ip, now);
    if (blocked) {
      metrics.authFailure('IP_BLOCKED');
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(blocked) });
      return void res.end(errorBody('too many failed attempts from this address; try later', 'requests', 'ip_blocked'));
    }
    const route = matchRoute(routes, req.method ?? 'GET', url.pathname);
    const a = await authenticate(req, now);
    // Audit rows name the matched route, never the raw path: the path is the caller's text (it could
    // even be shaped like a key, which the audit writer refuses, poisoning the whole batch).
    if ('status' in a) return refuse(res, ip, a, route?.name ?? 'unknown');
    const k = a.key;
    keyLabel = k.row.id;
    if (!ipAllowed(k.allow, ip))
      return refuse(res, ip, { status: 403, type: 'permission_error', code: 'ip_not_allowed', message: 'this key may not be used from this address', reason: 'IP_NOT_ALLOWED', keyId: k.row.id }, route?.name ?? 'unknown');
    if (!route) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return void res.end(errorBody(`unknown route ${req.method} ${url.pathname}`, 'invalid_request_error', 'unknown_route'));
    }
    routeLabel = route.name;
    const perms = Object.hasOwn(roles, k.row.role) ? roles[k.row.role] : [];
    if (!perms.includes(route.permission))
      return refuse(res, ip, { status: 403, type: 'permission_error', code: 'permission_denied', message: `role ${k.row.role} may not ${route.permission} (${route.name})`, reason: 'ROLE_DENIED', keyId: k.row.id }, route.name);
    const body = await readBody(req);
    if (!body) {
      res.setHeader('connection', 'close');
      return refuse(res, ip, { status: 413, type: 'invalid_request_error', code: 'request_too_large', message: `request body over ${o.maxBodyBytes} bytes`, reason: 'BODY_TOO_LARGE', keyId: k.row.id }, route.name);
    }
    const sig = checkSignature(req, k, a.via, a.text, body, now);
    if (sig) return refuse(res, ip, sig, route.name);
    // After the signature: someone holding only a signing key's text cannot spend its budget.
    const rl = k.options.rate_limit ? { ...o.rateLimit, ...k.options.rate_limit } : o.rateLimit;
    const wait = limiter.take(k.row.id, rl as BucketConfig, now);
    if (wait)
      return refuse(res, ip, { status: 429, type: 'requests', code: 'rate_limit_exceeded', message: `rate limit of ${rl.rps} requests per second exceeded`, reason: 'RATE_LIMITED', action: 'RATE_LIMITED', retryAfter: wait, keyId: k.row.id }, route.name);
    const u = usage.get(k.row.id);
    if (u) (u.n++, (u.last = now));
    else usage.set(k.row.id, { n: 1, last: now });
    if (route.name.startsWith('GET /dsk/')) return adminResponse(res, url, route.name);
    proxy(req, res, body, ip, () => {});
  }

  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(errorBody('internal gateway error', 'server_error', 'internal_error'));
      } else res.destroy();
    });
  };
  const stopBackground = async () => {
    clearInterval(flushTimer);
    index.stop();
    agent.destroy();
    await writer.terminate();
    for (const b of tokenKeys.values()) b.fill(0);
  };
  let server: http.Server;
  try {
    const read = (f: string) => {
      try {
        return fs.readFileSync(f);
      } catch (e) {
        throw ioError(e, f);
      }
    };
    server = o.tls
      ? https.createServer({ cert: read(o.tls.cert), key: read(o.tls.key), ca: o.tls.clientCa ? read(o.tls.clientCa) : undefined, requestCert: !!o.tls.clientCa, rejectUnauthorized: !!o.tls.clientCa, noDelay: true }, listener)
      : http.createServer({ noDelay: true }, listener);
    server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(o.port, o.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await stopBackground();
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL')
      throw new UnavailableError('ERR_LISTEN', `cannot listen on ${o.host}:${o.port} (${code})`, { hint: code === 'EADDRINUSE' ? 'another process holds the port: choose another --listen' : 'check the address and your permission to bind it' });
    if ((e as { exitCode?: number }).exitCode) throw e;
    throw new UsageError('ERR_TLS', `cannot start TLS: ${(e as Error).message.split('\n')[0]}`, { hint: 'check that --tls-cert and --tls-key are PEM files that belong together' });
  }
  const addr = server.address() as AddressInfo;
  const hostPart = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | null = null;
  return {
    url: `${o.tls ? 'https' : 'http'}://${hostPart}:${addr.port}`,
    port: addr.port,
    metrics,
    index,
    flush,
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((r) => server.close(() => r()));
        server.closeIdleConnections();
        const deadline = Date.now() + o.drainMs;
        while (metrics.inFlight > 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
          server.closeIdleConnections();
        }
        server.closeAllConnections();
        await closed;
        clearInterval(flushTimer);
        index.stop();
        agent.destroy();
        for (const b of tokenKeys.values()) b.fill(0);
        await flush(); // waits for batches already sent; a failed one is merged back …
        await flush(); // … and retried once here
        if (!writerDead)
          await new Promise<void>((r) => {
            writer.once('message', () => r());
            writer.once('error', () => r());
            writer.postMessage('close');
          });
        await writer.terminate();
        await home.store.setLockTimeout(previousBusy).catch(() => {});
      })();
      return closing;
    },
  };
}

export type { KeyRow };
