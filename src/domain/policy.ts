/** Rotation and expiry policy: defaults for new keys, stored in dsk.json as durations. */
import { parseDuration } from '../kernel/duration.js';

export interface Policy {
  grace: string; // 48h
  rotate_every: string; // 90d
  max_uses: number; // 100000
  expires: string | null; // default expiry for new keys, null = none
  warn_within: string; // 7d
}

export const DEFAULT_POLICY: Policy = { grace: '48h', rotate_every: '90d', max_uses: 100_000, expires: null, warn_within: '7d' };

export interface PolicyMs {
  graceMs: number;
  rotateEveryMs: number;
  expiresMs: number | null;
  warnWithinMs: number;
  maxUses: number;
}

export function policyMs(p: Policy): PolicyMs {
  return {
    graceMs: parseDuration(p.grace, 'policy.grace', true),
    rotateEveryMs: parseDuration(p.rotate_every, 'policy.rotate_every'),
    expiresMs: p.expires ? parseDuration(p.expires, 'policy.expires') : null,
    warnWithinMs: parseDuration(p.warn_within, 'policy.warn_within', true),
    maxUses: p.max_uses,
  };
}
