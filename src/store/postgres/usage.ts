/**
 * usage_hourly, quota_marks and key_sources on PostgreSQL: the same queries as sqlite/usage.ts and
 * sqlite/key-sources.ts. sum() of BIGINT is NUMERIC in PostgreSQL, so sums are cast back to BIGINT
 * (read as numbers); text is ordered COLLATE "C", byte order as in SQLite.
 */
import type { KeySourceRow, KeyUsageTotal, UsageReportRow, UsageRow } from '../store.js';
import type { Q } from './query.js';

const UPSERT_COLS = 9;
/** Rows per INSERT statement (9 parameters each, far below PostgreSQL's 65535). */
const BATCH = 500;

export class PgUsage {
  constructor(private readonly q: Q) {}

  /** Adds to the counters (several gateways add to the same rows). */
  async addHourly(rows: UsageRow[]): Promise<void> {
    // One statement may not touch the same row twice (ON CONFLICT): merge duplicates first.
    const merged = new Map<string, UsageRow>();
    for (const r of rows) {
      const k = JSON.stringify([r.key_id, r.hour, r.model]);
      const m = merged.get(k);
      if (!m) merged.set(k, { ...r });
      else {
        m.requests += r.requests;
        m.errors += r.errors;
        m.prompt_tokens += r.prompt_tokens;
        m.completion_tokens += r.completion_tokens;
        m.no_usage += r.no_usage;
        m.last_at = Math.max(m.last_at, r.last_at);
      }
    }
    const all = [...merged.values()];
    for (let i = 0; i < all.length; i += BATCH) {
      const part = all.slice(i, i + BATCH);
      const values = part.map((_, j) => `(${Array.from({ length: UPSERT_COLS }, (__, c) => `$${j * UPSERT_COLS + c + 1}`).join(', ')})`).join(', ');
      await this.q.run(
        `INSERT INTO usage_hourly AS u (key_id, hour, model, requests, errors, prompt_tokens, completion_tokens, no_usage, last_at)
         VALUES ${values}
         ON CONFLICT (key_id, hour, model) DO UPDATE SET
           requests = u.requests + excluded.requests, errors = u.errors + excluded.errors,
           prompt_tokens = u.prompt_tokens + excluded.prompt_tokens, completion_tokens = u.completion_tokens + excluded.completion_tokens,
           no_usage = u.no_usage + excluded.no_usage, last_at = GREATEST(u.last_at, excluded.last_at)`,
        part.flatMap((r) => [r.key_id, r.hour, r.model, r.requests, r.errors, r.prompt_tokens, r.completion_tokens, r.no_usage, r.last_at]),
      );
    }
  }

  /** Records that a quota warning level was reached; false when it was recorded already (by any gateway). */
  async markQuota(keyId: string, kind: string, periodStart: number, level: number, at: number): Promise<boolean> {
    return (await this.q.run('INSERT INTO quota_marks (key_id, kind, period_start, level, at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING', [keyId, kind, periodStart, level, at])) === 1;
  }

  totalsSince(since: number, keyId: string | null = null): Promise<KeyUsageTotal[]> {
    const cols =
      'key_id, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors, sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens, max(last_at) AS last_at';
    if (keyId !== null) return this.q.rows(`SELECT ${cols} FROM usage_hourly WHERE key_id = $1 AND hour >= $2 GROUP BY key_id`, [keyId, since]);
    return this.q.rows(`SELECT ${cols} FROM usage_hourly WHERE hour >= $1 GROUP BY key_id ORDER BY key_id COLLATE "C"`, [since]);
  }

  report(since: number): Promise<UsageReportRow[]> {
    return this.q.rows(
      `SELECT u.key_id, u.hour, u.model, u.requests, u.errors, u.prompt_tokens, u.completion_tokens, u.no_usage, u.last_at,
              k.name, k.owner, k.role
         FROM usage_hourly u LEFT JOIN keys k ON k.id = u.key_id
        WHERE u.hour >= $1 ORDER BY u.hour, u.key_id COLLATE "C", u.model COLLATE "C"`,
      [since],
    );
  }
}

export class PgKeySources {
  constructor(private readonly q: Q) {}

  all(): Promise<KeySourceRow[]> {
    return this.q.rows('SELECT key_id, kind, value, first_seen FROM key_sources ORDER BY key_id COLLATE "C", first_seen, kind COLLATE "C", value COLLATE "C"');
  }

  /** Adds rows not yet known; a row another gateway added first is kept as it is. */
  async learn(rows: KeySourceRow[]): Promise<void> {
    for (let i = 0; i < rows.length; i += BATCH) {
      const part = rows.slice(i, i + BATCH);
      const values = part.map((_, j) => `($${j * 4 + 1}, $${j * 4 + 2}, $${j * 4 + 3}, $${j * 4 + 4})`).join(', ');
      await this.q.run(`INSERT INTO key_sources (key_id, kind, value, first_seen) VALUES ${values} ON CONFLICT DO NOTHING`, part.flatMap((r) => [r.key_id, r.kind, r.value, r.first_seen]));
    }
  }
}
