/**
 * What the gateway does while its store is unreachable (issue 12, faults). Keys already in memory
 * are served for at most the cache lifetime (`gateway.cache_ttl`, the seed's 5 minutes, lower if
 * configured) after the store last answered; past it nothing can be checked, so every request
 * that needs a key is refused with 503 in OpenAI's error shape. Usage counts and refusal rows stay
 * in memory and are written when the store answers again (usage-sink.ts merges failed batches
 * back). Counts are one number per key, so they cannot grow without bound; refusal rows can, so
 * once the writer is failing and `maxHeldRows` rows wait, the gateway fails closed (503) rather
 * than drop or blur audit rows. /metrics says which of these holds.
 */
import type { KeyIndex } from './key-index.js';
import { storeUnavailable, type Refusal } from './refusals.js';
import type { UsageSink } from './usage-sink.js';

export const MAX_HELD_ROWS = 10_000;

export class StoreHealth {
  constructor(
    private readonly index: KeyIndex,
    private readonly sink: UsageSink,
    private readonly cacheMs: number,
    private readonly maxHeldRows = MAX_HELD_ROWS,
    private readonly rateLimitFallbacks: () => number = () => 0,
  ) {}

  /** A 503 when the request cannot be checked or recorded, else null. Wall-clock time: the poll timer's. */
  refusal(): Refusal | null {
    const age = Date.now() - this.index.lastGoodAt;
    if (age > this.cacheMs) return storeUnavailable(`keys cannot be checked: the key store has not answered for ${Math.round(age / 1000)} s`);
    if (this.failClosed()) return storeUnavailable('the gateway cannot write its audit rows to the key store and holds as many as it may');
    return null;
  }

  failClosed(): boolean {
    return this.sink.failing && this.sink.heldRows >= this.maxHeldRows;
  }

  render(): string {
    const up = !this.index.failing && !this.sink.failing;
    const g = (name: string, help: string, v: number, type = 'gauge') => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${v}`;
    return [
      g('dsk_gateway_store_up', 'Whether the last key poll and the last usage write reached the store (1) or not (0).', up ? 1 : 0),
      g('dsk_gateway_key_cache_age_seconds', 'Seconds since the store last answered a key poll; past the cache lifetime requests get 503.', Math.max(0, (Date.now() - this.index.lastGoodAt) / 1000)),
      g('dsk_gateway_key_cache_ttl_seconds', 'The cache lifetime: how long keys in memory are served while the store is unreachable.', this.cacheMs / 1000),
      g('dsk_gateway_held_requests', 'Accepted requests whose usage count is not yet written to the store.', this.sink.heldRequests),
      g('dsk_gateway_held_audit_rows', 'Aggregated audit rows not yet written to the store.', this.sink.heldRows),
      g('dsk_gateway_fail_closed', 'Whether the gateway refuses requests because it holds as many unwritten audit rows as it may (1).', this.failClosed() ? 1 : 0),
      g('dsk_gateway_rate_limit_fallback_total', 'Rate-limit checks answered by the local buckets because Redis could not be reached.', this.rateLimitFallbacks(), 'counter'),
    ].join('\n') + '\n';
  }
}
