/**
 * The gateway's options: dsk.json `gateway`, under overrides from the caller (the serve command
 * fills them from its flags), over defaults. Every value is checked here, before anything is
 * unsealed. An error names the option by where its value came from: `gateway.upstream in dsk.json`
 * for the config file, and for an override whatever name the caller gives (`nameOf`; the CLI
 * passes its flag names, others get the dsk.json key).
 */
import type { Permission } from '../domain/roles.js';
import { PERMISSIONS } from '../domain/roles.js';
import { parseDuration } from '../kernel/duration.js';
import { UsageError } from '../kernel/errors.js';
import type { ConnectionCaps } from './connection-caps.js';
import type { BucketConfig } from './rate-limit.js';
import type { FailureConfig } from './brute-force.js';
import { ADMIN_ROUTES, DEFAULT_ROUTES, isGatewayPath, isRoutePattern } from './routes.js';

export interface GatewayOptions {
  upstream: string;
  host: string;
  port: number;
  requireSignature: boolean;
  allowLegacySignature: boolean;
  maxBodyBytes: number;
  rateLimit: BucketConfig;
  failures: FailureConfig;
  /** requests one key may have in progress (a key's max_concurrent option wins) */
  maxConcurrent: number;
  bodyTimeoutMs: number;
  /** all request bodies being read at once, together */
  maxBufferedBytes: number;
  connections: ConnectionCaps;
  /** memory the nonce cache may hold (an estimate per entry, see signature.ts) */
  nonceCacheBytes: number;
  skewS: number;
  trustProxy: boolean;
  routes: Record<string, Permission>;
  tls?: { cert: string; key: string; clientCa?: string };
  upstreamAuthorization?: string;
  drainMs: number;
  flushMs: number;
  pollMs: number;
  /** read token counts from upstream answers (usage-meter.ts); off only to measure what it costs */
  countTokens: boolean;
  /** the fraction of each rate limit this process enforces (serve --workers N: 1/N) */
  rateShare: number;
  /** per-key rate limits shared by every gateway in this Redis (none: per process) */
  redisUrl?: string;
  /** from DSK_REDIS_PASSWORD, never in the URL */
  redisPassword?: string;
  /** how long keys in memory are served while the store cannot be read (the seed's 5 minutes) */
  cacheMs: number;
  /** unwritten audit rows held while the store fails, before the gateway refuses with 503 */
  maxHeldRows?: number;
}

/** Values that win over dsk.json. Durations are text (`60s`) or milliseconds. */
export interface GatewayOverrides {
  upstream?: string;
  listen?: string;
  requireSignature?: boolean;
  allowLegacySignature?: boolean;
  maxBody?: number;
  rps?: number;
  burst?: number;
  maxFailures?: number;
  failureWindow?: string | number;
  blockFor?: string | number;
  ipv6Prefix?: number;
  keyMaxFailures?: number;
  maxConcurrent?: number;
  bodyTimeout?: string | number;
  maxBuffered?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  skew?: string | number;
  trustProxy?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  clientCa?: string;
  drain?: string | number;
  countTokens?: boolean;
  redisUrl?: string;
  cacheTtl?: string | number;
}

export type GatewayOption = keyof GatewayOverrides;

/** Where each option lives under `gateway` in dsk.json. */
const CONFIG_KEY: Record<GatewayOption, string> = {
  upstream: 'upstream',
  listen: 'listen',
  requireSignature: 'require_signature',
  allowLegacySignature: 'allow_legacy_signature',
  maxBody: 'max_body',
  rps: 'rate_limit.rps',
  burst: 'rate_limit.burst',
  maxFailures: 'brute_force.max_failures',
  failureWindow: 'brute_force.window',
  blockFor: 'brute_force.block',
  ipv6Prefix: 'brute_force.ipv6_prefix',
  keyMaxFailures: 'brute_force.key_max_failures',
  maxConcurrent: 'max_concurrent',
  bodyTimeout: 'body_timeout',
  maxBuffered: 'max_buffered',
  maxConnections: 'max_connections',
  maxConnectionsPerIp: 'max_connections_per_ip',
  skew: 'skew',
  trustProxy: 'trust_proxy',
  tlsCert: 'tls_cert',
  tlsKey: 'tls_key',
  clientCa: 'client_ca',
  drain: 'drain',
  countTokens: 'count_tokens',
  redisUrl: 'redis_url',
  cacheTtl: 'cache_ttl',
};

const DEFAULTS: Partial<Record<GatewayOption, unknown>> = {
  listen: '127.0.0.1:8080',
  maxBody: 1024 * 1024,
  rps: 50,
  burst: 100,
  maxFailures: 10,
  failureWindow: '60s',
  blockFor: '5m',
  ipv6Prefix: 64,
  keyMaxFailures: 100,
  maxConcurrent: 16,
  bodyTimeout: '30s',
  maxBuffered: 64 * 1024 * 1024,
  maxConnections: 4096,
  maxConnectionsPerIp: 256,
  skew: '300s',
  drain: '30s',
  countTokens: true,
  cacheTtl: '5m',
};

function configValue(g: Record<string, unknown>, path: string): unknown {
  let v: unknown = g;
  for (const k of path.split('.')) v = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[k] : undefined;
  return v ?? undefined;
}

export function gatewayOptions(config: Record<string, unknown> | undefined, overrides: GatewayOverrides = {}, nameOf: (o: GatewayOption) => string = (o) => CONFIG_KEY[o]): GatewayOptions {
  const g = config ?? {};
  /** An option's value and the words for where it came from. */
  const pick = (o: GatewayOption): { value: unknown; label: string } => {
    if (overrides[o] != null) return { value: overrides[o], label: nameOf(o) };
    const c = configValue(g, CONFIG_KEY[o]);
    if (c !== undefined) return { value: c, label: `gateway.${CONFIG_KEY[o]} in dsk.json` };
    return { value: DEFAULTS[o], label: nameOf(o) };
  };
  const num = (o: GatewayOption, min = 1): number => {
    const { value, label } = pick(o);
    const n = typeof value === 'string' ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min) throw new UsageError('ERR_NUMBER', `invalid ${label} '${String(value)}': expected a number ≥ ${min}`);
    return n;
  };
  const ms = (o: GatewayOption): number => {
    const { value, label } = pick(o);
    return typeof value === 'number' ? value : parseDuration(String(value), label);
  };

  const prefix = (): number => {
    const n = num('ipv6Prefix');
    if (!Number.isInteger(n) || n > 128) throw new UsageError('ERR_IPV6_PREFIX', `invalid ${pick('ipv6Prefix').label} '${n}': expected a prefix length from 1 to 128`, { hint: '64 counts each customer network (a /64) as one address' });
    return n;
  };

  const up = pick('upstream');
  if (!up.value) throw new UsageError('ERR_NO_UPSTREAM', `no upstream: give ${nameOf('upstream')} or set gateway.upstream in dsk.json`, { hint: 'for example http://127.0.0.1:11434 (Ollama) or http://127.0.0.1:8000 (vLLM)' });
  let u: URL | null = null;
  try {
    u = new URL(String(up.value));
  } catch {
    // refused below, with the same words as a non-HTTP scheme
  }
  if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) throw new UsageError('ERR_UPSTREAM_URL', `invalid ${up.label} '${String(up.value)}': expected an http:// or https:// URL`);
  // The URL is printed at start and visible in ps; a password in it would leak and is not sent anyway.
  if (u.username || u.password) throw new UsageError('ERR_UPSTREAM_USERINFO', `invalid ${up.label}: a user name or password in the URL is refused (it would be printed and logged)`, { hint: "give the URL without user:pass@; the upstream's own key is read from a file instead" });

  const listen = pick('listen');
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:]+)):(\d{1,5})$/.exec(String(listen.value));
  if (!m || Number(m[3]) > 65535) throw new UsageError('ERR_LISTEN_ADDRESS', `invalid ${listen.label} '${String(listen.value)}': expected HOST:PORT`, { hint: 'for example 127.0.0.1:8080 or [::1]:8080 (port 0 picks a free one)' });

  const routes: Record<string, Permission> = { ...DEFAULT_ROUTES, ...((g.routes as Record<string, Permission> | undefined) ?? {}) };
  for (const [r, p] of Object.entries(routes)) {
    if (!isRoutePattern(r)) throw new UsageError('ERR_ROUTE', `invalid route '${r}' in gateway.routes in dsk.json`, { hint: "use 'METHOD /path', '* /path' or a trailing /* for a prefix" });
    if (isGatewayPath(r.split(' ')[1].replace(/\/\*$/, '')) && !ADMIN_ROUTES.has(r))
      throw new UsageError('ERR_ROUTE_RESERVED', `route '${r}' in gateway.routes in dsk.json is under /dsk/, which the gateway keeps for its own endpoints`, { hint: `only ${[...ADMIN_ROUTES].join(' and ')} live there; give the route another path` });
    if (!(PERMISSIONS as readonly string[]).includes(p)) throw new UsageError('ERR_ROUTE_PERMISSION', `route '${r}' in gateway.routes in dsk.json maps to unknown permission '${p}'`, { hint: `known: ${PERMISSIONS.join(', ')}` });
  }

  const cert = pick('tlsCert');
  const key = pick('tlsKey');
  const ca = pick('clientCa');
  if (!!cert.value !== !!key.value) throw new UsageError('ERR_TLS_PAIR', `${cert.label} and ${key.label} go together`, { hint: 'a PEM certificate and its PEM private key' });
  if (ca.value && !cert.value) throw new UsageError('ERR_CLIENT_CA_WITHOUT_TLS', `${ca.label} needs ${cert.label} and ${key.label}`, { hint: 'mutual TLS is TLS with client certificates: give the server certificate and key too' });

  return {
    upstream: u.toString().replace(/\/$/, ''),
    host: m[1] ?? m[2],
    port: Number(m[3]),
    requireSignature: !!pick('requireSignature').value,
    allowLegacySignature: !!pick('allowLegacySignature').value,
    maxBodyBytes: num('maxBody'),
    rateLimit: { rps: num('rps', 0.001), burst: num('burst') },
    failures: { max: num('maxFailures'), windowMs: ms('failureWindow'), blockMs: ms('blockFor'), ipv6Prefix: prefix(), keyMax: num('keyMaxFailures') },
    maxConcurrent: num('maxConcurrent'),
    bodyTimeoutMs: ms('bodyTimeout'),
    maxBufferedBytes: num('maxBuffered'),
    connections: { max: num('maxConnections'), perAddress: num('maxConnectionsPerIp') },
    nonceCacheBytes: 64 * 1024 * 1024,
    skewS: ms('skew') / 1000,
    trustProxy: !!pick('trustProxy').value,
    routes,
    tls: cert.value ? { cert: String(cert.value), key: String(key.value), clientCa: ca.value ? String(ca.value) : undefined } : undefined,
    drainMs: ms('drain'),
    flushMs: 1000,
    pollMs: 250,
    countTokens: pick('countTokens').value !== false,
    rateShare: 1,
    redisUrl: redisUrl(pick('redisUrl')),
    cacheMs: cacheMs(ms('cacheTtl'), pick('cacheTtl').label),
  };
}

/** The seed's key cache lifetime is 5 minutes: a longer one would keep a revoked key alive longer in an outage. */
const MAX_CACHE_MS = 5 * 60_000;

function cacheMs(v: number, label: string): number {
  if (v > MAX_CACHE_MS) throw new UsageError('ERR_CACHE_TTL', `invalid ${label}: at most 5m (the seed's key cache lifetime)`, { hint: 'a lower value refuses sooner when the store is unreachable' });
  return v;
}

function redisUrl({ value, label }: { value: unknown; label: string }): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  let u: URL | null = null;
  try {
    u = new URL(String(value));
  } catch {
    // refused below
  }
  if (!u || (u.protocol !== 'redis:' && u.protocol !== 'rediss:')) throw new UsageError('ERR_REDIS_URL', `invalid ${label}: expected a redis:// or rediss:// URL`, { hint: 'for example redis://127.0.0.1:6379/0' });
  if (u.password) throw new UsageError('ERR_REDIS_URL', `invalid ${label}: it carries a password`, { hint: 'remove the password from the URL and put it in DSK_REDIS_PASSWORD' });
  return u.toString();
}
