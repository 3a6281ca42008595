/** The keys table (keys.db): API keys as hashes, salts and sealed secrets, with state and lineage. */
import type { KeyRow, KeyStatus } from '../../domain/key.js';
import type { DueKey, KeyFilter, KeyRef, KeyUse, NewKey } from '../store.js';
import type { Statements } from './statements.js';

const LIVE = "status IN ('active','grace')";

export class SqliteKeys {
  constructor(private readonly st: Statements) {}

  get(id: string): KeyRow | undefined {
    return this.st.get('SELECT * FROM keys WHERE id = ?').get(id) as KeyRow | undefined;
  }

  list(f: KeyFilter = {}): KeyRow[] {
    const where: string[] = [];
    const args: unknown[] = [];
    if (f.status?.length) {
      where.push(`status IN (${f.status.map(() => '?').join(',')})`);
      args.push(...f.status);
    }
    if (f.role) (where.push('role = ?'), args.push(f.role));
    if (f.owner) (where.push('owner = ?'), args.push(f.owner));
    if (f.name) (where.push('name = ?'), args.push(f.name));
    const sql = `SELECT * FROM keys ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created_at, id ${f.limit ? 'LIMIT ' + Math.floor(f.limit) : ''}`;
    return this.st.get(sql).all(...args) as KeyRow[];
  }

  all(): KeyRow[] {
    return this.st.get('SELECT * FROM keys').all() as KeyRow[];
  }

  countByStatus(): Partial<Record<KeyStatus, number>> {
    const out: Partial<Record<KeyStatus, number>> = {};
    for (const r of this.st.get('SELECT status, count(*) AS n FROM keys GROUP BY status').all() as { status: KeyStatus; n: number }[]) out[r.status] = r.n;
    return out;
  }

  countLive(role: string): number {
    return (this.st.get(`SELECT count(*) AS n FROM keys WHERE role = ? AND ${LIVE}`).get(role) as { n: number }).n;
  }

  sealedSecrets(): Pick<KeyRow, 'id' | 'secret_sealed'>[] {
    return this.st.get('SELECT id, secret_sealed FROM keys').all() as Pick<KeyRow, 'id' | 'secret_sealed'>[];
  }

  expiredBy(now: number): KeyRef[] {
    return this.st.get(`SELECT id, name FROM keys WHERE ${LIVE} AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY created_at, id`).all(now) as KeyRef[];
  }

  graceEndedBy(now: number): KeyRef[] {
    return this.st
      .get(
        `SELECT id, name FROM keys WHERE status = 'grace' AND grace_until IS NOT NULL AND grace_until <= ?
           AND NOT (expires_at IS NOT NULL AND expires_at <= ?) ORDER BY created_at, id`,
      )
      .all(now, now) as KeyRef[];
  }

  rotationDue(now: number): DueKey[] {
    return this.st
      .get(
        `SELECT id, name, status, use_count, max_uses FROM keys
          WHERE replaced_by IS NULL AND (
                (status = 'active' AND NOT (expires_at IS NOT NULL AND expires_at <= ?)
                   AND ((rotate_every_ms IS NOT NULL AND created_at + rotate_every_ms <= ?) OR (max_uses IS NOT NULL AND use_count >= max_uses)))
             OR (status = 'revoked' AND json_extract(options, '$.reissue_pending') = 1))
          ORDER BY created_at, id`,
      )
      .all(now, now) as DueKey[];
  }

  expiringWithin(now: number, until: number): KeyUse[] {
    return this.st
      .get(`SELECT id, name, expires_at, use_count, max_uses FROM keys WHERE status = 'active' AND expires_at > ? AND expires_at <= ? ORDER BY expires_at, id`)
      .all(now, until) as KeyUse[];
  }

  nearUseLimit(fraction: number): KeyUse[] {
    return this.st
      .get(`SELECT id, name, expires_at, use_count, max_uses FROM keys WHERE status = 'active' AND max_uses IS NOT NULL AND use_count < max_uses AND use_count >= ? * max_uses ORDER BY id`)
      .all(fraction) as KeyUse[];
  }

  /** PRAGMA data_version changes when another connection commits to keys.db: one tiny read. */
  version(): number {
    return this.st.db.pragma('data_version', { simple: true }) as number;
  }

  insert(k: NewKey): void {
    this.st
      .get(
        `INSERT INTO keys (id, name, owner, role, status, key_hash, salt, secret_sealed, created_at, expires_at,
          rotate_every_ms, max_uses, replaces, updated_at, options)
         VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(k.id, k.name, k.owner, k.role, k.key_hash, k.salt, k.secret_sealed, k.created_at, k.expires_at, k.rotate_every_ms, k.max_uses, k.replaces, k.created_at, k.options);
  }

  revoke(id: string, o: { now: number; reason: string | null; reissue: boolean }): void {
    this.st
      .get(
        `UPDATE keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?, grace_until = NULL, updated_at = ?,
           options = CASE WHEN ? THEN json_set(options, '$.reissue_pending', 1) ELSE options END WHERE id = ?`,
      )
      .run(o.now, o.reason, o.now, o.reissue ? 1 : 0, id);
  }

  expire(id: string, now: number): boolean {
    return this.st.get(`UPDATE keys SET status = 'expired', grace_until = NULL, updated_at = ? WHERE id = ? AND ${LIVE} AND expires_at <= ?`).run(now, id, now).changes === 1;
  }

  retire(id: string, now: number): boolean {
    return this.st.get(`UPDATE keys SET status = 'retired', retired_at = ?, updated_at = ? WHERE id = ? AND status = 'grace' AND grace_until <= ?`).run(now, now, id, now).changes === 1;
  }

  startGrace(id: string, o: { successor: string; graceUntil: number; now: number }): void {
    this.st.get(`UPDATE keys SET status = 'grace', grace_until = ?, replaced_by = ?, updated_at = ? WHERE id = ?`).run(o.graceUntil, o.successor, o.now, id);
  }

  reissued(id: string, o: { successor: string; now: number }): void {
    this.st.get(`UPDATE keys SET replaced_by = ?, options = json_remove(options, '$.reissue_pending'), updated_at = ? WHERE id = ?`).run(o.successor, o.now, id);
  }

  setOptions(id: string, options: string, now: number): void {
    this.st.get('UPDATE keys SET options = ?, updated_at = ? WHERE id = ?').run(options, now, id);
  }

  reseal(id: string, secretSealed: Buffer): void {
    this.st.get('UPDATE keys SET secret_sealed = ? WHERE id = ?').run(secretSealed, id);
  }

  /** Usage counted by the gateway (see gateway/flush-worker.ts). */
  firstApply(writer: string, seq: number, now: number): boolean {
    if (seq % 1000 === 0) this.st.get('DELETE FROM flushes WHERE at < ?').run(now - 86_400_000);
    return this.st.get('INSERT OR IGNORE INTO flushes (writer, seq, at) VALUES (?, ?, ?)').run(writer, seq, now).changes === 1;
  }

  bump(id: string, n: number, lastUsedAt: number): void {
    this.st.get('UPDATE keys SET use_count = use_count + ?, last_used_at = max(coalesce(last_used_at, 0), ?) WHERE id = ?').run(n, lastUsedAt, id);
  }
}
