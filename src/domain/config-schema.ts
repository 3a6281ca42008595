/**
 * The shape of dsk.json, checked when it is loaded: a damaged or hand-edited file is refused
 * naming the field and what is wrong with it (`roles.admin: expected a list`), instead of failing
 * later with an internal error. zod, because its errors carry the path to the offending field.
 *
 * Unknown top-level fields are kept (a newer dsk, or another part of dsk, may add some); the
 * fields this dsk reads are checked exactly. Durations are checked by the same parser that reads
 * them later (kernel/duration.ts), so a file that loads never fails when a policy is applied.
 */
import { z } from 'zod';
import { parseDuration } from '../kernel/duration.js';
import { PERMISSIONS } from './roles.js';
import { CONFIG_FORMAT, type DskConfig } from './config.js';

const duration = (allowZero: boolean) =>
  z.string().refine(
    (v) => {
      try {
        parseDuration(v, 'x', allowZero);
        return true;
      } catch {
        return false;
      }
    },
    { message: `expected a duration such as 90d, 48h or 30m${allowZero ? ' (0s allowed)' : ''}` },
  );

const policy = z
  .object({
    grace: duration(true),
    rotate_every: duration(false),
    max_uses: z.number().int().positive(),
    expires: duration(false).nullable(),
    warn_within: duration(true),
  })
  .partial()
  .loose();

const roleName = z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a role name is lower-case letters, digits, _ and -');

export const CONFIG_SCHEMA = z
  .object({
    format: z.literal(CONFIG_FORMAT),
    home_id: z.string().regex(/^[0-9a-f]{8,64}$/, 'expected the hex home id written by dsk init'),
    backend: z.enum(['software', 'pkcs11']),
    created_at: z.string(),
    policy: policy.optional(),
    roles: z.record(roleName, z.array(z.enum(PERMISSIONS))).optional(),
    gateway: z.record(z.string(), z.unknown()).optional(),
    store: z.object({ url: z.string().regex(/^postgres(ql)?:\/\//i, 'expected a postgres:// address'), password_file: z.string().optional() }).loose().optional(),
  })
  .loose();

export type ConfigCheck = { ok: true; config: DskConfig } | { ok: false; field: string; problem: string };

/** Checks a parsed dsk.json value. Never throws. `field` is '' when the whole value is wrong. */
export function checkConfig(value: unknown): ConfigCheck {
  const r = CONFIG_SCHEMA.safeParse(value, { reportInput: true });
  if (r.success) return { ok: true, config: r.data as DskConfig };
  const issue = r.error.issues[0];
  const field = issue.path.map(String).join('.');
  return { ok: false, field, problem: describe(issue) };
}

function describe(issue: z.core.$ZodIssue): string {
  if (issue.code === 'invalid_type') {
    const got = (issue as { input?: unknown }).input;
    return `expected ${noun(issue.expected)}, got ${got === undefined ? 'nothing' : kindOf(got)}`;
  }
  if (issue.code === 'invalid_value' && 'values' in issue) return `expected one of ${issue.values.map((v) => JSON.stringify(v)).join(', ')}`;
  return issue.message;
}

function noun(t: string): string {
  return ({ array: 'a list', object: 'an object', record: 'an object', string: 'a string', number: 'a number', boolean: 'true or false', null: 'null' } as Record<string, string>)[t] ?? t;
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return noun(typeof v);
}
