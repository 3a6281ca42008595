/** Parsing of the key flags: the policy flags shared by keygen and rotate, and keygen's gateway options. */
import { parseDuration, parsePositiveInt } from '../kernel/duration.js';
import { UsageError } from '../kernel/errors.js';
import { parseCidr } from '../kernel/ip.js';
import type { KeySpec } from '../app/keys.js';
import type { KeyOptions } from '../gateway/key-options.js';
import { parseModelPatterns } from '../domain/model-patterns.js';
import { parseQuota } from '../domain/quota.js';
import type { KeyLimitChanges } from '../app/key-settings.js';

export interface KeyPolicyFlags {
  expires?: string;
  rotateEvery?: string;
  maxUses?: string;
}

export function policyFromFlags(o: KeyPolicyFlags): Pick<KeySpec, 'expiresInMs' | 'rotateEveryMs' | 'maxUses'> {
  const spec: Pick<KeySpec, 'expiresInMs' | 'rotateEveryMs' | 'maxUses'> = {};
  if (o.expires !== undefined) spec.expiresInMs = o.expires === 'never' ? null : parseDuration(o.expires, '--expires');
  if (o.rotateEvery !== undefined) spec.rotateEveryMs = o.rotateEvery === 'never' ? null : parseDuration(o.rotateEvery, '--rotate-every');
  if (o.maxUses !== undefined) spec.maxUses = o.maxUses === 'never' ? null : parsePositiveInt(o.maxUses, '--max-uses');
  return spec;
}

export interface KeyOptionFlags extends KeyLimitFlags {
  requireSignature?: boolean;
  allowCidr?: string[];
  rateLimit?: string;
  maxConcurrent?: string;
}

/** The flags `keygen` and `keys set` share: models and quotas. */
export interface KeyLimitFlags {
  models?: string;
  tokenQuota?: string;
  requestQuota?: string;
  allModels?: boolean;
}

/** Checked before anything is unsealed; `none` removes a quota and --all-models the model list (keys set). */
export function keyLimitsFromFlags(o: KeyLimitFlags): KeyLimitChanges {
  const out: KeyLimitChanges = {};
  if (o.models !== undefined && o.allModels) throw new UsageError('ERR_FLAGS_EXCLUSIVE', '--models cannot be combined with --all-models');
  if (o.models !== undefined) out.models = parseModelPatterns(o.models, '--models');
  if (o.allModels) out.models = null;
  if (o.tokenQuota !== undefined) out.tokenQuota = o.tokenQuota === 'none' ? null : parseQuota(o.tokenQuota, '--token-quota');
  if (o.requestQuota !== undefined) out.requestQuota = o.requestQuota === 'none' ? null : parseQuota(o.requestQuota, '--request-quota');
  return out;
}

/** The gateway options of a new key, checked before anything is unsealed. CIDR entries are kept as typed. */
export function keyOptionsFromFlags(o: KeyOptionFlags): KeyOptions {
  const out: KeyOptions = {};
  if (o.requireSignature) out.require_signature = true;
  if (o.allowCidr?.length) {
    for (const c of o.allowCidr) {
      if (!parseCidr(c)) throw new UsageError('ERR_ALLOW_CIDR', `invalid --allow-cidr '${c}'`, { hint: 'for example 10.0.0.0/8, 192.168.1.20 or fd00::/8' });
    }
    out.allowed_cidrs = o.allowCidr;
  }
  if (o.rateLimit !== undefined) {
    const m = /^(\d{1,7}(?:\.\d{1,3})?)(?::(\d{1,7}))?$/.exec(o.rateLimit);
    const rps = m ? Number(m[1]) : 0;
    const burst = m?.[2] !== undefined ? Number(m[2]) : Math.max(1, Math.ceil(rps * 2));
    if (!m || rps <= 0 || burst < 1) throw new UsageError('ERR_RATE_LIMIT', `invalid --rate-limit '${o.rateLimit}': expected RPS or RPS:BURST`, { hint: 'for example 5 or 5:20' });
    out.rate_limit = { rps, burst };
  }
  if (o.maxConcurrent !== undefined) out.max_concurrent = parsePositiveInt(o.maxConcurrent, '--max-concurrent', 100_000);
  const limits = keyLimitsFromFlags({ ...o, allModels: false });
  if (limits.models) out.models = limits.models;
  if (limits.tokenQuota || limits.requestQuota) out.quota = { ...(limits.tokenQuota ? { tokens: limits.tokenQuota } : {}), ...(limits.requestQuota ? { requests: limits.requestQuota } : {}) };
  return out;
}
