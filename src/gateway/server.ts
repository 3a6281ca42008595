/**
 * Over 300 lines: it is the request pipeline in order, one line per step; the steps themselves live in their own modules.
 *
 * The authenticating gateway (`dsk serve`): node:http in front of an OpenAI-compatible upstream.
 * This module listens, runs the request pipeline and drains on close; each step lives in its own
 * module. Per connection: caps overall and per address (connection-caps.ts). Per request, in this
 * order (cheapest refusal first; only the /dsk/ endpoints read SQLite):
 *
 *   target → normalised path → 400 invalid_path (dot segments, encoded / . %)   (path.ts)
 *   source address blocked?  → 429 ip_blocked                           (brute-force.ts)
 *   credential → key or JWT  → 401                                      (authenticate.ts)
 *   per-key CIDR allow-list  → 403                                      (kernel/ip.ts)
 *   route → permission → role → 403 (unknown route → 404, never proxied) (routes.ts)
 *   per-key requests in progress → 429; per-key token bucket → 429 + Retry-After, both before
 *        a byte of the body is read                              (concurrency.ts, rate-limit.ts)
 *   body: size → 413, time → 408, all bodies together → 503            (body.ts)
 *   signature if required or sent → 401; its failure gives the token back, so a key's text
 *        without its secret cannot spend the key's budget               (signature-check.ts)
 *   model allow-list → 403; quota → 429 quota_exceeded                  (metered-calls.ts)
 *   usage counted, source labelled (→ ANOMALY row if new to the key), then /dsk/… answered here
 *        (admin.ts) or proxied                         (usage-sink.ts, monitoring.ts, proxy.ts)
 *   at the end: tokens read from the answer, per key/hour/model         (usage-meter.ts)
 *
 * Every refusal goes through refusals.ts: OpenAI's error body, /metrics, and an aggregated audit
 * row flushed once a second with the usage counters.
 */
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Home } from '../app/home.js';
import { UnavailableError, UsageError } from '../kernel/errors.js';
import { ioError } from '../kernel/files.js';
import type { Clock } from '../kernel/clock.js';
import { systemClock } from '../kernel/clock.js';
import { ipAllowed, normalizeIp } from '../kernel/ip.js';
import { countResponseBytes, loggedPath, type AccessLog } from './access-log.js';
import { AdminEndpoints } from './admin.js';
import { Authenticator } from './authenticate.js';
import { clientIp } from './credentials.js';
import { KeyIndex } from './key-index.js';
import { Metrics } from './metrics.js';
import { Monitoring } from './monitoring.js';
import type { GatewayOptions } from './options.js';
import { UpstreamProxy } from './proxy.js';
import { RateLimiter, type BucketConfig } from './rate-limit.js';
import { BruteForceGuard } from './brute-force.js';
import { BodyBudget, readBoundedBody } from './body.js';
import { ConcurrencyLimiter } from './concurrency.js';
import { capConnections } from './connection-caps.js';
import { normaliseTarget } from './path.js';
import { errorBody, Refuser, RefusalBatch, type Refusal } from './refusals.js';
import { ADMIN_ROUTE_PREFIX, RouteTable } from './routes.js';
import { SignatureCheck } from './signature-check.js';
import { SharedRateLimiter } from './shared-rate-limit.js';
import { StoreHealth } from './store-health.js';
import { UsageSink } from './usage-sink.js';
import { HourlyUsage } from './usage-meter.js';
import { QuotaTracker } from './quota-tracker.js';
import { LiveStats } from './live-stats.js';
import { MeteredCalls } from './metered-calls.js';

export { gatewayOptions, type GatewayOptions, type GatewayOverrides } from './options.js';

export interface Gateway {
  url: string;
  port: number;
  metrics: Metrics;
  index: KeyIndex;
  /** source labels, anomalies, alerts */
  monitoring: Monitoring;
  /** the last minute of traffic (GET /dsk/stats, dsk top); labels and alerts plug in here */
  live: LiveStats;
  /** writes pending usage and audit rows now (on the writer thread) */
  flush(): Promise<void>;
  /** stop accepting, drain in-flight requests (up to drainMs), flush, stop timers */
  close(): Promise<void>;
}

/** `accessLog`: one JSON line per request (access-log.ts); the caller owns it (opens, reopens, closes). */
export async function startGateway(home: Home, o: GatewayOptions, clock: Clock = systemClock, extras: { accessLog?: AccessLog } = {}): Promise<Gateway> {
  const { auditKey } = home.requireUnsealed();
  const metrics = new Metrics();
  const monitoring = await Monitoring.open(home, metrics, clock); // a bad GeoIP file or webhook secret fails here, before anything starts
  // The request path only reads from this connection (the key index poll, admin endpoints). While
  // another process commits, a read waits at most 100 ms instead of freezing the event loop; a
  // failed poll keeps the last good view and tries again 250 ms later.
  const previousBusy = await home.store.setLockTimeout(100);
  const index = await KeyIndex.load(home).catch((e) => {
    monitoring.stop();
    throw e;
  });
  index.start(o.pollMs);
  const limiter = new RateLimiter(o.rateShare);
  const sharedLimiter = o.redisUrl ? new SharedRateLimiter(o.redisUrl, o.redisPassword, limiter) : null;
  // up to a second for Redis, so the first requests use the shared buckets rather than the fallback
  if (sharedLimiter) await Promise.race([sharedLimiter.ready(), new Promise((r) => setTimeout(r, 1000).unref())]);
  const failures = new BruteForceGuard(o.failures);
  const inProgress = new ConcurrencyLimiter();
  const bodyBudget = new BodyBudget(o.maxBufferedBytes);
  const refusals = new RefusalBatch();
  const refuser = new Refuser(metrics, failures, o.failures, refusals, clock);
  const hourly = new HourlyUsage();
  const quotas = new QuotaTracker(() => index.all().map((k) => ({ id: k.row.id, options: k.options })), () => clock.now());
  const live = new LiveStats();
  live.nameOf = (id) => index.get(id)?.row.name ?? null;
  if (monitoring.labeler.enabled)
    live.labelSource = (ip) => {
      const l = monitoring.labeler.labels(ip);
      return { ...(l.site ? { site: l.site } : {}), ...(l.country ? { country: l.country } : {}) };
    };
  live.activeAlerts = () => monitoring.alerts?.firing() ?? [];
  const sink = new UsageSink(home.dir, auditKey, refusals, o.flushMs, hourly, quotas);
  const calls = new MeteredCalls(o.countTokens, hourly, quotas, live, clock);
  sink.carry(monitoring.side);
  const auth = new Authenticator(index, () => home.requireUnsealed().master);
  const signatures = new SignatureCheck(index, o, clock.now(), home.store.nonces);
  const routes = new RouteTable(o.routes);
  const upstream = new UpstreamProxy(o.upstream, o.upstreamAuthorization, metrics);
  const admin = new AdminEndpoints(home, live);
  const health = new StoreHealth(index, sink, o.cacheMs, o.maxHeldRows, () => sharedLimiter?.fallbacks ?? 0);
  const roles = home.config.roles;
  const refund = (keyId: string, rl: BucketConfig) => (sharedLimiter ? void sharedLimiter.refund(keyId, rl) : limiter.refund(keyId));

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const now = clock.now();
    const ip = normalizeIp(clientIp(req.socket.remoteAddress, req.headers['x-forwarded-for'], o.trustProxy));
    let keyLabel = '-';
    let routeLabel = 'unknown';
    let bytesIn = 0;
    const target = req.url ?? '/';
    const bytesOut = extras.accessLog ? countResponseBytes(res) : null;
    metrics.inFlight++;
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      metrics.inFlight--;
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      metrics.request(keyLabel, routeLabel, res.statusCode, seconds);
      if (bytesOut)
        extras.accessLog!.write({ time: new Date(now).toISOString(), key_id: keyLabel === '-' ? null : keyLabel, method: req.method ?? '', route: routeLabel, path: loggedPath(target), status: res.statusCode, latency_ms: Math.round(seconds * 1e5) / 100, bytes_in: bytesIn, bytes_out: bytesOut(), source: ip });
    };
    res.on('close', finish);
    const normalised = normaliseTarget(target);
    if (!normalised.ok) {
      metrics.authFailure('INVALID_PATH');
      res.writeHead(400, { 'content-type': 'application/json' });
      return void res.end(errorBody(normalised.reason, 'invalid_request_error', 'invalid_path'));
    }
    const pathname = normalised.path;
    const forwarded = pathname + normalised.query;
    if (req.method === 'GET' && pathname === '/healthz') {
      routeLabel = '/healthz';
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"status":"ok"}');
    }
    if (req.method === 'GET' && pathname === '/metrics') {
      routeLabel = '/metrics';
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return void res.end(metrics.render({ keys: index.all().length, reloads: index.reloads }) + monitoring.renderMetrics() + hourly.renderMetrics() + health.render());
    }
    const blocked = failures.blockedFor(ip, now);
    if (blocked) {
      metrics.authFailure('IP_BLOCKED');
      res.writeHead(429, { 'content-type': 'application/json', 'retry-after': String(blocked) });
      return void res.end(errorBody('too many failed attempts from this address; try later', 'requests', 'ip_blocked'));
    }
    const route = routes.match(req.method ?? 'GET', pathname);
    const outage = health.refusal();
    if (outage) return refuser.refuse(res, ip, outage, route?.name ?? 'unknown');
    const a = await auth.authenticate(req.headersDistinct, now);
    if ('status' in a) return refuser.refuse(res, ip, a, route?.name ?? 'unknown');
    const k = a.key;
    keyLabel = k.row.id;
    if (!ipAllowed(k.allow, ip))
      return refuser.refuse(res, ip, { status: 403, type: 'permission_error', code: 'ip_not_allowed', message: 'this key may not be used from this address', reason: 'IP_NOT_ALLOWED', keyId: k.row.id }, route?.name ?? 'unknown');
    if (!route) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return void res.end(errorBody(`unknown route ${req.method} ${pathname}`, 'invalid_request_error', 'unknown_route'));
    }
    routeLabel = route.name;
    const perms = Object.hasOwn(roles, k.row.role) ? roles[k.row.role] : [];
    if (!perms.includes(route.permission))
      return refuser.refuse(res, ip, { status: 403, type: 'permission_error', code: 'permission_denied', message: `role ${k.row.role} may not ${route.permission} (${route.name})`, reason: 'ROLE_DENIED', keyId: k.row.id }, route.name);
    const limit = concurrencyOf(k.options.max_concurrent, o.maxConcurrent);
    const release = inProgress.acquire(k.row.id, limit);
    if (!release)
      return refuser.refuse(res, ip, { status: 429, type: 'requests', code: 'concurrency_limit_exceeded', message: `this key already has ${limit} requests in progress`, reason: 'CONCURRENCY_LIMITED', action: 'RATE_LIMITED', retryAfter: 1, keyId: k.row.id }, route.name);
    res.once('close', release);
    const rl = k.options.rate_limit ? { ...o.rateLimit, ...k.options.rate_limit } : o.rateLimit;
    const wait = sharedLimiter ? await sharedLimiter.take(k.row.id, rl as BucketConfig, now) : limiter.take(k.row.id, rl as BucketConfig, now);
    if (wait)
      return refuser.refuse(res, ip, { status: 429, type: 'requests', code: 'rate_limit_exceeded', message: `rate limit of ${rl.rps} requests per second exceeded`, reason: 'RATE_LIMITED', action: 'RATE_LIMITED', retryAfter: wait, keyId: k.row.id }, route.name);
    // Until the signature holds, a signing key's text alone has not proven the caller: a refusal
    // before that gives the token back.
    const unproven = o.requireSignature || k.options.require_signature === true || req.headers['x-signature'] !== undefined;
    const read = await readBoundedBody(req, { maxBytes: o.maxBodyBytes, timeoutMs: o.bodyTimeoutMs }, bodyBudget);
    if (!read.ok) {
      if (unproven) refund(k.row.id, rl as BucketConfig);
      res.setHeader('connection', 'close');
      return refuser.refuse(res, ip, bodyRefusal(read.kind, o.maxBodyBytes, k.row.id), route.name);
    }
    const body = read.body;
    bytesIn = body.length;
    const sig = await signatures.check(req, k, a.via, a.text, body, now);
    if (sig) {
      refund(k.row.id, rl as BucketConfig);
      return refuser.refuse(res, ip, sig, route.name);
    }
    const call = calls.begin(req, k, route.name, pathname, body, ip, now);
    if ('status' in call) return refuser.refuse(res, ip, call, route.name);
    sink.count(k.row.id, now);
    monitoring.observe(k.row.id, ip, now);
    res.on('close', () => calls.end(call, res.statusCode));
    if (route.name.startsWith(ADMIN_ROUTE_PREFIX)) return admin.answer(res, route.name, forwarded, now);
    upstream.forward(req, res, call.body, ip, forwarded, call.tap);
  }

  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(errorBody('internal gateway error', 'server_error', 'internal_error'));
      } else res.destroy();
    });
  };
  /** Everything but the server: timers, the index poll, upstream sockets, token keys. */
  const stopBackground = () => {
    sink.stop();
    monitoring.stop();
    index.stop();
    upstream.close();
    sharedLimiter?.close();
    auth.wipe();
  };
  const restoreBusyTimeout = () => home.store.setLockTimeout(previousBusy).catch(() => {});

  let server: http.Server;
  try {
    server = await listen(o, listener);
    capConnections(server, o.connections, (cap) => metrics.connectionRefused(cap));
  } catch (e) {
    stopBackground();
    await sink.terminate();
    await restoreBusyTimeout();
    throw e;
  }
  const addr = server.address() as AddressInfo;
  const hostPart = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  let closing: Promise<void> | null = null;
  return {
    url: `${o.tls ? 'https' : 'http'}://${hostPart}:${addr.port}`,
    port: addr.port,
    metrics,
    index,
    monitoring,
    live,
    flush: () => sink.flush(),
    close() {
      closing ??= (async () => {
        await drain(server, metrics, o.drainMs);
        stopBackground();
        await sink.close();
        await restoreBusyTimeout();
      })();
      return closing;
    },
  };
}

/** A key's own max_concurrent when it is a positive integer, else the gateway's. */
function concurrencyOf(own: unknown, dflt: number): number {
  return typeof own === 'number' && Number.isInteger(own) && own >= 1 ? own : dflt;
}

function bodyRefusal(kind: 'too_large' | 'timeout' | 'busy', maxBytes: number, keyId: string): Refusal {
  if (kind === 'too_large') return { status: 413, type: 'invalid_request_error', code: 'request_too_large', message: `request body over ${maxBytes} bytes`, reason: 'BODY_TOO_LARGE', keyId };
  if (kind === 'timeout') return { status: 408, type: 'invalid_request_error', code: 'body_timeout', message: 'the request body did not arrive in time', reason: 'BODY_TIMEOUT', keyId };
  return { status: 503, type: 'server_error', code: 'gateway_busy', message: 'the gateway is holding too many request bodies; retry shortly', reason: 'BODIES_OVER_BUDGET', action: 'NONE', retryAfter: 1, keyId };
}

/** An http or https server listening on o.host:o.port; errors say which part failed. */
async function listen(o: GatewayOptions, listener: http.RequestListener): Promise<http.Server> {
  try {
    const read = (f: string) => {
      try {
        return fs.readFileSync(f);
      } catch (e) {
        throw ioError(e, f);
      }
    };
    const server = o.tls
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
    return server;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE' || code === 'EACCES' || code === 'EADDRNOTAVAIL')
      throw new UnavailableError('ERR_LISTEN', `cannot listen on ${o.host}:${o.port} (${code})`, { hint: code === 'EADDRINUSE' ? 'another process holds the port: choose another listen address' : 'check the address and your permission to bind it', cause: e });
    if ((e as { exitCode?: number }).exitCode) throw e;
    throw new UsageError('ERR_TLS', `cannot start TLS: ${(e as Error).message.split('\n')[0]}`, { hint: 'check that the TLS certificate and key are PEM files that belong together', cause: e });
  }
}

/**
 * Stops accepting, closes idle keep-alive connections, lets requests in flight (long SSE streams
 * included) finish for up to drainMs, then closes the rest.
 */
async function drain(server: http.Server, metrics: Metrics, drainMs: number): Promise<void> {
  const closed = new Promise<void>((r) => server.close(() => r()));
  server.closeIdleConnections();
  const deadline = Date.now() + drainMs;
  while (metrics.inFlight > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
    server.closeIdleConnections();
  }
  server.closeAllConnections();
  await closed;
}
