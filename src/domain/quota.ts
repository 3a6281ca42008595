/**
 * Per-key budgets: `2M/month` tokens, `10k/day` requests. Periods are calendar periods in UTC (a
 * day starts at 00:00 UTC, a month on the 1st), so every gateway sharing a store agrees on when a
 * period starts and resets without talking to the others.
 */
import { UsageError } from '../kernel/errors.js';

export type QuotaPeriod = 'day' | 'month';
export type QuotaKind = 'tokens' | 'requests';

export interface Quota {
  limit: number;
  period: QuotaPeriod;
}

const SUFFIX: Record<string, number> = { '': 1, k: 1_000, K: 1_000, m: 1_000_000, M: 1_000_000, g: 1_000_000_000, G: 1_000_000_000 };
const QUOTA = /^(\d{1,12}(?:\.\d{1,3})?)([kKmMgG]?)\/(day|month)$/;

/** Parses `2M/month`, `10k/day`, `500/day`; `what` names the flag or field in the error. */
export function parseQuota(text: string, what: string): Quota {
  const m = QUOTA.exec(text.trim());
  const limit = m ? Math.round(Number(m[1]) * SUFFIX[m[2]]) : 0;
  if (!m || !Number.isSafeInteger(limit) || limit < 1)
    throw new UsageError('ERR_QUOTA', `invalid ${what} '${text}': expected AMOUNT/day or AMOUNT/month`, { hint: 'for example 2M/month, 10k/day or 500/day (k, M, G are thousands, millions, billions)' });
  return { limit, period: m[3] as QuotaPeriod };
}

/** A quota back as text, in the largest suffix that divides it exactly (2000000 → 2M/month). */
export function formatQuota(q: Quota): string {
  for (const [s, f] of [['G', 1e9], ['M', 1e6], ['k', 1e3]] as const) if (q.limit % f === 0) return `${q.limit / f}${s}/${q.period}`;
  return `${q.limit}/${q.period}`;
}

/** A quota read back from a key's stored options, or null when it is not a valid one (never throws). */
export function quotaOf(v: unknown): Quota | null {
  if (!v || typeof v !== 'object') return null;
  const { limit, period } = v as Record<string, unknown>;
  return Number.isSafeInteger(limit) && (limit as number) > 0 && (period === 'day' || period === 'month') ? { limit: limit as number, period } : null;
}

/** The start of the period that contains `now` (epoch ms, UTC). */
export function periodStart(period: QuotaPeriod, now: number): number {
  const d = new Date(now);
  return period === 'day' ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()) : Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/** When the period that contains `now` ends: the quota resets then. */
export function periodEnd(period: QuotaPeriod, now: number): number {
  const d = new Date(now);
  return period === 'day' ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1) : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

/** The warning levels written to the audit log once per key, kind and period. */
export const QUOTA_LEVELS = [80, 100] as const;
export type QuotaLevel = (typeof QUOTA_LEVELS)[number];

/** The highest level `used` has reached, or null below the first. */
export function levelReached(used: number, limit: number): QuotaLevel | null {
  let out: QuotaLevel | null = null;
  for (const l of QUOTA_LEVELS) if (used * 100 >= limit * l) out = l;
  return out;
}
