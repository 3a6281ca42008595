/**
 * Per-key quotas at the gateway. What a key used in the current period is the store's total
 * (usage_hourly, written by every gateway sharing the store) plus what this gateway counted that
 * the total does not hold yet. The total is read by the writer thread inside each flush's own
 * transaction, right after that flush's counters, so it holds exactly the batches up to that one:
 * what is still counted here is what was not sent yet and the batches sent after it. Several
 * gateways therefore add up within about a second (one flush), and nothing is counted twice.
 *
 * Past the limit: 429 `quota_exceeded` with the reset time. Crossing 80% and 100% is handed to the
 * next flush as a mark; the store keeps one mark per key, kind, period and level, so the audit row
 * is written once even with several gateways.
 */
import type { KeyUsageTotal } from '../store/store.js';
import { levelReached, periodEnd, periodStart, QUOTA_LEVELS, quotaOf, type Quota, type QuotaKind, type QuotaPeriod } from '../domain/quota.js';
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

/** A period whose totals a flush should read back, and what it read. */
export interface PeriodTotals {
  period: QuotaPeriod;
  start: number;
  /** the keys with a quota over this period (each read through the primary key: key, hour) */
  keys: string[];
  rows?: KeyUsageTotal[];
}

type Used = { requests: number; tokens: number };
type KeyList = () => { id: string; options: KeyOptions }[];
const KINDS: QuotaKind[] = ['requests', 'tokens'];

function quotasOf(o: KeyOptions): [QuotaKind, Quota][] {
  const out: [QuotaKind, Quota][] = [];
  if (!o.quota) return out;
  for (const kind of KINDS) {
    const q = quotaOf(o.quota[kind]);
    if (q) out.push([kind, q]);
  }
  return out;
}

function addTo(m: Map<string, Used>, id: string, u: Used): void {
  const e = m.get(id);
  if (e) (e.requests += u.requests), (e.tokens += u.tokens);
  else m.set(id, { ...u });
}

export class QuotaTracker {
  /** `${keyId}|${period}` → the store's total at the last committed flush, with its period start */
  #base = new Map<string, Used & { start: number }>();
  /** counted here, not sent to the writer yet */
  #unsent = new Map<string, Used>();
  /** counted here, in a batch the writer has not answered yet */
  #sent = new Map<number, Map<string, Used>>();
  /** marks handed out already */
  #marked = new Set<string>();
  #pending: QuotaMark[] = [];

  constructor(
    private readonly keys: KeyList,
    private readonly clock: () => number,
  ) {}

  /** The refusal when key `keyId` is at or past a quota at `now`, else null. */
  check(keyId: string, o: KeyOptions, now: number): Refusal | null {
    for (const [kind, q] of quotasOf(o)) {
      if (this.used(keyId, q.period, now)[kind] < q.limit) continue;
      const end = periodEnd(q.period, now);
      return {
        status: 429,
        type: 'requests',
        code: 'quota_exceeded',
        message: `${kind} quota of ${q.limit} per ${q.period} used up; it resets at ${new Date(end).toISOString()}`,
        reason: 'QUOTA_EXCEEDED',
        action: 'NONE', // the 100% mark is the audit row; a row per refused request would flood the log
        retryAfter: Math.max(1, Math.ceil((end - now) / 1000)),
        keyId,
      };
    }
    return null;
  }

  used(keyId: string, period: QuotaPeriod, now: number): Used {
    const b = this.#base.get(`${keyId}|${period}`);
    const out = b && b.start === periodStart(period, now) ? { requests: b.requests, tokens: b.tokens } : { requests: 0, tokens: 0 };
    for (const m of [this.#unsent, ...this.#sent.values()]) {
      const l = m.get(keyId);
      if (l) (out.requests += l.requests), (out.tokens += l.tokens);
    }
    return out;
  }

  /** A finished request of a key with quotas. */
  add(keyId: string, tokens: number): void {
    addTo(this.#unsent, keyId, { requests: 1, tokens });
  }

  /** The periods a flush should read totals of (none when no key has a quota). */
  periodsToRead(now = this.clock()): PeriodTotals[] {
    const periods = new Map<QuotaPeriod, Set<string>>();
    for (const k of this.keys()) for (const [, q] of quotasOf(k.options)) periods.set(q.period, (periods.get(q.period) ?? new Set()).add(k.id));
    return [...periods].map(([period, keys]) => ({ period, start: periodStart(period, now), keys: [...keys] }));
  }

  /** Batch `seq` takes what was counted so far. */
  sent(seq: number): void {
    this.#sent.set(seq, this.#unsent);
    this.#unsent = new Map();
  }

  /** Batch `seq` was not written: its counts are unsent again. */
  failed(seq: number): void {
    const m = this.#sent.get(seq);
    this.#sent.delete(seq);
    if (m) for (const [id, u] of m) addTo(this.#unsent, id, u);
  }

  /** Batch `seq` committed, and `totals` were read in its transaction. */
  committed(seq: number, totals: PeriodTotals[]): void {
    for (const s of [...this.#sent.keys()]) if (s <= seq) this.#sent.delete(s);
    if (!totals.length) return;
    const base = new Map<string, Used & { start: number }>();
    for (const t of totals) for (const r of t.rows ?? []) base.set(`${r.key_id}|${t.period}`, { requests: r.requests, tokens: r.prompt_tokens + r.completion_tokens, start: t.start });
    this.#base = base;
    this.#findCrossings(this.clock());
  }

  #findCrossings(now: number): void {
    // marks of past periods pile up over months; forgetting them only re-sends marks the store ignores
    if (this.#marked.size > 100_000) this.#marked.clear();
    for (const k of this.keys()) {
      for (const [kind, q] of quotasOf(k.options)) {
        const used = this.used(k.id, q.period, now)[kind];
        const reached = levelReached(used, q.limit);
        const start = periodStart(q.period, now);
        for (const level of QUOTA_LEVELS) {
          if (reached === null || level > reached) break;
          const id = `${k.id}|${kind}|${start}|${level}`;
          if (this.#marked.has(id)) continue;
          this.#marked.add(id);
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
