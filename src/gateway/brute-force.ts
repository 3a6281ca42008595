/**
 * Brute-force defence, in memory (a restart forgets it, which errs towards availability).
 *
 * Per source: authentication failures are counted in a sliding window (the last `max` failure
 * times are kept, so a burst split across a window edge still counts) and reaching `max` within
 * `windowMs` blocks the source for `blockMs`. An IPv6 source is its /`ipv6Prefix` network (default
 * /64, what one customer line or host usually gets), so rotating through the 2^64 addresses of
 * one network is one source; IPv4 sources are single addresses. Everyone behind one NAT shares an
 * address and so shares a block: valid keys from there are refused too until it ends.
 *
 * Memory: at most `capacity` sources are counted (the least recently failing go first); a blocked
 * source is kept apart and never evicted before its block ends, so flooding from fresh addresses
 * cannot lift a block. Blocked entries cost one map slot each and expire in order.
 *
 * Per key: failures that name an existing key (a wrong secret for its id, a bad signature or token)
 * are counted per key the same way, from any source. Reaching `keyMax` within the window reports the
 * key as under attack (BRUTE_FORCE_SUSPECTED, once per window) without blocking it: blocking the
 * key would lock its owner out, which is what an attacker spread over many addresses would want.
 */
import { parseIp } from '../kernel/ip.js';

export interface FailureConfig {
  max: number; // failures …
  windowMs: number; // … within this window …
  blockMs: number; // … block the source this long
  ipv6Prefix: number;
  keyMax: number;
}

/** The source an address counts as: IPv4 itself, IPv6 its network of `prefix` bits. */
export function failureSource(ip: string, prefix: number): string {
  const a = parseIp(ip);
  if (!a || a.family === 4 || prefix >= 128) return a?.family === 4 ? a.bytes.join('.') : ip;
  const b = Uint8Array.from(a.bytes);
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    b[i] &= (0xff << (8 - keep)) & 0xff;
  }
  const words: string[] = [];
  for (let i = 0; i < 16; i += 2) words.push(((b[i] << 8) | b[i + 1]).toString(16));
  return `${words.join(':')}/${prefix}`;
}

/** Failure times within the window, at most `max` of them (older ones cannot matter). */
class SlidingCount {
  times: number[] = [];
  /** Adds a failure at `now`; true when `max` failures fall within `windowMs`. */
  add(now: number, max: number, windowMs: number): boolean {
    this.times.push(now);
    if (this.times.length > max) this.times.splice(0, this.times.length - max);
    while (this.times.length && now - this.times[0] >= windowMs) this.times.shift();
    return this.times.length >= max;
  }
}

export interface FailureOutcome {
  /** the source this failure counted against, when it starts a block */
  blocked?: { source: string; until: number };
  /** the key this failure named, when it is now suspected to be under attack */
  suspected?: { keyId: string; failures: number; sources: number };
}

export class BruteForceGuard {
  readonly #counting = new Map<string, SlidingCount>();
  readonly #blocked = new Map<string, number>();
  readonly #keys = new Map<string, { count: SlidingCount; sources: Set<string>; reportedAt: number }>();

  constructor(
    private readonly cfg: FailureConfig,
    private readonly capacity = 100_000,
  ) {}

  /** Seconds the address remains blocked, or 0. */
  blockedFor(ip: string, nowMs: number): number {
    const source = failureSource(ip, this.cfg.ipv6Prefix);
    const until = this.#blocked.get(source);
    if (until === undefined) return 0;
    if (until <= nowMs) {
      this.#blocked.delete(source);
      return 0;
    }
    return Math.max(1, Math.ceil((until - nowMs) / 1000));
  }

  /** Records an authentication failure from `ip`, naming `keyId` when the credential named an existing key. */
  fail(ip: string, keyId: string | null, nowMs: number): FailureOutcome {
    const out: FailureOutcome = {};
    const source = failureSource(ip, this.cfg.ipv6Prefix);
    this.#expireBlocks(nowMs);
    if (!this.#blocked.has(source)) {
      let c = this.#counting.get(source);
      if (c) this.#counting.delete(source); // re-inserted below: the map's order is least recently failing first
      else c = new SlidingCount();
      if (c.add(nowMs, this.cfg.max, this.cfg.windowMs)) {
        const until = nowMs + this.cfg.blockMs;
        this.#blocked.set(source, until);
        out.blocked = { source, until };
      } else {
        this.#counting.set(source, c);
        if (this.#counting.size > this.capacity) this.#counting.delete(this.#counting.keys().next().value!);
      }
    }
    if (keyId !== null) {
      let k = this.#keys.get(keyId);
      if (!k) this.#keys.set(keyId, (k = { count: new SlidingCount(), sources: new Set(), reportedAt: -Infinity }));
      if (k.sources.size < 1000) k.sources.add(source);
      if (k.count.add(nowMs, this.cfg.keyMax, this.cfg.windowMs) && nowMs - k.reportedAt >= this.cfg.windowMs) {
        k.reportedAt = nowMs;
        out.suspected = { keyId, failures: k.count.times.length, sources: k.sources.size };
        k.sources.clear();
      }
    }
    return out;
  }

  // Blocks all last blockMs, so insertion order is expiry order: drop from the front.
  #expireBlocks(nowMs: number): void {
    for (const [source, until] of this.#blocked) {
      if (until > nowMs) break;
      this.#blocked.delete(source);
    }
  }

  get blockedSources(): number {
    return this.#blocked.size;
  }
}
