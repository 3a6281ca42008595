/**
 * Per-key token buckets and per-source-IP failure counting. Both live in memory only: a restart
 * forgets them, which errs towards availability (documented in docs/gateway.md).
 */

export interface BucketConfig {
  rps: number;
  burst: number;
}

export class RateLimiter {
  #buckets = new Map<string, { tokens: number; at: number; rps: number; burst: number }>();

  /**
   * `share`: the fraction of each limit this process enforces (1/N for one of N workers sharing
   * a port, so the N buckets together allow the configured limit).
   */
  constructor(private readonly share = 1) {}

  /** Takes one token; returns 0 when allowed, else the seconds until one is available. */
  take(key: string, configured: BucketConfig, nowMs: number): number {
    const cfg = this.share === 1 ? configured : { rps: configured.rps * this.share, burst: Math.max(1, configured.burst * this.share) };
    let b = this.#buckets.get(key);
    if (!b || b.rps !== cfg.rps || b.burst !== cfg.burst) {
      b = { tokens: cfg.burst, at: nowMs, rps: cfg.rps, burst: cfg.burst };
      this.#buckets.set(key, b);
    }
    b.tokens = Math.min(cfg.burst, b.tokens + ((nowMs - b.at) / 1000) * cfg.rps);
    b.at = nowMs;
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / cfg.rps));
  }
}

export interface FailureConfig {
  max: number; // failures …
  windowMs: number; // … within this window …
  blockMs: number; // … block the address this long
}

/**
 * Counts authentication failures per source address in a fixed window that starts at the first
 * failure. Reaching `max` blocks the address for `blockMs`. Memory is bounded: at most `capacity`
 * addresses are tracked; the oldest entries go first.
 */
export class FailureTracker {
  #ips = new Map<string, { count: number; windowStart: number; blockedUntil: number }>();
  constructor(
    private readonly cfg: FailureConfig,
    private readonly capacity = 100_000,
  ) {}

  /** Seconds the address remains blocked, or 0. */
  blockedFor(ip: string, nowMs: number): number {
    const e = this.#ips.get(ip);
    if (!e || e.blockedUntil <= nowMs) return 0;
    return Math.max(1, Math.ceil((e.blockedUntil - nowMs) / 1000));
  }

  /** Records a failure; true when this failure starts a block. */
  fail(ip: string, nowMs: number): boolean {
    let e = this.#ips.get(ip);
    if (!e || nowMs - e.windowStart >= this.cfg.windowMs) {
      if (e) this.#ips.delete(ip);
      e = { count: 0, windowStart: nowMs, blockedUntil: e?.blockedUntil ?? 0 };
      this.#ips.set(ip, e);
      if (this.#ips.size > this.capacity) this.#ips.delete(this.#ips.keys().next().value!);
    }
    e.count++;
    if (e.count >= this.cfg.max && e.blockedUntil <= nowMs) {
      e.blockedUntil = nowMs + this.cfg.blockMs;
      e.count = 0;
      e.windowStart = nowMs;
      return true;
    }
    return false;
  }
}
