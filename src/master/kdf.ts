/**
 * Passphrase KDFs for sealing Shamir fragments. Costs are named constants, stored beside the salt
 * in metadata.json, and bounded when read back: an attacker who can edit metadata.json must not be
 * able to lower the cost (fast offline guessing) or raise it absurdly (denial of service).
 */
import { UsageError, IntegrityError } from '../kernel/errors.js';
import { pbkdf2Sha256, scrypt } from '../kernel/crypto.js';

/** OWASP 2023 floor for PBKDF2-HMAC-SHA256; about 180 ms on one core of a 2-core CI machine. */
export const PBKDF2_MIN_ITERATIONS = 600_000;
export const PBKDF2_MAX_ITERATIONS = 10_000_000;
export const PBKDF2_DEFAULT_ITERATIONS = 600_000;
/** scrypt N=2^15, r=8, p=1 (32 MiB): about 200 ms; RFC 7914's interactive recommendation. */
export const SCRYPT_MIN_LOG_N = 15;
export const SCRYPT_MAX_LOG_N = 20;
export const SCRYPT_DEFAULT_LOG_N = 16;

export type KdfParams =
  | { name: 'pbkdf2-sha256'; iterations: number; salt: string }
  | { name: 'scrypt'; log_n: number; r: number; p: number; salt: string };

export function makeKdfParams(name: string, cost: number | undefined, salt: Buffer): KdfParams {
  const s = salt.toString('base64');
  if (name === 'pbkdf2' || name === 'pbkdf2-sha256') {
    const iterations = cost ?? PBKDF2_DEFAULT_ITERATIONS;
    if (!Number.isInteger(iterations) || iterations < PBKDF2_MIN_ITERATIONS || iterations > PBKDF2_MAX_ITERATIONS)
      throw new UsageError('ERR_KDF_COST', `the pbkdf2 cost must be between ${PBKDF2_MIN_ITERATIONS} and ${PBKDF2_MAX_ITERATIONS} iterations`);
    return { name: 'pbkdf2-sha256', iterations, salt: s };
  }
  if (name === 'scrypt') {
    const logN = cost ?? SCRYPT_DEFAULT_LOG_N;
    if (!Number.isInteger(logN) || logN < SCRYPT_MIN_LOG_N || logN > SCRYPT_MAX_LOG_N)
      throw new UsageError('ERR_KDF_COST', `the scrypt cost is log2(N) and must be between ${SCRYPT_MIN_LOG_N} and ${SCRYPT_MAX_LOG_N}`);
    return { name: 'scrypt', log_n: logN, r: 8, p: 1, salt: s };
  }
  throw new UsageError('ERR_KDF_UNKNOWN', `unknown kdf '${name}'`, { hint: 'use pbkdf2 or scrypt' });
}

/** Checks parameters read from disk; a value outside the bounds means the file was edited. */
export function checkKdfParams(p: unknown, where: string): KdfParams {
  const bad = (why: string) => new IntegrityError('ERR_KDF_PARAMS', `${where}: kdf parameters rejected (${why})`, { hint: 'restore metadata.json from a backup' });
  if (!p || typeof p !== 'object') throw bad('missing');
  const k = p as Record<string, unknown>;
  if (typeof k.salt !== 'string' || Buffer.from(k.salt, 'base64').length < 16) throw bad('salt');
  if (k.name === 'pbkdf2-sha256') {
    const it = k.iterations;
    if (typeof it !== 'number' || !Number.isInteger(it) || it < PBKDF2_MIN_ITERATIONS || it > PBKDF2_MAX_ITERATIONS) throw bad('iterations out of bounds');
    return { name: 'pbkdf2-sha256', iterations: it, salt: k.salt };
  }
  if (k.name === 'scrypt') {
    const { log_n, r, p: par } = k as Record<string, number>;
    if (!Number.isInteger(log_n) || log_n < SCRYPT_MIN_LOG_N || log_n > SCRYPT_MAX_LOG_N) throw bad('scrypt N out of bounds');
    if (r !== 8 || par !== 1) throw bad('scrypt r/p unsupported');
    return { name: 'scrypt', log_n, r, p: par, salt: k.salt };
  }
  throw bad('unknown kdf');
}

export async function deriveKek(passphrase: Buffer, params: KdfParams): Promise<Buffer> {
  const salt = Buffer.from(params.salt, 'base64');
  if (params.name === 'pbkdf2-sha256') return pbkdf2Sha256(passphrase, salt, params.iterations, 32);
  return scrypt(passphrase, salt, 2 ** params.log_n, params.r, params.p, 32);
}
