/**
 * The one interface both master-key backends implement. Everything above it (keygen, rotation,
 * the gateway, the audit chain) uses only this, so it works unchanged on either backend.
 *
 * The master key itself is never exposed: callers get PBKDF2 output for a salt (the seed's first
 * derivation step) and HMAC-SHA256 under the master key, from which purpose keys are derived.
 */
import type { BackendKind } from '../domain/config.js';
export type { BackendKind };

export interface MasterKey {
  readonly backend: BackendKind;
  /** PBKDF2-HMAC-SHA256(master, salt, iterations, 32): the seed's first step. */
  stretch(salt: Buffer, iterations: number): Promise<Buffer>;
  /** HMAC-SHA256(master, data). */
  hmac(data: Buffer): Promise<Buffer>;
  /** Release the key (wipe memory, close the token session). Idempotent. */
  close(): Promise<void>;
}

/** Labels for the purpose keys derived from the master key. Changing one is a format change. */
export const PURPOSE = {
  KEY_CHECK: Buffer.from('dsk/v1/key-check-value'),
  SEAL: Buffer.from('dsk/v1/seal'),
  AUDIT_CHAIN: Buffer.from('dsk/v1/audit-chain'),
} as const;

/** Key check value: proves a rebuilt or loaded key is the right one without revealing it. */
export async function keyCheckValue(master: MasterKey): Promise<string> {
  return (await master.hmac(PURPOSE.KEY_CHECK)).subarray(0, 8).toString('hex');
}
