/**
 * Per-key rate limits shared by every gateway, in Redis (`gateway.redis_url`). One Lua script per
 * request runs GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp per key:
 * the theoretical arrival time) atomically inside Redis on Redis's own clock, so N replicas
 * together admit exactly what one bucket would: `burst` at once, then `rps` per second.
 *
 * Without Redis each process keeps its own buckets (rate-limit.ts): N replicas admit up to N times
 * the limit (workers of one `dsk serve --workers N` split it, 1/N each). When Redis cannot be
 * reached the gateway falls back to those local buckets rather than refusing traffic, counts it in
 * /metrics (dsk_gateway_rate_limit_fallback_total), and returns to Redis when it answers again.
 */
import { Redis } from 'ioredis';
import type { BucketConfig, RateLimiter } from './rate-limit.js';

// KEYS[1] = bucket; ARGV = interval µs, burst. Returns 0 (allowed) or the µs until a request fits.
const GCRA = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > limit then return next_tat - now - limit end
redis.call('SET', KEYS[1], next_tat, 'PX', math.ceil((next_tat - now) / 1000) + 1000)
return 0
`;

// Gives one request back (it was refused later for another reason): the arrival time moves back by
// one interval, never before now.
const GCRA_REFUND = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat <= now then return 0 end
local back = math.max(now, tat - tonumber(ARGV[1]))
redis.call('SET', KEYS[1], back, 'PX', math.ceil((back - now) / 1000) + 1000)
return 1
`;

/** How long one Redis call may take before the request falls back to the local bucket. */
const CALL_TIMEOUT_MS = 200;

export class SharedRateLimiter {
  readonly #redis: Redis;
  fallbacks = 0;

  constructor(
    url: string,
    password: string | undefined,
    private readonly local: RateLimiter,
    private readonly prefix = 'dsk:rl:',
  ) {
    this.#redis = new Redis(url, { password, lazyConnect: false, enableOfflineQueue: false, maxRetriesPerRequest: 0, commandTimeout: CALL_TIMEOUT_MS, connectTimeout: 1000 });
    this.#redis.on('error', () => {
      // reconnects on its own; requests meanwhile use the local buckets (counted in fallbacks)
    });
    this.#redis.defineCommand('dskGcra', { numberOfKeys: 1, lua: GCRA });
    this.#redis.defineCommand('dskGcraRefund', { numberOfKeys: 1, lua: GCRA_REFUND });
  }

  /** 0 when allowed, else whole seconds until a request fits (Retry-After). */
  async take(key: string, cfg: BucketConfig, nowMs: number): Promise<number> {
    try {
      const interval = Math.max(1, Math.round(1e6 / cfg.rps));
      const wait = Number(await (this.#redis as unknown as { dskGcra(k: string, i: number, b: number): Promise<number> }).dskGcra(this.prefix + key, interval, Math.max(1, Math.floor(cfg.burst))));
      return wait > 0 ? Math.max(1, Math.ceil(wait / 1e6)) : 0;
    } catch {
      this.fallbacks++;
      return this.local.take(key, cfg, nowMs);
    }
  }

  /** Resolves once connected to Redis (until then every check falls back to the local bucket). */
  ready(): Promise<void> {
    if (this.#redis.status === 'ready') return Promise.resolve();
    return new Promise((resolve) => this.#redis.once('ready', () => resolve()));
  }

  /** Returns one request's token to the key's shared bucket (best effort: a Redis failure keeps it spent). */
  async refund(key: string, cfg: BucketConfig): Promise<void> {
    const interval = Math.max(1, Math.round(1e6 / cfg.rps));
    await (this.#redis as unknown as { dskGcraRefund(k: string, i: number): Promise<number> }).dskGcraRefund(this.prefix + key, interval).catch(() => {});
  }

  close(): void {
    this.#redis.disconnect();
  }
}
