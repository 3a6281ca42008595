/**
 * Alerts declared in dsk.json (`alerts`): what the gateway watches and when it says so. Checked by
 * the dsk.json schema (config-schema.ts) with the rest of the file, and turned into plain rules
 * (durations in milliseconds, quota and anomaly spelled as the audit actions they watch) by
 * `alertRules`. The same rules drive the gateway's own evaluation (gateway/alerts.ts) and the
 * Prometheus rules file (prometheus-rules.ts), so the two say the same thing.
 *
 *   qps                  requests per second, overall or per key, above `above` for `for`
 *   auth_failures        refused authentications (401) within `window` above `above`: brute force
 *   upstream_error_rate  share of 5xx answers within `window` above `above` (0..1), once at least
 *                        `min_requests` were proxied in the window
 *   quota / anomaly / audit   audit rows with these actions (quota: QUOTA_WARNING, QUOTA_EXCEEDED;
 *                        anomaly: ANOMALY); the episode clears after `clear_after` without one
 */
import { z } from 'zod';
import { parseDuration } from '../kernel/duration.js';

export const QUOTA_ACTIONS = ['QUOTA_WARNING', 'QUOTA_EXCEEDED'] as const;
export const ANOMALY_ACTION = 'ANOMALY';

const durationText = z.string().refine(
  (v) => {
    try {
      parseDuration(v, 'x');
      return true;
    } catch {
      return false;
    }
  },
  { message: 'expected a duration such as 30s, 5m or 1h' },
);

// Prometheus alert names are metric names; keeping to them lets one name serve both.
const name = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'an alert name is letters, digits and _ (a Prometheus alert name), at most 64');
const actionName = z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/, 'an audit action is upper-case letters, digits and _');
const keyId = z.string().regex(/^[0-9a-f]{4,64}$/, 'expected a key id');

const qps = z.strictObject({ name, kind: z.literal('qps'), above: z.number().positive(), for: durationText.optional(), per_key: z.boolean().optional(), key: keyId.optional() });
const authFailures = z.strictObject({ name, kind: z.literal('auth_failures'), above: z.number().int().nonnegative(), window: durationText.optional() });
const upstreamErrors = z.strictObject({ name, kind: z.literal('upstream_error_rate'), above: z.number().min(0).max(1), window: durationText.optional(), min_requests: z.number().int().positive().optional() });
const quota = z.strictObject({ name, kind: z.literal('quota'), clear_after: durationText.optional() });
const anomaly = z.strictObject({ name, kind: z.literal('anomaly'), clear_after: durationText.optional() });
const audit = z.strictObject({ name, kind: z.literal('audit'), actions: z.array(actionName).min(1), clear_after: durationText.optional() });

const webhook = z.strictObject({
  url: z.string().refine((u) => /^https?:\/\/[^\s]+$/.test(u) && URL.canParse(u), { message: 'expected an http:// or https:// URL' }),
  secret_file: z.string().min(1),
  timeout: durationText.optional(),
  retries: z.number().int().min(0).max(10).optional(),
});

export const ALERTS_SCHEMA = z
  .strictObject({
    rules: z.array(z.discriminatedUnion('kind', [qps, authFailures, upstreamErrors, quota, anomaly, audit])),
    webhook: webhook.optional(),
  })
  .refine((a) => new Set(a.rules.map((r) => r.name)).size === a.rules.length, { message: 'two alerts have the same name' })
  .refine((a) => a.rules.every((r) => r.kind !== 'qps' || !(r.per_key && r.key)), { message: 'a qps alert is per_key or for one key, not both' });

export type AlertsConfig = z.infer<typeof ALERTS_SCHEMA>;

export type AlertRule =
  | { name: string; kind: 'qps'; above: number; forMs: number; scope: 'all' | 'per_key' | { key: string } }
  | { name: string; kind: 'auth_failures'; above: number; windowMs: number }
  | { name: string; kind: 'upstream_error_rate'; above: number; windowMs: number; minRequests: number }
  | { name: string; kind: 'audit'; source: 'quota' | 'anomaly' | 'audit'; actions: string[]; clearAfterMs: number };

export interface WebhookConfig {
  url: string;
  secretFile: string;
  timeoutMs: number;
  retries: number;
}

const ms = (d: string | undefined, fallback: string) => parseDuration(d ?? fallback, 'duration');

/** The rules of an already checked `alerts` value, with defaults filled in. */
export function alertRules(a: AlertsConfig | undefined): AlertRule[] {
  return (a?.rules ?? []).map((r): AlertRule => {
    switch (r.kind) {
      case 'qps':
        return { name: r.name, kind: 'qps', above: r.above, forMs: ms(r.for, '1m'), scope: r.key ? { key: r.key } : r.per_key ? 'per_key' : 'all' };
      case 'auth_failures':
        return { name: r.name, kind: 'auth_failures', above: r.above, windowMs: ms(r.window, '1m') };
      case 'upstream_error_rate':
        return { name: r.name, kind: 'upstream_error_rate', above: r.above, windowMs: ms(r.window, '5m'), minRequests: r.min_requests ?? 10 };
      case 'quota':
        return { name: r.name, kind: 'audit', source: 'quota', actions: [...QUOTA_ACTIONS], clearAfterMs: ms(r.clear_after, '10m') };
      case 'anomaly':
        return { name: r.name, kind: 'audit', source: 'anomaly', actions: [ANOMALY_ACTION], clearAfterMs: ms(r.clear_after, '10m') };
      case 'audit':
        return { name: r.name, kind: 'audit', source: 'audit', actions: r.actions, clearAfterMs: ms(r.clear_after, '10m') };
    }
  });
}

export function webhookConfig(a: AlertsConfig | undefined): WebhookConfig | null {
  const w = a?.webhook;
  return w ? { url: w.url, secretFile: w.secret_file, timeoutMs: ms(w.timeout, '5s'), retries: w.retries ?? 5 } : null;
}
