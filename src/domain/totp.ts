/**
 * TOTP second factor for operators: RFC 6238 (TOTP) over RFC 4226 (HOTP), through the maintained
 * `otpauth` package. Parameters are the ones every authenticator app understands: HMAC-SHA-1,
 * 6 digits, 30-second steps, and a 160-bit secret (RFC 4226 section 4, R6 recommends 160 bits).
 *
 * A code is accepted within ±1 step (clock drift between phone and host, and the time it takes to
 * type); the caller stores the accepted step so the same code cannot be used twice.
 */
import { Secret, TOTP, URI } from 'otpauth';

export const TOTP_PERIOD_S = 30;
export const TOTP_DIGITS = 6;
export const TOTP_ALGORITHM = 'SHA1';
export const TOTP_SECRET_BYTES = 20;
/** Steps either side of now that are accepted. */
export const TOTP_WINDOW = 1;
export const TOTP_ISSUER = 'dsk';

export interface TotpParams {
  algorithm?: string;
  digits?: number;
  period?: number;
}

/** The time step (RFC 6238 T) for a time in epoch milliseconds. */
export function totpStep(timeMs: number, period = TOTP_PERIOD_S): number {
  return Math.floor(timeMs / 1000 / period);
}

/** The code for `secret` at `timeMs`. */
export function totpCode(secret: Buffer, timeMs: number, p: TotpParams = {}): string {
  return TOTP.generate({
    secret: new Secret({ buffer: Uint8Array.from(secret).buffer }),
    algorithm: p.algorithm ?? TOTP_ALGORITHM,
    digits: p.digits ?? TOTP_DIGITS,
    period: p.period ?? TOTP_PERIOD_S,
    timestamp: timeMs,
  });
}

/**
 * Checks `code` against `secret` at `timeMs` within ±TOTP_WINDOW steps (constant-time compare in
 * otpauth). Returns the matching time step, or null.
 */
export function verifyTotp(secret: Buffer, code: string, timeMs: number): number | null {
  if (!isTotpCodeShape(code)) return null;
  const delta = TOTP.validate({
    token: code,
    secret: new Secret({ buffer: Uint8Array.from(secret).buffer }),
    algorithm: TOTP_ALGORITHM,
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_S,
    timestamp: timeMs,
    window: TOTP_WINDOW,
  });
  return delta === null ? null : totpStep(timeMs) + delta;
}

export function isTotpCodeShape(code: string): boolean {
  return new RegExp(`^[0-9]{${TOTP_DIGITS}}$`).test(code);
}

/** The otpauth:// URI an authenticator app scans. It contains the secret: show it once, log it never. */
export function totpUri(secret: Buffer, account: string, issuer = TOTP_ISSUER): string {
  return new TOTP({
    issuer,
    label: account,
    secret: new Secret({ buffer: Uint8Array.from(secret).buffer }),
    algorithm: TOTP_ALGORITHM,
    digits: TOTP_DIGITS,
    period: TOTP_PERIOD_S,
  }).toString();
}

/** Reads the secret back from an otpauth:// URI (used by tests and by `dsk demo`). */
export function secretFromUri(uri: string): Buffer {
  const otp = URI.parse(uri);
  return Buffer.from(otp.secret.bytes);
}
