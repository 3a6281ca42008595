/** The master_state table (keys.db): the key check value recorded when the master key was replaced. */
import type { Statements } from './statements.js';

export class SqliteMasterState {
  constructor(private readonly st: Statements) {}

  keyCheckValue(): string | null {
    const r = this.st.get('SELECT key_check_value FROM master_state WHERE id = 1').get() as { key_check_value: string } | undefined;
    return r?.key_check_value ?? null;
  }

  recordReplacement(keyCheckValue: string, at: number): void {
    this.st
      .get('INSERT INTO master_state (id, key_check_value, replaced_at) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET key_check_value = excluded.key_check_value, replaced_at = excluded.replaced_at')
      .run(keyCheckValue, at);
  }
}
