/**
 * A key's gateway options, as stored in the `options` JSON column of its row (set at issue, see the
 * CLI's keygen flags). Reading them never throws: a row written by another version or edited by
 * hand must not stop the gateway. Anything but a JSON object reads as no options; an allow-list
 * entry that does not parse denies rather than allows (kernel/ip.ts buildAllowList).
 */
import { buildAllowList, type CidrList } from '../kernel/ip.js';
import type { Quota } from '../domain/quota.js';

export interface KeyOptions {
  require_signature?: boolean;
  allowed_cidrs?: string[];
  rate_limit?: { rps?: number; burst?: number };
  /** requests this key may have in progress at once (streams included) */
  max_concurrent?: number;
  /** model allow-list patterns (domain/model-patterns.ts); absent: every model */
  models?: string[];
  /** budgets per calendar period (domain/quota.ts) */
  quota?: { tokens?: Quota; requests?: Quota };
}

export function parseKeyOptions(text: string): KeyOptions {
  try {
    const o = JSON.parse(text);
    return o && typeof o === 'object' && !Array.isArray(o) ? (o as KeyOptions) : {};
  } catch {
    return {};
  }
}

/** The addresses a key may be used from; null for every address. */
export function allowListOf(o: KeyOptions): CidrList | null {
  return buildAllowList(o.allowed_cidrs);
}
