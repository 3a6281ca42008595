/**
 * Reading the audit log: the one filtered query (`dsk audit query` and the gateway's GET /dsk/audit),
 * following new rows, export, statistics; and parsing of filter values. The SQL is in the store
 * (src/store/sqlite/events.ts); this module validates filters and shapes rows for output.
 */
import type { AuditFilter, AuditRow, AuditStats, Store } from '../store/store.js';
import { UsageError } from '../kernel/errors.js';
import { parseDuration } from '../kernel/duration.js';
import { parseCidr, type Cidr } from '../kernel/ip.js';
import { GENESIS_HASH } from './chain.js';

export type { AuditFilter, AuditRow, AuditStats };

/**
 * `24h`, `7d` (that long before now), or an ISO-8601 date / date-time. A date or date-time without
 * a zone is local time (as a person at the terminal means it); add `Z` or `+02:00` to be exact.
 */
export function parseTimeArg(text: string, now: number, what: string): number {
  const t = text.trim();
  if (/^\d+[smhd]$/.test(t)) return now - parseDuration(t, what, true);
  const d = /^(\d{4})-(\d{2})-(\d{2})$/.exec(t);
  let ms: number;
  if (d) {
    const [y, m, day] = [Number(d[1]), Number(d[2]), Number(d[3])];
    const dt = new Date(y, m - 1, day);
    if (dt.getFullYear() !== y || dt.getMonth() !== m - 1 || dt.getDate() !== day) ms = NaN;
    else ms = dt.getTime();
  } else if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2})?$/.test(t)) {
    ms = Date.parse(t.replace(' ', 'T'));
    const [, mo, da] = /^\d{4}-(\d{2})-(\d{2})/.exec(t)!.map(Number);
    if (mo < 1 || mo > 12 || da < 1 || da > 31) ms = NaN;
  } else ms = NaN;
  if (!Number.isFinite(ms))
    throw new UsageError('ERR_TIME', `invalid ${what} '${text}': expected a duration (24h, 7d) or a date (2026-01-31, 2026-01-31T08:00, 2026-01-31T08:00Z)`);
  return ms;
}

export function parseIpFilter(text: string): Cidr {
  const c = parseCidr(text);
  if (!c) throw new UsageError('ERR_CIDR', `invalid address filter '${text}': expected an address or CIDR block (10.0.0.0/8, 192.168.1.7, 2001:db8::/32)`);
  return c;
}

const ACTION = /^[A-Z][A-Z0-9_]{0,63}$/;
export function parseActions(text: string): string[] {
  const list = text.split(',').map((a) => a.trim().toUpperCase()).filter(Boolean);
  if (!list.length) throw new UsageError('ERR_ACTION', `invalid action list '${text}'`, { hint: 'for example KEY_CREATE or KEY_REVOKE,KEY_ROTATION' });
  for (const a of list) if (!ACTION.test(a)) throw new UsageError('ERR_ACTION', `invalid action '${a}': action names are upper-case letters, digits and _`);
  return list;
}

/** Audit rows matching `f`, newest first (by time, then seq); at most f.limit (default 100). */
export function queryAudit(store: Store, f: AuditFilter): Promise<AuditRow[]> {
  return store.events.query({ ...f, limit: f.limit ?? 100 });
}

/** The most rows GET /dsk/audit returns at once. */
export const ADMIN_QUERY_MAX = 1000;

/**
 * GET /dsk/audit's query string as a filter: action (one, or a comma-separated list), key_id,
 * source_ip (an address or block), actor, since and until (ISO time or a duration ago), limit
 * (default 100, at most 1000). Malformed values are refused (UsageError) rather than ignored.
 */
export function auditFilterFromParams(p: URLSearchParams, now: number): AuditFilter {
  const f: AuditFilter = {};
  const get = (k: string) => p.get(k) || undefined;
  const action = get('action');
  if (action) f.actions = parseActions(action);
  const keyId = get('key_id');
  if (keyId) f.keyId = keyId;
  const ip = get('source_ip');
  if (ip) f.ip = parseIpFilter(ip);
  const actor = get('actor');
  if (actor) f.actor = actor;
  const since = get('since');
  if (since) f.since = parseTimeArg(since, now, 'since');
  const until = get('until');
  if (until) f.until = parseTimeArg(until, now, 'until');
  f.limit = Math.min(ADMIN_QUERY_MAX, Math.max(1, Math.floor(Number(p.get('limit'))) || 100));
  return f;
}

/** Oldest first, in chunks (see the store's chunks() on why), for export. */
export async function* exportRows(store: Store, f: AuditFilter): AsyncGenerator<AuditRow> {
  for await (const rows of store.events.exportChunks(f)) yield* rows;
}

/** The newest n rows, oldest first (for tail). */
export async function lastRows(store: Store, n: number): Promise<AuditRow[]> {
  return (await store.events.newest(n)).reverse();
}

export function rowsAfter(store: Store, seq: number, limit = 1000): Promise<AuditRow[]> {
  return store.events.after(seq, limit);
}

export async function maxSeq(store: Store): Promise<number> {
  return (await store.events.last())?.seq ?? 0;
}

/** Counts by action and by UTC day. */
export function auditStats(store: Store, since: number): Promise<AuditStats> {
  return store.events.stats(new Date(since).toISOString());
}

/** The newest row and the row count, for dsk status. */
export async function auditHead(store: Store): Promise<{ seq: number; hash: string; count: number }> {
  const last = await store.events.last();
  return { seq: last?.seq ?? 0, hash: last?.hash ?? GENESIS_HASH, count: await store.events.count() };
}

/** The row as scripts see it: details parsed back into an object. */
export function rowJson(r: AuditRow) {
  let details: unknown = r.details;
  try {
    details = JSON.parse(r.details);
  } catch {
    // keep the text: the chain is over the text, and verify reports edits
  }
  return { seq: r.seq, timestamp: r.ts, action: r.action, actor: r.actor, source_ip: r.source_ip, key_id: r.key_id, details, prev_hash: r.prev_hash, hash: r.hash, mac: r.mac };
}

export const CSV_COLUMNS = ['seq', 'timestamp', 'action', 'actor', 'source_ip', 'key_id', 'details', 'prev_hash', 'hash', 'mac'] as const;

/** RFC 4180: a field with a comma, quote, CR or LF is quoted and its quotes doubled; lines end CRLF. */
export function csvField(v: string | number | null): string {
  if (v === null) return '';
  const s = String(v);
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function csvLine(r: AuditRow): string {
  return [r.seq, r.ts, r.action, r.actor, r.source_ip, r.key_id, r.details, r.prev_hash, r.hash, r.mac].map(csvField).join(',') + '\r\n';
}

export function csvHeader(): string {
  return CSV_COLUMNS.join(',') + '\r\n';
}
