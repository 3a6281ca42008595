/** The key_sources table (keys.db): where each key has been used from, learned by the gateway. */
import type { KeySourceRow } from '../store.js';
import type { Statements } from './statements.js';

export class SqliteKeySources {
  constructor(private readonly st: Statements) {}

  all(): KeySourceRow[] {
    return this.st.get('SELECT key_id, kind, value, first_seen FROM key_sources ORDER BY key_id, first_seen, kind, value').all() as KeySourceRow[];
  }

  /** Adds rows not yet known; a row another gateway added first is kept as it is. */
  learn(rows: KeySourceRow[]): void {
    const ins = this.st.get('INSERT INTO key_sources (key_id, kind, value, first_seen) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING');
    for (const r of rows) ins.run(r.key_id, r.kind, r.value, r.first_seen);
  }
}
