/** Parsing of the key policy flags shared by keygen and rotate. */
import { parseDuration, parsePositiveInt } from '../kernel/duration.js';
import type { KeySpec } from '../app/keys.js';

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
