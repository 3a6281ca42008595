/** The keys table on PostgreSQL: the same queries as sqlite/keys.ts; `options` is JSON text, read as jsonb. */
import type { KeyRow, KeyStatus } from '../../domain/key.js';
import type { DueKey, KeyFilter, KeyRef, KeyUse, NewKey } from '../store.js';
import { one, type Q } from './query.js';

const LIVE = "status IN ('active','grace')";

export class PgKeys {
  constructor(private readonly q: Q) {}

  get(id: string): Promise<KeyRow | undefined> {
    return one<KeyRow>(this.q, 'SELECT * FROM keys WHERE id = $1', [id]);
  }

  list(f: KeyFilter = {}): Promise<KeyRow[]> {
    const where: string[] = [];
    const args: unknown[] = [];
    const p = (v: unknown) => (args.push(v), `$${args.length}`);
    if (f.status?.length) where.push(`status IN (${f.status.map(p).join(',')})`);
    if (f.role) where.push(`role = ${p(f.role)}`);
    if (f.owner) where.push(`owner = ${p(f.owner)}`);
    if (f.name) where.push(`name = ${p(f.name)}`);
    const sql = `SELECT * FROM keys ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created_at, id COLLATE "C" ${f.limit ? 'LIMIT ' + Math.floor(f.limit) : ''}`;
    return this.q.rows<KeyRow>(sql, args);
  }

  all(): Promise<KeyRow[]> {
    return this.q.rows<KeyRow>('SELECT * FROM keys');
  }

  async countByStatus(): Promise<Partial<Record<KeyStatus, number>>> {
    const out: Partial<Record<KeyStatus, number>> = {};
    for (const r of await this.q.rows<{ status: KeyStatus; n: number }>('SELECT status, count(*) AS n FROM keys GROUP BY status')) out[r.status] = r.n;
    return out;
  }

  async countLive(role: string): Promise<number> {
    return (await one<{ n: number }>(this.q, `SELECT count(*) AS n FROM keys WHERE role = $1 AND ${LIVE}`, [role]))!.n;
  }

  sealedSecrets(): Promise<Pick<KeyRow, 'id' | 'secret_sealed'>[]> {
    return this.q.rows('SELECT id, secret_sealed FROM keys');
  }

  expiredBy(now: number): Promise<KeyRef[]> {
    return this.q.rows(`SELECT id, name FROM keys WHERE ${LIVE} AND expires_at IS NOT NULL AND expires_at <= $1 ORDER BY created_at, id COLLATE "C"`, [now]);
  }

  graceEndedBy(now: number): Promise<KeyRef[]> {
    return this.q.rows(
      `SELECT id, name FROM keys WHERE status = 'grace' AND grace_until IS NOT NULL AND grace_until <= $1
         AND NOT (expires_at IS NOT NULL AND expires_at <= $1) ORDER BY created_at, id COLLATE "C"`,
      [now],
    );
  }

  rotationDue(now: number): Promise<DueKey[]> {
    return this.q.rows(
      `SELECT id, name, status, use_count, max_uses FROM keys
        WHERE replaced_by IS NULL AND (
              (status = 'active' AND NOT (expires_at IS NOT NULL AND expires_at <= $1)
                 AND ((rotate_every_ms IS NOT NULL AND created_at + rotate_every_ms <= $1) OR (max_uses IS NOT NULL AND use_count >= max_uses)))
           OR (status = 'revoked' AND (options::jsonb ->> 'reissue_pending') = '1'))
        ORDER BY created_at, id COLLATE "C"`,
      [now],
    );
  }

  expiringWithin(now: number, until: number): Promise<KeyUse[]> {
    return this.q.rows(`SELECT id, name, expires_at, use_count, max_uses FROM keys WHERE status = 'active' AND expires_at > $1 AND expires_at <= $2 ORDER BY expires_at, id COLLATE "C"`, [now, until]);
  }

  nearUseLimit(fraction: number): Promise<KeyUse[]> {
    return this.q.rows(
      `SELECT id, name, expires_at, use_count, max_uses FROM keys WHERE status = 'active' AND max_uses IS NOT NULL AND use_count < max_uses AND use_count >= $1::float8 * max_uses ORDER BY id COLLATE "C"`,
      [fraction],
    );
  }

  /** Moved by a trigger on every committed change to keys, by any node. */
  async version(): Promise<number> {
    return (await one<{ v: number }>(this.q, 'SELECT keys_version AS v FROM dsk_meta WHERE id = 1'))?.v ?? 0;
  }

  async insert(k: NewKey): Promise<void> {
    await this.q.run(
      `INSERT INTO keys (id, name, owner, role, status, key_hash, salt, secret_sealed, created_at, expires_at, rotate_every_ms, max_uses, replaces, updated_at, options)
       VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $10, $11, $12, $8, $13)`,
      [k.id, k.name, k.owner, k.role, k.key_hash, k.salt, k.secret_sealed, k.created_at, k.expires_at, k.rotate_every_ms, k.max_uses, k.replaces, k.options],
    );
  }

  async revoke(id: string, o: { now: number; reason: string | null; reissue: boolean }): Promise<void> {
    await this.q.run(
      `UPDATE keys SET status = 'revoked', revoked_at = $1, revoke_reason = $2, grace_until = NULL, updated_at = $1,
         options = CASE WHEN $3 THEN jsonb_set(options::jsonb, '{reissue_pending}', '1')::text ELSE options END WHERE id = $4`,
      [o.now, o.reason, o.reissue, id],
    );
  }

  async expire(id: string, now: number): Promise<boolean> {
    return (await this.q.run(`UPDATE keys SET status = 'expired', grace_until = NULL, updated_at = $1 WHERE id = $2 AND ${LIVE} AND expires_at <= $1`, [now, id])) === 1;
  }

  async retire(id: string, now: number): Promise<boolean> {
    return (await this.q.run(`UPDATE keys SET status = 'retired', retired_at = $1, updated_at = $1 WHERE id = $2 AND status = 'grace' AND grace_until <= $1`, [now, id])) === 1;
  }

  async startGrace(id: string, o: { successor: string; graceUntil: number; now: number }): Promise<void> {
    await this.q.run(`UPDATE keys SET status = 'grace', grace_until = $1, replaced_by = $2, updated_at = $3 WHERE id = $4`, [o.graceUntil, o.successor, o.now, id]);
  }

  async reissued(id: string, o: { successor: string; now: number }): Promise<void> {
    await this.q.run(`UPDATE keys SET replaced_by = $1, options = (options::jsonb - 'reissue_pending')::text, updated_at = $2 WHERE id = $3`, [o.successor, o.now, id]);
  }

  /** Replaces the options JSON text (gateway options: models, quotas, limits). */
  async setOptions(id: string, options: string, now: number): Promise<void> {
    await this.q.run('UPDATE keys SET options = $1, updated_at = $2 WHERE id = $3', [options, now, id]);
  }

  async reseal(id: string, secretSealed: Buffer): Promise<void> {
    await this.q.run('UPDATE keys SET secret_sealed = $1 WHERE id = $2', [secretSealed, id]);
  }

  async firstApply(writer: string, seq: number, now: number): Promise<boolean> {
    if (seq % 1000 === 0) await this.q.run('DELETE FROM flushes WHERE at < $1', [now - 86_400_000]);
    return (await this.q.run('INSERT INTO flushes (writer, seq, at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [writer, seq, now])) === 1;
  }

  async bump(id: string, n: number, lastUsedAt: number): Promise<void> {
    await this.q.run('UPDATE keys SET use_count = use_count + $1, last_used_at = greatest(coalesce(last_used_at, 0), $2) WHERE id = $3', [n, lastUsedAt, id]);
  }
}
