/**
 * The audit events table (audit_log/audit.db, attached as `audit`). Time filters compare the
 * ISO-8601 UTC text of `ts` (fixed width, so text order is time order) and use the
 * (action|actor|key_id|source_ip, ts) indexes.
 */
import { ipMatcher, ipv4TextRanges, type Cidr } from '../../kernel/ip.js';
import type { AuditFilter, AuditRow, AuditStats, AuditTuple } from '../store.js';
import type { Statements } from './statements.js';

const COLUMNS = 'seq, ts, action, actor, source_ip, key_id, details, prev_hash, hash, mac';

/** Above this many candidate rows in the source_ip index, scanning newest-first finds matches sooner. */
const IP_INDEX_CANDIDATES = 50_000;

export class SqliteEvents {
  /** The block the SQL function dsk_ip_in tests against: set just before each statement that calls it. */
  #ipMatch: ((ip: string | null) => boolean) | null = null;
  #ipFunction = false;

  constructor(private readonly st: Statements) {}

  last(): { seq: number; hash: string } | null {
    return (this.st.get('SELECT seq, hash FROM audit.events ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined) ?? null;
  }

  lastKeyedSeq(): number | null {
    // Walks back from the newest row and stops at the first keyed one: one row in a healthy log.
    return (this.st.get('SELECT seq FROM audit.events WHERE mac IS NOT NULL ORDER BY seq DESC LIMIT 1').get() as { seq: number } | undefined)?.seq ?? null;
  }

  bounds(): { first: number | null; last: number | null } {
    // Two subqueries: SQLite answers a lone min() or max() from the index end, but not both at once.
    const b = this.st.get('SELECT (SELECT min(seq) FROM audit.events) AS first, (SELECT max(seq) FROM audit.events) AS last').get() as { first: number | null; last: number | null };
    return { first: b.first, last: b.last };
  }

  count(): number {
    return (this.st.get('SELECT count(*) AS n FROM audit.events').get() as { n: number }).n;
  }

  hashAt(seq: number): string | null {
    return (this.st.get('SELECT hash FROM audit.events WHERE seq = ?').get(seq) as { hash: string } | undefined)?.hash ?? null;
  }

  firstPrevHash(lo: number, hi: number): string | null {
    return (this.st.get('SELECT prev_hash FROM audit.events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT 1').get(lo, hi) as { prev_hash: string } | undefined)?.prev_hash ?? null;
  }

  firstSeqAtOrAfter(ts: string): number | null {
    return (this.st.get('SELECT min(seq) AS s FROM audit.events WHERE ts >= ?').get(ts) as { s: number | null }).s;
  }

  hasAction(action: string): boolean {
    return !!this.st.get('SELECT 1 FROM audit.events WHERE action = ? LIMIT 1').get(action);
  }

  withAction(action: string): Pick<AuditRow, 'seq' | 'details'>[] {
    return this.st.get('SELECT seq, details FROM audit.events WHERE action = ? ORDER BY seq').all(action) as Pick<AuditRow, 'seq' | 'details'>[];
  }

  macs(): { seq: number; hash: string; mac: string }[] {
    return this.st.get('SELECT seq, hash, mac FROM audit.events WHERE mac IS NOT NULL ORDER BY seq').all() as { seq: number; hash: string; mac: string }[];
  }

  /** One chunk of rows after `after` up to `hi`, as tuples (raw mode: no object per row). */
  chunk(after: number, hi: number, size: number): AuditTuple[] {
    return this.st.get(`SELECT ${COLUMNS} FROM audit.events WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?`).raw(true).all(after, hi, size) as AuditTuple[];
  }

  /**
   * Newest first (by time, then seq). Several actions run as one indexed query each, merged here:
   * `action IN (…)` would make SQLite sort every matching row before applying the limit.
   */
  query(f: AuditFilter): AuditRow[] {
    const limit = f.limit ?? 100;
    if (f.actions && f.actions.length > 1) {
      const merged = f.actions.flatMap((a) => this.query({ ...f, actions: [a] }));
      return merged.sort((a, b) => (a.ts === b.ts ? b.seq - a.seq : a.ts < b.ts ? 1 : -1)).slice(0, limit);
    }
    const { sql, args } = this.#where(f);
    return this.st.get(`SELECT ${COLUMNS} FROM audit.events ${sql} ORDER BY ts DESC, seq DESC LIMIT ?`).all(...args, limit) as AuditRow[];
  }

  /** Oldest first by seq, one chunk after `after`. */
  exportChunk(f: AuditFilter, after: number, size: number): AuditRow[] {
    const { sql, args } = this.#where(f);
    return this.st.get(`SELECT ${COLUMNS} FROM audit.events ${sql ? sql + ' AND' : 'WHERE'} seq > ? ORDER BY seq LIMIT ?`).all(...args, after, size) as AuditRow[];
  }

  newest(n: number): AuditRow[] {
    return this.st.get(`SELECT ${COLUMNS} FROM audit.events ORDER BY seq DESC LIMIT ?`).all(n) as AuditRow[];
  }

  after(seq: number, limit: number): AuditRow[] {
    return this.st.get(`SELECT ${COLUMNS} FROM audit.events WHERE seq > ? ORDER BY seq LIMIT ?`).all(seq, limit) as AuditRow[];
  }

  stats(since: string): AuditStats {
    const byAction = this.st.get('SELECT action, count(*) AS count FROM audit.events WHERE ts >= ? GROUP BY action ORDER BY count DESC, action').all(since) as { action: string; count: number }[];
    const byDay = this.st.get('SELECT substr(ts, 1, 10) AS day, count(*) AS count FROM audit.events WHERE ts >= ? GROUP BY day ORDER BY day').all(since) as { day: string; count: number }[];
    return { since, total: byAction.reduce((a, r) => a + r.count, 0), by_action: byAction, by_day: byDay };
  }

  insert(r: AuditRow): void {
    this.st.get(`INSERT INTO audit.events (${COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?)`).run(r.seq, r.ts, r.action, r.actor, r.source_ip, r.key_id, r.details, r.prev_hash, r.hash, r.mac);
  }

  deleteThrough(through: number): void {
    this.st.get('DELETE FROM audit.events WHERE seq <= ?').run(through);
  }

  setMac(seq: number, mac: string): void {
    this.st.get('UPDATE audit.events SET mac = ? WHERE seq = ?').run(mac, seq);
  }

  #where(f: AuditFilter): { sql: string; args: unknown[] } {
    const w: string[] = [];
    const args: unknown[] = [];
    if (f.since != null) (w.push('ts >= ?'), args.push(new Date(f.since).toISOString()));
    if (f.until != null) (w.push('ts < ?'), args.push(new Date(f.until).toISOString()));
    if (f.actions?.length) (w.push(`action IN (${f.actions.map(() => '?').join(',')})`), args.push(...f.actions));
    if (f.actor) (w.push('actor = ?'), args.push(f.actor));
    if (f.keyId) (w.push('key_id = ?'), args.push(f.keyId));
    if (f.ip) {
      this.#useIp(f.ip);
      const r = this.#ipRange(f.ip);
      if (r) (w.push(r.sql), args.push(...r.args));
      w.push('dsk_ip_in(source_ip)');
    }
    return { sql: w.length ? `WHERE ${w.join(' AND ')}` : '', args };
  }

  #useIp(c: Cidr): void {
    this.#ipMatch = ipMatcher(c);
    if (this.#ipFunction) return;
    const self = this;
    this.st.db.function('dsk_ip_in', { deterministic: true }, (ip: unknown) => (self.#ipMatch?.(typeof ip === 'string' ? ip : null) ? 1 : 0));
    this.#ipFunction = true;
  }

  /**
   * For an IPv4 block: when few rows fall in its text ranges, narrow with the source_ip index (the
   * exact test still runs on each row); when many do, matches are dense and the newest-first scan
   * stops early. Null: scan.
   */
  #ipRange(c: Cidr): { sql: string; args: string[] } | null {
    const ranges = ipv4TextRanges(c);
    if (!ranges) return null;
    const cond = ranges.map(() => '(source_ip >= ? AND source_ip < ?)').join(' OR ');
    const args = ranges.flat();
    const n = (this.st.get(`SELECT count(*) AS n FROM (SELECT 1 FROM audit.events WHERE ${cond} LIMIT ${IP_INDEX_CANDIDATES})`).get(...args) as { n: number }).n;
    return n < IP_INDEX_CANDIDATES ? { sql: `(${cond})`, args } : null;
  }
}
