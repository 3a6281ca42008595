/**
 * The usage part of the store contract (see store.ts): the gateway's counters per key, UTC hour
 * and model, and the marks that keep quota warnings to one audit row per key, quota and period.
 */

/** One counter row: a key's requests and tokens in one UTC hour for one model ('' when none was named). */
export interface UsageRow {
  key_id: string;
  /** start of the UTC hour, epoch ms */
  hour: number;
  model: string;
  requests: number;
  /** answers with status >= 400 (upstream errors and gateway refusals after authentication) */
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** answers whose token counts were missing or unreadable (counted with zero tokens) */
  no_usage: number;
  last_at: number;
}

export interface KeyUsageTotal {
  key_id: string;
  requests: number;
  errors: number;
  prompt_tokens: number;
  completion_tokens: number;
  last_at: number;
}

export type UsageReportRow = UsageRow & { name: string | null; owner: string | null; role: string | null };

export interface UsageReads {
  /** Sums per key over the hours starting at or after `since` (one key when keyId is given), ordered by key. */
  totalsSince(since: number, keyId?: string | null): Promise<KeyUsageTotal[]>;
  /** Counter rows of the hours at or after `since`, with their key's name, owner and role; by hour, key, model. */
  report(since: number): Promise<UsageReportRow[]>;
}

export interface UsageWrites extends UsageReads {
  /** use_count += n; last_used_at = max(last_used_at, lastUsedAt). Unknown ids are ignored. */
  bump(id: string, n: number, lastUsedAt: number): Promise<void>;
  /**
   * Records that flush `seq` of `writer` is being applied in this transaction; false when it was
   * applied already (a retried flush whose first commit succeeded although its answer was lost).
   * Records older than a day are forgotten.
   */
  firstApply(writer: string, seq: number, now: number): Promise<boolean>;
  /** Adds the rows to the hourly counters (rows of several gateways add up). */
  addHourly(rows: UsageRow[]): Promise<void>;
  /** Records a quota warning level for a key, kind and period; false when it was recorded before. */
  markQuota(keyId: string, kind: string, periodStart: number, level: number, at: number): Promise<boolean>;
}
