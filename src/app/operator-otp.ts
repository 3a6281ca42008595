/**
 * An operator's second factor: TOTP codes (RFC 6238, src/domain/totp.ts), each accepted once, and
 * the lockout after repeated failures. TOTP secrets are sealed (AES-256-GCM) under the home's seal
 * key with the operator name bound in as associated data, so a sealed secret cannot be moved to
 * another operator's row; checking a code therefore needs the home unsealed.
 */
import { open, seal, wipe } from '../kernel/crypto.js';
import { AuthError, IntegrityError, UsageError } from '../kernel/errors.js';
import { isTotpCodeShape, totpUri, TOTP_SECRET_BYTES, verifyTotp } from '../domain/totp.js';
import type { OperatorRow } from '../domain/operator.js';
import type { Home } from './home.js';
import { deny, LOCKOUT_DURATION_MS, LOCKOUT_THRESHOLD, LOCKOUT_WINDOW_MS, record, requireOperator } from './operator-access.js';

function totpAad(name: string): Buffer {
  return Buffer.from(`dsk/v1/operator-totp\0${name}`);
}

function openTotpSecret(h: Home, op: OperatorRow): Buffer {
  const { sealKey } = h.requireUnsealed();
  const s = op.totp_sealed ? open(sealKey, op.totp_sealed, totpAad(op.name)) : null;
  if (!s) throw new IntegrityError('ERR_SECRET_SEAL', `the second-factor secret of operator '${op.name}' does not open: the store was altered or belongs to another master key`, { hint: `an admin can re-enrol it: dsk operator reset-otp ${op.name}` });
  return s;
}

/** A fresh TOTP secret for `name`: sealed for the store, and as an otpauth:// URI shown once. */
export function newTotpSecret(h: Home, name: string): { sealed: Buffer; uri: string } {
  const { sealKey } = h.requireUnsealed();
  const secret = h.env.random(TOTP_SECRET_BYTES);
  try {
    return { sealed: seal(sealKey, secret, totpAad(name)), uri: totpUri(secret, name) };
  } finally {
    wipe(secret);
  }
}

/**
 * Checks a one-time code (home must be unsealed). A code is accepted once: its time step is stored
 * and a code of that step or an earlier one is refused. A wrong, stale or replayed code is a failure;
 * LOCKOUT_THRESHOLD failures within LOCKOUT_WINDOW_MS lock the operator for LOCKOUT_DURATION_MS.
 */
export async function verifyOperatorOtp(h: Home, name: string, code: string | null, purpose: 'command' | 'enrolment' = 'command', permission: string | null = null): Promise<number> {
  const op = await requireOperator(h, name);
  if (code == null)
    return deny(h, { operator: name, role: op.role, permission: permission ?? purpose, reason: 'no_code' }, new AuthError('ERR_NO_OTP', `this command needs a one-time code from the authenticator app of operator '${name}', and there is no terminal to ask on`, { hint: 'give --otp CODE or DSK_OTP=CODE' }));
  code = code.trim();
  if (!isTotpCodeShape(code)) throw new UsageError('ERR_OTP_SHAPE', 'a one-time code is 6 digits', { hint: 'type the code your authenticator app shows now' });
  const now = h.env.clock.now();
  if (op.lock_until != null && op.lock_until > now) {
    const until = new Date(op.lock_until).toISOString();
    return deny(
      h,
      { operator: name, role: op.role, permission: permission ?? purpose, reason: 'locked', until },
      new AuthError('ERR_OPERATOR_LOCKED', `operator '${name}' is locked until ${until} after ${LOCKOUT_THRESHOLD} failed one-time codes`, { hint: `wait, or ask an admin: dsk operator reset-otp ${name}` }),
    );
  }
  const secret = openTotpSecret(h, op);
  let step: number | null;
  try {
    step = verifyTotp(secret, code, now);
  } finally {
    wipe(secret);
  }
  const replayed = step != null && op.last_otp_step != null && step <= op.last_otp_step;
  if (step != null && !replayed) {
    const accepted = step;
    await h.tx((t) => t.operators.acceptCode(name, accepted));
    return accepted;
  }
  const reason = replayed ? 'replayed' : 'wrong_or_stale';
  let failures = 0;
  let lockedUntil: number | null = null;
  await record(h, async (t) => {
    failures = await t.operators.recordFailure(name, now, now - LOCKOUT_WINDOW_MS);
    await t.audit({ action: 'OTP_FAILURE', details: { operator: name, reason, purpose, permission: permission ?? purpose, failures } });
    if (failures >= LOCKOUT_THRESHOLD) {
      lockedUntil = now + LOCKOUT_DURATION_MS;
      await t.operators.lock(name, lockedUntil);
      await t.audit({ action: 'OPERATOR_LOCKED', details: { operator: name, failures, until: new Date(lockedUntil).toISOString() } });
    }
  });
  if (lockedUntil != null)
    throw new AuthError('ERR_OPERATOR_LOCKED', `${reason === 'replayed' ? 'one-time code already used' : 'wrong one-time code'}; operator '${name}' is now locked until ${new Date(lockedUntil).toISOString()}`, { hint: `wait 15 minutes, or ask an admin: dsk operator reset-otp ${name}` });
  throw new AuthError(replayed ? 'ERR_OTP_REPLAYED' : 'ERR_OTP_INVALID', replayed ? `one-time code already used (failure ${failures} of ${LOCKOUT_THRESHOLD})` : `wrong or expired one-time code (failure ${failures} of ${LOCKOUT_THRESHOLD})`, { hint: replayed ? 'wait for the next code (30 s)' : "use the code your authenticator shows now; check the host's clock" });
}
