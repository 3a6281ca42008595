/**
 * Per-key token buckets, in memory only: a restart forgets them, which errs towards availability
 * (documented in docs/gateway.md). Brute-force counting is brute-force.ts.
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

  /**
   * Gives back the token of a request that turned out not to be the key holder's: the token is
   * taken before the body is read (so a refused request never buffers a body), and returned when
   * the signature then fails, so someone with a key's text but not its secret cannot spend its budget.
   */
  refund(key: string): void {
    const b = this.#buckets.get(key);
    if (b) b.tokens = Math.min(b.burst, b.tokens + 1);
  }
}
