/**
 * The authenticating gateway (`dsk serve`): node:http in front of an OpenAI-compatible upstream.
 * This module listens, runs the request pipeline and drains on close; each step lives in its own
 * module. Per request, in this order (cheapest refusal first; only the /dsk/ endpoints read SQLite):
 *
 *   source address blocked?  → 429 ip_blocked                           (rate-limit.ts)
 *   credential → key or JWT  → 401                                      (authenticate.ts)
 *   per-key CIDR allow-list  → 403                                      (kernel/ip.ts)
 *   route → permission → role → 403 (unknown route → 404, never proxied) (routes.ts)
 *   body (bounded, → 413), then signature if required or sent → 401    (signature-check.ts)
 *   per-key token bucket     → 429 + Retry-After (after the signature, so a key's text without
 *        its secret cannot spend the key's budget)                      (rate-limit.ts)
 *   usage counted, then /dsk/… answered here (admin.ts) or proxied     (usage-sink.ts, proxy.ts)
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
import { AdminEndpoints } from './admin.js';
import { Authenticator } from './authenticate.js';
import { clientIp } from './credentials.js';
import { KeyIndex } from './key-index.js';
import { Metrics } from './metrics.js';
import type { GatewayOptions } from './options.js';
import { readBody, UpstreamProxy } from './proxy.js';
import { FailureTracker, RateLimiter, type BucketConfig } from './rate-limit.js';
import { errorBody, Refuser, RefusalBatch } from './refusals.js';
import { ADMIN_ROUTE_PREFIX, RouteTable } from './routes.js';
import { SignatureCheck } from './signature-check.js';
import { SharedRateLimiter } from './shared-rate-limit.js';
import { StoreHealth } from './store-health.js';
import { UsageSink } from './usage-sink.js';

export { gatewayOptions, type GatewayOptions, type GatewayOverrides } from './options.js';

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
  const { auditKey } = home.requireUnsealed();
  // The request path only reads from this connection (the key index poll, admin endpoints). While
  // another process commits, a read waits at most 100 ms instead of freezing the event loop; a
  // failed poll keeps the last good view and tries again 250 ms later.
  const previousBusy = await home.store.setLockTimeout(100);
  const index = await KeyIndex.load(home);
  index.start(o.pollMs);
  const metrics = new Metrics();
  const limiter = new RateLimiter(o.rateShare);
  const sharedLimiter = o.redisUrl ? new SharedRateLimiter(o.redisUrl, o.redisPassword, limiter) : null;
  // up to a second for Redis, so the first requests use the shared buckets rather than the fallback
  if (sharedLimiter) await Promise.race([sharedLimiter.ready(), new Promise((r) => setTimeout(r, 1000).unref())]);
  const failures = new FailureTracker(o.failures);
  const refusals = new RefusalBatch();
  const refuser = new Refuser(metrics, failures, o.failures, refusals, clock);
  const sink = new UsageSink(home.dir, auditKey, refusals, o.flushMs);
  const auth = new Authenticator(index, () => home.requireUnsealed().master);
  const signatures = new SignatureCheck(index, o, home.store.nonces);
  const routes = new RouteTable(o.routes);
  const upstream = new UpstreamProxy(o.upstream, o.upstreamAuthorization, metrics);
  const admin = new AdminEndpoints(home);
  const health = new StoreHealth(index, sink, o.cacheMs, o.maxHeldRows, () => sharedLimiter?.fallbacks ?? 0);
  const roles = home.config.roles;

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
    if (req.method === 'GET' && pathname === '/healthz') {
      routeLabel = '/healthz';
      res.writeHead(200, { 'content-type': 'application/json' });
      return void res.end('{"status":"ok"}');
    }
    if (req.method === 'GET' && pathname === '/metrics') {
      routeLabel = '/metrics';
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' });
      return void res.end(metrics.render({ keys: index.all().length, reloads: index.reloads }) + health.render());
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
    const a = await auth.authenticate(req.headers, now);
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
    const body = await readBody(req, o.maxBodyBytes);
    if (!body) {
      res.setHeader('connection', 'close');
      return refuser.refuse(res, ip, { status: 413, type: 'invalid_request_error', code: 'request_too_large', message: `request body over ${o.maxBodyBytes} bytes`, reason: 'BODY_TOO_LARGE', keyId: k.row.id }, route.name);
    }
    const sig = await signatures.check(req, k, a.via, a.text, body, now);
    if (sig) return refuser.refuse(res, ip, sig, route.name);
    const rl = k.options.rate_limit ? { ...o.rateLimit, ...k.options.rate_limit } : o.rateLimit;
    const wait = sharedLimiter ? await sharedLimiter.take(k.row.id, rl as BucketConfig, now) : limiter.take(k.row.id, rl as BucketConfig, now);
    if (wait)
      return refuser.refuse(res, ip, { status: 429, type: 'requests', code: 'rate_limit_exceeded', message: `rate limit of ${rl.rps} requests per second exceeded`, reason: 'RATE_LIMITED', action: 'RATE_LIMITED', retryAfter: wait, keyId: k.row.id }, route.name);
    sink.count(k.row.id, now);
    if (route.name.startsWith(ADMIN_ROUTE_PREFIX)) return admin.answer(res, route.name, target, now);
    upstream.forward(req, res, body, ip);
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
    index.stop();
    upstream.close();
    sharedLimiter?.close();
    auth.wipe();
  };
  const restoreBusyTimeout = () => home.store.setLockTimeout(previousBusy).catch(() => {});

  let server: http.Server;
  try {
    server = await listen(o, listener);
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
