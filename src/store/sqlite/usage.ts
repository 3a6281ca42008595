/** The usage tables (keys.db): the gateway's counters per key, hour and model, and quota warning marks. */
import type { KeyUsageTotal, UsageReportRow, UsageRow } from '../store.js';
import type { Statements } from './statements.js';

export class SqliteUsage {
  constructor(private readonly st: Statements) {}

  /** Adds to the counters (several gateways add to the same rows). */
  addHourly(rows: UsageRow[]): void {
    const s = this.st.get(
      `INSERT INTO usage_hourly (key_id, hour, model, requests, errors, prompt_tokens, completion_tokens, no_usage, last_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (key_id, hour, model) DO UPDATE SET
         requests = requests + excluded.requests, errors = errors + excluded.errors,
         prompt_tokens = prompt_tokens + excluded.prompt_tokens, completion_tokens = completion_tokens + excluded.completion_tokens,
         no_usage = no_usage + excluded.no_usage, last_at = max(last_at, excluded.last_at)`,
    );
    for (const r of rows) s.run(r.key_id, r.hour, r.model, r.requests, r.errors, r.prompt_tokens, r.completion_tokens, r.no_usage, r.last_at);
  }

  /** Records that a quota warning level was reached; false when it was recorded already (by any gateway). */
  markQuota(keyId: string, kind: string, periodStart: number, level: number, at: number): boolean {
    return this.st.get('INSERT OR IGNORE INTO quota_marks (key_id, kind, period_start, level, at) VALUES (?, ?, ?, ?, ?)').run(keyId, kind, periodStart, level, at).changes === 1;
  }

  totalsSince(since: number, keyId: string | null = null): KeyUsageTotal[] {
    const cols = 'key_id, sum(requests) AS requests, sum(errors) AS errors, sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens, max(last_at) AS last_at';
    // one key: a range of the primary key (key_id, hour, model), cheap enough for every flush
    if (keyId !== null) return this.st.get(`SELECT ${cols} FROM usage_hourly WHERE key_id = ? AND hour >= ? GROUP BY key_id`).all(keyId, since) as KeyUsageTotal[];
    return this.st.get(`SELECT ${cols} FROM usage_hourly WHERE hour >= ? GROUP BY key_id ORDER BY key_id`).all(since) as KeyUsageTotal[];
  }

  report(since: number): UsageReportRow[] {
    return this.st
      .get(
        `SELECT u.key_id, u.hour, u.model, u.requests, u.errors, u.prompt_tokens, u.completion_tokens, u.no_usage, u.last_at,
                k.name, k.owner, k.role
           FROM usage_hourly u LEFT JOIN keys k ON k.id = u.key_id
          WHERE u.hour >= ? ORDER BY u.hour, u.key_id, u.model`,
      )
      .all(since) as UsageReportRow[];
  }
}
