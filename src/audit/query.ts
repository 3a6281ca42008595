/**
 * Reading the audit log: filtered queries (newest first), following new rows, export, statistics.
 * Time filters compare the ISO-8601 UTC text of `ts` (fixed width, so text order is time order)
 * and use the (action|actor|key_id, ts) indexes.
 */
import type { DB } from '../store/sqlite.js';
import { UsageError } from '../kernel/errors.js';
import { parseDuration } from '../kernel/duration.js';
import { ipMatcher, ipv4TextRanges, parseCidr, type Cidr } from '../kernel/ip.js';
import type { AuditRow } from './writer.js';

export interface AuditFilter {
  since?: number | null;
  until?: number | null;
  actions?: string[];
  actor?: string;
  keyId?: string;
  ip?: Cidr;
  limit?: number;
}

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

/** Above this many candidate rows in the source_ip index, scanning newest-first finds matches sooner. */
const IP_INDEX_CANDIDATES = 50_000;

/**
 * For an IPv4 block: when few rows fall in its text ranges, narrow with the source_ip index (the
 * exact test still runs on each row); when many do, matches are dense and the newest-first scan
 * stops early. Returns the extra condition, or '' to scan.
 */
function ipRange(db: DB, c: Cidr): { sql: string; args: string[] } | null {
  const ranges = ipv4TextRanges(c);
  if (!ranges) return null;
  const cond = ranges.map(() => '(source_ip >= ? AND source_ip < ?)').join(' OR ');
  const args = ranges.flat();
  const n = (db.prepare(`SELECT count(*) AS n FROM (SELECT 1 FROM audit.events WHERE ${cond} LIMIT ${IP_INDEX_CANDIDATES})`).get(...args) as { n: number }).n;
  return n < IP_INDEX_CANDIDATES ? { sql: `(${cond})`, args } : null;
}

function where(db: DB, f: AuditFilter): { sql: string; args: unknown[] } {
  const w: string[] = [];
  const args: unknown[] = [];
  if (f.since != null) (w.push('ts >= ?'), args.push(new Date(f.since).toISOString()));
  if (f.until != null) (w.push('ts < ?'), args.push(new Date(f.until).toISOString()));
  if (f.actions?.length) (w.push(`action IN (${f.actions.map(() => '?').join(',')})`), args.push(...f.actions));
  if (f.actor) (w.push('actor = ?'), args.push(f.actor));
  if (f.keyId) (w.push('key_id = ?'), args.push(f.keyId));
  if (f.ip) {
    const m = ipMatcher(f.ip);
    db.function('dsk_ip_in', { deterministic: true }, (ip: unknown) => (m(typeof ip === 'string' ? ip : null) ? 1 : 0));
    const r = ipRange(db, f.ip);
    if (r) (w.push(r.sql), args.push(...r.args));
    w.push('dsk_ip_in(source_ip)');
  }
  return { sql: w.length ? `WHERE ${w.join(' AND ')}` : '', args };
}

/**
 * Newest first (by time, then seq). Several actions run as one indexed query each, merged here:
 * `action IN (…)` would make SQLite sort every matching row before applying the limit.
 */
export function queryAudit(db: DB, f: AuditFilter): AuditRow[] {
  const limit = f.limit ?? 100;
  if (f.actions && f.actions.length > 1) {
    const merged = f.actions.flatMap((a) => queryAudit(db, { ...f, actions: [a] }));
    return merged.sort((a, b) => (a.ts === b.ts ? b.seq - a.seq : a.ts < b.ts ? 1 : -1)).slice(0, limit);
  }
  const { sql, args } = where(db, f);
  return db.prepare(`SELECT * FROM audit.events ${sql} ORDER BY ts DESC, seq DESC LIMIT ?`).all(...args, limit) as AuditRow[];
}

/** Oldest first, in chunks (see verify.ts chunkedRows on why), for export. */
export function* exportRows(db: DB, f: AuditFilter, chunk = 20_000): Generator<AuditRow> {
  const { sql, args } = where(db, f);
  const st = db.prepare(`SELECT * FROM audit.events ${sql ? sql + ' AND' : 'WHERE'} seq > ? ORDER BY seq LIMIT ?`);
  let after = 0;
  for (;;) {
    const rows = st.all(...args, after, chunk) as AuditRow[];
    for (const r of rows) yield r;
    if (rows.length < chunk) return;
    after = rows[rows.length - 1].seq;
  }
}

/** The newest n rows, oldest first (for tail). */
export function lastRows(db: DB, n: number): AuditRow[] {
  return (db.prepare('SELECT * FROM audit.events ORDER BY seq DESC LIMIT ?').all(n) as AuditRow[]).reverse();
}

export function rowsAfter(db: DB, seq: number, limit = 1000): AuditRow[] {
  return db.prepare('SELECT * FROM audit.events WHERE seq > ? ORDER BY seq LIMIT ?').all(seq, limit) as AuditRow[];
}

export function maxSeq(db: DB): number {
  return (db.prepare('SELECT coalesce(max(seq), 0) AS s FROM audit.events').get() as { s: number }).s;
}

export interface AuditStats {
  since: string;
  total: number;
  by_action: { action: string; count: number }[];
  by_day: { day: string; count: number }[];
}

/** Counts by action and by UTC day. */
export function auditStats(db: DB, since: number): AuditStats {
  const s = new Date(since).toISOString();
  const byAction = db.prepare('SELECT action, count(*) AS count FROM audit.events WHERE ts >= ? GROUP BY action ORDER BY count DESC, action').all(s) as { action: string; count: number }[];
  const byDay = db.prepare('SELECT substr(ts, 1, 10) AS day, count(*) AS count FROM audit.events WHERE ts >= ? GROUP BY day ORDER BY day').all(s) as { day: string; count: number }[];
  return { since: s, total: byAction.reduce((a, r) => a + r.count, 0), by_action: byAction, by_day: byDay };
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
