/** operators, operator_failures, master_state and deliveries on PostgreSQL (as in sqlite/). */
import type { OperatorRow } from '../../domain/operator.js';
import type { PendingDelivery } from '../store.js';
import { one, type Q } from './query.js';

export class PgOperators {
  constructor(private readonly q: Q) {}

  get(name: string): Promise<OperatorRow | undefined> {
    return one<OperatorRow>(this.q, 'SELECT * FROM operators WHERE name = $1', [name]);
  }

  list(): Promise<OperatorRow[]> {
    return this.q.rows<OperatorRow>('SELECT * FROM operators ORDER BY name COLLATE "C"');
  }

  async countEnrolled(role: string): Promise<number> {
    return (await one<{ n: number }>(this.q, 'SELECT count(*) AS n FROM operators WHERE role = $1 AND enrolled_at IS NOT NULL', [role]))!.n;
  }

  async insert(r: Pick<OperatorRow, 'name' | 'role' | 'totp_sealed' | 'created_at' | 'created_by'>): Promise<void> {
    await this.q.run('INSERT INTO operators (name, role, totp_sealed, created_at, created_by) VALUES ($1, $2, $3, $4, $5)', [r.name, r.role, r.totp_sealed, r.created_at, r.created_by]);
  }

  async remove(name: string): Promise<void> {
    await this.q.run('DELETE FROM operators WHERE name = $1', [name]);
    await this.#forget(name);
  }

  async acceptCode(name: string, step: number): Promise<void> {
    await this.q.run('UPDATE operators SET last_otp_step = $1 WHERE name = $2', [step, name]);
    await this.#forget(name);
  }

  async recordFailure(name: string, at: number, forgetThrough: number): Promise<number> {
    await this.q.run('INSERT INTO operator_failures (name, at) VALUES ($1, $2)', [name, at]);
    await this.q.run('DELETE FROM operator_failures WHERE name = $1 AND at <= $2', [name, forgetThrough]);
    return (await one<{ n: number }>(this.q, 'SELECT count(*) AS n FROM operator_failures WHERE name = $1', [name]))!.n;
  }

  async lock(name: string, until: number): Promise<void> {
    await this.q.run('UPDATE operators SET lock_until = $1 WHERE name = $2', [until, name]);
    await this.#forget(name);
  }

  async confirmEnrolment(name: string, at: number): Promise<void> {
    await this.q.run('UPDATE operators SET enrolled_at = $1 WHERE name = $2', [at, name]);
  }

  async resetSecret(name: string, totpSealed: Buffer): Promise<void> {
    await this.q.run('UPDATE operators SET totp_sealed = $1, enrolled_at = NULL, last_otp_step = NULL, lock_until = NULL WHERE name = $2', [totpSealed, name]);
    await this.#forget(name);
  }

  async #forget(name: string): Promise<void> {
    await this.q.run('DELETE FROM operator_failures WHERE name = $1', [name]);
  }
}

export class PgMasterState {
  constructor(private readonly q: Q) {}

  async keyCheckValue(): Promise<string | null> {
    return (await one<{ key_check_value: string }>(this.q, 'SELECT key_check_value FROM master_state WHERE id = 1'))?.key_check_value ?? null;
  }

  async recordReplacement(keyCheckValue: string, at: number): Promise<void> {
    await this.q.run(
      'INSERT INTO master_state (id, key_check_value, replaced_at) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET key_check_value = excluded.key_check_value, replaced_at = excluded.replaced_at',
      [keyCheckValue, at],
    );
  }
}

export class PgDeliveries {
  constructor(private readonly q: Q) {}

  pending(): Promise<PendingDelivery[]> {
    return this.q.rows(
      `SELECT d.key_id, d.old_key_id, k.name, d.trigger, d.created_at, d.attempts, d.last_error
         FROM deliveries d JOIN keys k ON k.id = d.key_id
        WHERE d.delivered_at IS NULL AND k.status IN ('active', 'grace')
        ORDER BY d.created_at, d.key_id COLLATE "C"`,
    );
  }

  async add(d: { key_id: string; old_key_id: string; trigger: string; created_at: number }): Promise<void> {
    await this.q.run('INSERT INTO deliveries (key_id, old_key_id, trigger, created_at) VALUES ($1, $2, $3, $4)', [d.key_id, d.old_key_id, d.trigger, d.created_at]);
  }

  async delivered(keyId: string, at: number): Promise<void> {
    await this.q.run('UPDATE deliveries SET delivered_at = $1, attempts = attempts + 1, last_error = NULL WHERE key_id = $2 AND delivered_at IS NULL', [at, keyId]);
  }

  async failed(keyId: string, error: string, _at: number): Promise<void> {
    await this.q.run('UPDATE deliveries SET attempts = attempts + 1, last_error = $1 WHERE key_id = $2 AND delivered_at IS NULL', [error.slice(0, 500), keyId]);
  }
}
