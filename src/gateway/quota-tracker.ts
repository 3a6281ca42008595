/**
 * Per-key quotas at the gateway. What a key used in the current period is the store's total
 * (usage_hourly, written by every gateway sharing the store) plus what this gateway counted since
 * it last read that total; it is re-read once a second, right after this gateway's own counters
 * were flushed, so several gateways add up within about a second. Past the limit: 429
 * `quota_exceeded` with the reset time. Crossing 80% and 100% is handed to the flush as a mark;
 * the store keeps one mark per key, kind, period and level, so the audit row is written once even
 * with several gateways.
 */
import type { Store } from '../store/store.js';
import { levelReached, QUOTA_LEVELS, periodEnd, periodStart, quotaOf, type Quota, type QuotaKind, type QuotaPeriod } from '../domain/quota.js';
import type { KeyOptions } from './key-options.js';
import type { Refusal } from './refusals.js';

export interface QuotaMark {
  key_id: string;
  kind: QuotaKind;
  period: QuotaPeriod;
  period_start: number;
  level: number;
  used: number;
  limit: number;
  resets_at: string;
}

type Used = { requests: number; tokens: number };
const KINDS: QuotaKind[] = ['requests', 'tokens'];

function quotasOf(o: KeyOptions): [QuotaKind, Quota][] {
  const out: [QuotaKind, Quota][] = [];
  for (const kind of KINDS) {
    const q = quotaOf(o.quota?.[kind]);
    if (q) out.push([kind, q]);
  }
  return out;
}

export class QuotaTracker {
  /** `${keyId}|${period}` → store total at the last refresh, and its period start */
  #base = new Map<string, Used & { start: number }>();
  /** `${keyId}` → counted here since the last refresh */
  #local = new Map<string, Used>();
  /** marks handed out already */
  #sent = new Set<string>();
  #pending: QuotaMark[] = [];

  /** The refusal when key `keyId` is at or past a quota at `now`, else null. */
  check(keyId: string, o: KeyOptions, now: number): Refusal | null {
    if (!o.quota) return null;
    for (const [kind, q] of quotasOf(o)) {
      const used = this.used(keyId, q.period, now)[kind];
      if (used >= q.limit) {
        const end = periodEnd(q.period, now);
        return {
          status: 429,
          type: 'requests',
          code: 'quota_exceeded',
          message: `${kind} quota of ${q.limit} per ${q.period} used up; it resets at ${new Date(end).toISOString()}`,
          reason: 'QUOTA_EXCEEDED',
          action: 'NONE', // the 100% mark is the audit row; a refusal per request would flood the log
          retryAfter: Math.max(1, Math.ceil((end - now) / 1000)),
          keyId,
        };
      }
    }
    return null;
  }

  used(keyId: string, period: QuotaPeriod, now: number): Used {
    const b = this.#base.get(`${keyId}|${period}`);
    const l = this.#local.get(keyId);
    const fresh = b && b.start === periodStart(period, now);
    return { requests: (fresh ? b.requests : 0) + (l?.requests ?? 0), tokens: (fresh ? b.tokens : 0) + (l?.tokens ?? 0) };
  }

  /** A finished request of a key with quotas. */
  add(keyId: string, tokens: number): void {
    const l = this.#local.get(keyId);
    if (l) (l.requests++, (l.tokens += tokens));
    else this.#local.set(keyId, { requests: 1, tokens });
  }

  /**
   * Re-reads the store's totals for keys with quotas. `flush` commits this gateway's counters
   * first; what is counted while it runs stays local.
   */
  async refresh(store: Pick<Store, 'usage'>, keys: { id: string; options: KeyOptions }[], flush: () => Promise<void>, now: number): Promise<void> {
    const withQuota = keys.filter((k) => k.options.quota && quotasOf(k.options).length);
    if (!withQuota.length) return void this.#local.clear();
    const marked = new Map([...this.#local].map(([k, v]) => [k, { ...v }]));
    await flush();
    const base = new Map<string, Used & { start: number }>();
    for (const period of ['day', 'month'] as const) {
      if (!withQuota.some((k) => quotasOf(k.options).some(([, q]) => q.period === period))) continue;
      const start = periodStart(period, now);
      for (const t of await store.usage.totalsSince(start)) base.set(`${t.key_id}|${period}`, { requests: t.requests, tokens: t.prompt_tokens + t.completion_tokens, start });
      for (const k of withQuota) if (!base.has(`${k.id}|${period}`)) base.set(`${k.id}|${period}`, { requests: 0, tokens: 0, start });
    }
    this.#base = base;
    for (const [id, m] of marked) {
      const l = this.#local.get(id);
      if (!l) continue;
      l.requests -= m.requests;
      l.tokens -= m.tokens;
      if (l.requests <= 0 && l.tokens <= 0) this.#local.delete(id);
    }
    for (const k of withQuota) {
      for (const [kind, q] of quotasOf(k.options)) {
        const used = this.used(k.id, q.period, now)[kind];
        const reached = levelReached(used, q.limit);
        const start = periodStart(q.period, now);
        for (const level of QUOTA_LEVELS) {
          if (reached === null || level > reached) break;
          const id = `${k.id}|${kind}|${start}|${level}`;
          if (this.#sent.has(id)) continue;
          this.#sent.add(id);
          this.#pending.push({ key_id: k.id, kind, period: q.period, period_start: start, level, used, limit: q.limit, resets_at: new Date(periodEnd(q.period, now)).toISOString() });
        }
      }
    }
  }

  get pendingMarks(): number {
    return this.#pending.length;
  }

  /** Marks for the next flush. */
  takeMarks(): QuotaMark[] {
    const m = this.#pending;
    this.#pending = [];
    return m;
  }

  restoreMarks(m: QuotaMark[]): void {
    this.#pending.push(...m);
  }
}
