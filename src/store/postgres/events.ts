/**
 * The audit chain on PostgreSQL (audit_events, audit_head). The engine serialises every writer on
 * one advisory lock, so `last()` in a transaction is the head no other writer can move before this
 * one commits. Each insert moves audit_head in the same transaction: the database itself then
 * records how far the chain reached, and a tail cut off without moving audit_head back is named
 * by `audit verify` (each node's audit_log/HEAD stays a second, local witness).
 *
 * The IP filter runs in JavaScript over rows the other filters select (PostgreSQL has no dsk
 * matcher), newest first, page by page, so a query stops as soon as it has `limit` matches.
 */
import { ipMatcher } from '../../kernel/ip.js';
import type { AuditFilter, AuditRow, AuditStats, AuditTuple } from '../store.js';
import { one, type Q } from './query.js';

const COLUMNS = 'seq, ts, action, actor, source_ip, key_id, details, prev_hash, hash, mac';
const PAGE = 5_000;

export class PgEvents {
  constructor(private readonly q: Q) {}

  async last(): Promise<{ seq: number; hash: string } | null> {
    return (await one<{ seq: number; hash: string }>(this.q, 'SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1')) ?? null;
  }

  /** The head the database recorded with the newest insert (null: no row was ever written). */
  async recordedHead(): Promise<{ seq: number; hash: string } | null> {
    return (await one<{ seq: number; hash: string }>(this.q, 'SELECT seq, hash FROM audit_head WHERE id = 1')) ?? null;
  }

  async lastKeyedSeq(): Promise<number | null> {
    return (await one<{ seq: number }>(this.q, 'SELECT seq FROM audit_events WHERE mac IS NOT NULL ORDER BY seq DESC LIMIT 1'))?.seq ?? null;
  }

  async bounds(): Promise<{ first: number | null; last: number | null }> {
    const b = (await one<{ first: number | null; last: number | null }>(this.q, 'SELECT min(seq) AS first, max(seq) AS last FROM audit_events'))!;
    return { first: b.first, last: b.last };
  }

  async count(): Promise<number> {
    return (await one<{ n: number }>(this.q, 'SELECT count(*) AS n FROM audit_events'))!.n;
  }

  async hashAt(seq: number): Promise<string | null> {
    return (await one<{ hash: string }>(this.q, 'SELECT hash FROM audit_events WHERE seq = $1', [seq]))?.hash ?? null;
  }

  async firstPrevHash(lo: number, hi: number): Promise<string | null> {
    return (await one<{ prev_hash: string }>(this.q, 'SELECT prev_hash FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT 1', [lo, hi]))?.prev_hash ?? null;
  }

  async firstSeqAtOrAfter(ts: string): Promise<number | null> {
    return (await one<{ s: number | null }>(this.q, 'SELECT min(seq) AS s FROM audit_events WHERE ts >= $1', [ts]))!.s;
  }

  async hasAction(action: string): Promise<boolean> {
    return !!(await one(this.q, 'SELECT 1 FROM audit_events WHERE action = $1 LIMIT 1', [action]));
  }

  withAction(action: string): Promise<Pick<AuditRow, 'seq' | 'details'>[]> {
    return this.q.rows('SELECT seq, details FROM audit_events WHERE action = $1 ORDER BY seq', [action]);
  }

  macs(): Promise<{ seq: number; hash: string; mac: string }[]> {
    return this.q.rows('SELECT seq, hash, mac FROM audit_events WHERE mac IS NOT NULL ORDER BY seq');
  }

  chunk(after: number, hi: number, size: number): Promise<AuditTuple[]> {
    return this.q.arrays<AuditTuple>(`SELECT ${COLUMNS} FROM audit_events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3`, [after, hi, size]);
  }

  /** Newest first by time, then seq. */
  async query(f: AuditFilter): Promise<AuditRow[]> {
    const limit = f.limit ?? 100;
    const { sql, args } = where(f);
    if (!f.ip) return this.q.rows<AuditRow>(`SELECT ${COLUMNS} FROM audit_events ${sql} ORDER BY ts DESC, seq DESC LIMIT $${args.length + 1}`, [...args, limit]);
    const match = ipMatcher(f.ip);
    const out: AuditRow[] = [];
    let cursor: { ts: string; seq: number } | null = null;
    for (;;) {
      const a = [...args];
      const more: string = cursor ? `${sql ? sql + ' AND' : 'WHERE'} (ts, seq) < ($${a.push(cursor.ts)}, $${a.push(cursor.seq)})` : sql;
      const page = await this.q.rows<AuditRow>(`SELECT ${COLUMNS} FROM audit_events ${more} ORDER BY ts DESC, seq DESC LIMIT ${PAGE}`, a);
      for (const r of page) if (match(r.source_ip) && out.push(r) >= limit) return out;
      if (page.length < PAGE) return out;
      cursor = page[page.length - 1];
    }
  }

  /** Oldest first by seq, one chunk after `after` (rows the IP filter drops are skipped, not counted). */
  async exportChunk(f: AuditFilter, after: number, size: number): Promise<{ rows: AuditRow[]; lastSeq: number | null; more: boolean }> {
    const { sql, args } = where(f);
    const page = await this.q.rows<AuditRow>(`SELECT ${COLUMNS} FROM audit_events ${sql ? sql + ' AND' : 'WHERE'} seq > $${args.length + 1} ORDER BY seq LIMIT $${args.length + 2}`, [...args, after, size]);
    const match = f.ip ? ipMatcher(f.ip) : null;
    return { rows: match ? page.filter((r) => match(r.source_ip)) : page, lastSeq: page.length ? page[page.length - 1].seq : null, more: page.length === size };
  }

  newest(n: number): Promise<AuditRow[]> {
    return this.q.rows(`SELECT ${COLUMNS} FROM audit_events ORDER BY seq DESC LIMIT $1`, [n]);
  }

  after(seq: number, limit: number): Promise<AuditRow[]> {
    return this.q.rows(`SELECT ${COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2`, [seq, limit]);
  }

  async stats(since: string): Promise<AuditStats> {
    const byAction = await this.q.rows<{ action: string; count: number }>('SELECT action, count(*) AS count FROM audit_events WHERE ts >= $1 GROUP BY action ORDER BY count DESC, action COLLATE "C"', [since]);
    const byDay = await this.q.rows<{ day: string; count: number }>('SELECT substr(ts, 1, 10) AS day, count(*) AS count FROM audit_events WHERE ts >= $1 GROUP BY day ORDER BY day', [since]);
    return { since, total: byAction.reduce((a, r) => a + r.count, 0), by_action: byAction, by_day: byDay };
  }

  async insert(r: AuditRow): Promise<void> {
    await this.q.run(`INSERT INTO audit_events (${COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`, [r.seq, r.ts, r.action, r.actor, r.source_ip, r.key_id, r.details, r.prev_hash, r.hash, r.mac]);
    await this.q.run('INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash', [r.seq, r.hash]);
  }

  async deleteThrough(through: number): Promise<void> {
    await this.q.run('DELETE FROM audit_events WHERE seq <= $1', [through]);
  }

  async setMac(seq: number, mac: string): Promise<void> {
    await this.q.run('UPDATE audit_events SET mac = $1 WHERE seq = $2', [mac, seq]);
  }
}

function where(f: AuditFilter): { sql: string; args: unknown[] } {
  const w: string[] = [];
  const args: unknown[] = [];
  const p = (v: unknown) => (args.push(v), `$${args.length}`);
  if (f.since != null) w.push(`ts >= ${p(new Date(f.since).toISOString())}`);
  if (f.until != null) w.push(`ts < ${p(new Date(f.until).toISOString())}`);
  if (f.actions?.length) w.push(`action IN (${f.actions.map(p).join(',')})`);
  if (f.actor) w.push(`actor = ${p(f.actor)}`);
  if (f.keyId) w.push(`key_id = ${p(f.keyId)}`);
  return { sql: w.length ? `WHERE ${w.join(' AND ')}` : '', args };
}
