/**
 * Usage reports (`dsk usage`): requests, errors and tokens from the gateway's hourly counters,
 * grouped by key, owner, role or model, with totals per UTC day for the chart.
 */
import { UsageError } from '../kernel/errors.js';
import { iso } from '../kernel/clock.js';
import type { UsageReportRow } from '../store/store.js';
import type { Home } from './home.js';

export const USAGE_GROUPINGS = ['key', 'owner', 'role', 'model'] as const;
export type UsageBy = (typeof USAGE_GROUPINGS)[number];

export interface UsageTotals {
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  tokens: number;
  /** answers whose token counts were missing or unreadable */
  no_usage: number;
}

export interface UsageGroup extends UsageTotals {
  /** the key id, owner, role or model ('-' for none) */
  group: string;
  /** the key's name (by key only) */
  name?: string | null;
  last_used_at: string | null;
}

export interface UsageReport {
  since: string;
  by: UsageBy;
  total: UsageTotals;
  groups: UsageGroup[];
  days: ({ day: string } & UsageTotals)[];
}

export function parseUsageBy(v: string, what: string): UsageBy {
  if (!(USAGE_GROUPINGS as readonly string[]).includes(v)) throw new UsageError('ERR_USAGE_BY', `invalid ${what} '${v}'`, { hint: `use ${USAGE_GROUPINGS.join(', ')}` });
  return v as UsageBy;
}

const empty = (): UsageTotals => ({ requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, tokens: 0, no_usage: 0 });

function add(t: UsageTotals, r: UsageReportRow): void {
  t.requests += r.requests;
  t.errors += r.errors;
  t.prompt_tokens += r.prompt_tokens;
  t.completion_tokens += r.completion_tokens;
  t.tokens += r.prompt_tokens + r.completion_tokens;
  t.no_usage += r.no_usage;
}

const DAY_MS = 86_400_000;

/** The report of the hours starting at or after `since` (rounded down to its UTC hour). */
export async function usageReport(home: Home, since: number, by: UsageBy, now: number): Promise<UsageReport> {
  const from = since - (since % 3_600_000);
  const rows = await home.store.usage.report(from);
  const total = empty();
  const groups = new Map<string, UsageGroup & { last: number }>();
  const days = new Map<string, UsageTotals>();
  for (let d = from - (from % DAY_MS); d <= now; d += DAY_MS) days.set(new Date(d).toISOString().slice(0, 10), empty());
  for (const r of rows) {
    add(total, r);
    const g = (by === 'key' ? r.key_id : by === 'model' ? r.model : r[by]) || '-';
    let e = groups.get(g);
    if (!e) groups.set(g, (e = { group: g, ...(by === 'key' ? { name: r.name } : {}), ...empty(), last_used_at: null, last: 0 }));
    add(e, r);
    e.last = Math.max(e.last, r.last_at);
    const day = new Date(r.hour).toISOString().slice(0, 10);
    let dt = days.get(day);
    if (!dt) days.set(day, (dt = empty()));
    add(dt, r);
  }
  return {
    since: new Date(from).toISOString(),
    by,
    total,
    groups: [...groups.values()]
      .sort((a, b) => b.requests - a.requests || a.group.localeCompare(b.group))
      .map(({ last, ...g }) => ({ ...g, last_used_at: iso(last || null) })),
    days: [...days].sort((a, b) => a[0].localeCompare(b[0])).map(([day, t]) => ({ day, ...t })),
  };
}
