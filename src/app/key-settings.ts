/**
 * Changing a key's gateway limits after issue (`dsk keys set`): its model allow-list and quotas.
 * The change and its KEY_OPTIONS_CHANGE audit row commit together; a running gateway picks the new
 * options up at its next key index poll. And what a key has left of its quotas (`dsk keys show`).
 */
import { ConflictError } from '../kernel/errors.js';
import { keyOptions, type KeyRow } from '../domain/key.js';
import { formatQuota, periodEnd, periodStart, quotaOf, type Quota, type QuotaKind } from '../domain/quota.js';
import { iso } from '../kernel/clock.js';
import type { Home } from './home.js';
import { findKey } from './keys.js';

/** undefined: leave as is; null: remove. */
export interface KeyLimitChanges {
  models?: string[] | null;
  tokenQuota?: Quota | null;
  requestQuota?: Quota | null;
}

export async function changeKeyLimits(home: Home, id: string, ch: KeyLimitChanges): Promise<KeyRow> {
  const now = home.env.clock.now();
  return home.tx(async (t) => {
    const row = await findKey(t.keys, id);
    if (row.status !== 'active' && row.status !== 'grace') throw new ConflictError('ERR_KEY_STATE', `key ${row.id} is ${row.status}; only active keys and keys in grace can be changed`);
    const o = keyOptions(row);
    const quota = { ...((o.quota as Record<string, unknown> | undefined) ?? {}) };
    const audit: Record<string, unknown> = { key_id: id, name: row.name };
    if (ch.models !== undefined) {
      if (ch.models === null) delete o.models;
      else o.models = ch.models;
      audit.models = ch.models;
    }
    for (const [kind, q] of [['tokens', ch.tokenQuota], ['requests', ch.requestQuota]] as const) {
      if (q === undefined) continue;
      if (q === null) delete quota[kind];
      else quota[kind] = q;
      audit[`${kind}_quota`] = q ? formatQuota(q) : null;
    }
    if (Object.keys(quota).length) o.quota = quota;
    else delete o.quota;
    await t.keys.setOptions(id, JSON.stringify(o), now);
    await t.audit({ action: 'KEY_OPTIONS_CHANGE', key_id: id, details: audit });
    return findKey(t.keys, id);
  });
}

export interface QuotaLeft {
  kind: QuotaKind;
  quota: string;
  used: number;
  left: number;
  resets_at: string;
}

/** What a key has used and has left of each of its quotas at `now` (from the store's hourly counters). */
export async function quotasLeft(home: Home, row: KeyRow, now: number): Promise<QuotaLeft[]> {
  const q = keyOptions(row).quota as Record<string, unknown> | undefined;
  const out: QuotaLeft[] = [];
  for (const kind of ['requests', 'tokens'] as const) {
    const quota = quotaOf(q?.[kind]);
    if (!quota) continue;
    const [t] = await home.store.usage.totalsSince(periodStart(quota.period, now), row.id);
    const used = !t ? 0 : kind === 'requests' ? t.requests : t.prompt_tokens + t.completion_tokens;
    out.push({ kind, quota: formatQuota(quota), used, left: Math.max(0, quota.limit - used), resets_at: iso(periodEnd(quota.period, now))! });
  }
  return out;
}
