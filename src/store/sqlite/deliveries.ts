/** The deliveries table (keys.db): whether each rotated key's successor reached its callers. */
import type { PendingDelivery } from '../store.js';
import type { Statements } from './statements.js';

export class SqliteDeliveries {
  constructor(private readonly st: Statements) {}

  pending(): PendingDelivery[] {
    return this.st
      .get(
        `SELECT d.key_id, d.old_key_id, k.name, d.trigger, d.created_at, d.attempts, d.last_error
           FROM deliveries d JOIN keys k ON k.id = d.key_id
          WHERE d.delivered_at IS NULL AND k.status IN ('active', 'grace')
          ORDER BY d.created_at, d.key_id`,
      )
      .all() as PendingDelivery[];
  }

  add(d: { key_id: string; old_key_id: string; trigger: string; created_at: number }): void {
    this.st.get('INSERT INTO deliveries (key_id, old_key_id, trigger, created_at) VALUES (?, ?, ?, ?)').run(d.key_id, d.old_key_id, d.trigger, d.created_at);
  }

  delivered(keyId: string, at: number): void {
    this.st.get('UPDATE deliveries SET delivered_at = ?, attempts = attempts + 1, last_error = NULL WHERE key_id = ? AND delivered_at IS NULL').run(at, keyId);
  }

  failed(keyId: string, error: string, _at: number): void {
    this.st.get('UPDATE deliveries SET attempts = attempts + 1, last_error = ? WHERE key_id = ? AND delivered_at IS NULL').run(error.slice(0, 500), keyId);
  }
}
