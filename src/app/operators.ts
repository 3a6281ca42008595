/**
 * Operators of the CLI: the seed's role matrix (section 2.3) applied to the people and jobs that run
 * dsk, and a TOTP second factor (RFC 6238, src/domain/totp.ts) for sensitive commands (section 3.2,
 * step 2: changing the service's keys needs a second factor).
 *
 * Bootstrap ("open mode"): a fresh home has no enrolled admin, and every command runs as before,
 * like Vault before an auth method is configured. Checks start the moment the first admin confirms
 * a TOTP enrolment; that moment is written to the audit log (OPERATORS_ENFORCED), and from then on
 * at least one enrolled admin always remains (the last one cannot be removed or reset), so an empty
 * operators table next to that audit row means keys.db was edited behind dsk's back: refused.
 *
 * What this is and is not: the operator name is asserted (--actor / DSK_ACTOR / OS user), and
 * anyone who can write the home's files can edit these tables. The checks make every audit row
 * name an accountable operator, stop mistakes, and make a sensitive command need a code from the
 * operator's phone; the security boundary against a local attacker remains the unseal material
 * (HSM PIN, Shamir passphrases). See docs/operators.md and docs/threat-model.md.
 *
 * This module: enrolment and management (add, confirm, remove, reset, list). The access decision
 * is operator-access.ts; one-time codes, their sealing and the lockout are operator-otp.ts.
 */
import { ConflictError, AuthError, UsageError } from '../kernel/errors.js';
import { assertRole } from '../domain/config.js';
import { ADMIN_ROLE } from '../domain/roles.js';
import { isOperatorName, secondFactor, type OperatorRow } from '../domain/operator.js';
import type { Home, Tx } from './home.js';
import { checkOperator, permissionLabel, requireOperator, roleNeedsTotp, type Decision, type OperatorAccess } from './operator-access.js';
import { newTotpSecret, verifyOperatorOtp } from './operator-otp.js';

export { ADMIN_ROLE, AUTOMATION_ROLE } from '../domain/roles.js';
export { secondFactor, type OperatorRow, type SecondFactor } from '../domain/operator.js';
export { checkOperator, LOCKOUT_DURATION_MS, LOCKOUT_THRESHOLD, LOCKOUT_WINDOW_MS, operatorsEnforced, operatorSummary, roleHas, roleNeedsTotp, type Decision, type OperatorAccess } from './operator-access.js';
export { verifyOperatorOtp } from './operator-otp.js';

export function getOperator(h: Home, name: string): Promise<OperatorRow | undefined> {
  return h.store.operators.get(name);
}

export function listOperators(h: Home): Promise<OperatorRow[]> {
  return h.store.operators.list();
}

/** checkOperator + verifyOperatorOtp for callers that already hold an unsealed home. */
export async function authorizeOperator(h: Home, actor: string, access: OperatorAccess, otp: () => Promise<string | null>): Promise<Decision> {
  const d = await checkOperator(h, actor, access);
  if (d.mode === 'enforced' && d.needsOtp) await verifyOperatorOtp(h, actor, await otp(), 'command', permissionLabel(access));
  return d;
}

export interface AddedOperator {
  operator: OperatorRow;
  /** otpauth:// URI holding the TOTP secret: shown once to the new operator, never logged or audited. */
  otpauth_uri: string | null;
}

export function validateOperatorName(name: string): void {
  if (!isOperatorName(name)) throw new UsageError('ERR_OPERATOR_NAME', `invalid operator name '${name}': use letters, digits and . _ @ + - (at most 64)`);
}

/** Checks made before unsealing, so a bad name or role costs nobody a passphrase. */
export async function preflightAdd(h: Home, name: string, role: string): Promise<void> {
  validateOperatorName(name);
  assertRole(h.config, role);
  if (await getOperator(h, name)) throw new ConflictError('ERR_OPERATOR_EXISTS', `operator '${name}' already exists`, { hint: `remove it first (dsk operator remove ${name}) or reset its second factor (dsk operator reset-otp ${name})` });
}

/** dsk operator add. Roles that need a second factor get a pending TOTP enrolment (see confirmEnrolment). */
export async function addOperator(h: Home, name: string, role: string): Promise<AddedOperator> {
  await preflightAdd(h, name, role);
  const now = h.env.clock.now();
  const totp = roleNeedsTotp(h, role) ? newTotpSecret(h, name) : null;
  return h.tx(async (t) => {
    if (await t.operators.get(name)) throw new ConflictError('ERR_OPERATOR_EXISTS', `operator '${name}' already exists`, { hint: `see dsk operator list` });
    await t.operators.insert({ name, role, totp_sealed: totp?.sealed ?? null, created_at: now, created_by: h.env.actor });
    await t.audit({ action: 'OPERATOR_ADD', details: { operator: name, role, second_factor: totp ? 'pending' : 'none' } });
    return { operator: await requireOperator(t, name), otpauth_uri: totp?.uri ?? null };
  });
}

/**
 * Confirms a pending enrolment with a first code, proving the authenticator holds the secret. The
 * first admin to confirm turns operator checks on (audited OPERATORS_ENFORCED).
 */
export async function confirmEnrolment(h: Home, name: string, code: string | null): Promise<{ operator: OperatorRow; enforced_now: boolean }> {
  const op = await requireOperator(h, name);
  if (secondFactor(op) === 'none') throw new ConflictError('ERR_NO_ENROLMENT', `operator '${name}' has no second factor to confirm`, { hint: `an admin can enrol one: dsk operator reset-otp ${name}` });
  if (secondFactor(op) === 'enrolled') throw new ConflictError('ERR_ALREADY_ENROLLED', `operator '${name}' has already confirmed its second factor`, { hint: `to replace it: dsk operator reset-otp ${name}` });
  if (code == null)
    throw new AuthError('ERR_NO_OTP', `confirming needs the code ${name}'s authenticator shows, and there is no terminal to ask on`, { hint: `give --code CODE` });
  await verifyOperatorOtp(h, name, code, 'enrolment');
  const now = h.env.clock.now();
  return h.tx(async (t) => {
    const wasEnforced = (await t.operators.countEnrolled(ADMIN_ROLE)) > 0 || (await t.events.hasAction('OPERATORS_ENFORCED'));
    await t.operators.confirmEnrolment(name, now);
    await t.audit({ action: 'OPERATOR_ENROL', details: { operator: name, role: op.role } });
    const enforcedNow = !wasEnforced && op.role === ADMIN_ROLE;
    if (enforcedNow) await t.audit({ action: 'OPERATORS_ENFORCED', details: { first_admin: name } });
    return { operator: await requireOperator(t, name), enforced_now: enforcedNow };
  });
}

async function assertNotLastAdmin(t: Home | Tx, op: OperatorRow, what: string): Promise<void> {
  const ops = 'store' in t ? t.store.operators : t.operators;
  if (op.role === ADMIN_ROLE && secondFactor(op) === 'enrolled' && (await ops.countEnrolled(ADMIN_ROLE)) <= 1)
    throw new ConflictError('ERR_LAST_ADMIN', `cannot ${what} '${op.name}': it is the only enrolled admin`, { hint: 'add and enrol another admin first, so someone can still run sensitive commands' });
}

export function removeOperator(h: Home, name: string): Promise<OperatorRow> {
  return h.tx(async (t) => {
    const op = await requireOperator(t, name);
    await assertNotLastAdmin(t, op, 'remove');
    await t.operators.remove(name);
    await t.audit({ action: 'OPERATOR_REMOVE', details: { operator: name, role: op.role } });
    return op;
  });
}

/** A new TOTP secret (the old one stops working at once), pending until confirmed; clears any lock. */
export async function resetOtp(h: Home, name: string): Promise<AddedOperator> {
  const op0 = await requireOperator(h, name);
  await assertNotLastAdmin(h, op0, 'reset the second factor of');
  const totp = newTotpSecret(h, name);
  return h.tx(async (t) => {
    const op = await requireOperator(t, name);
    await assertNotLastAdmin(t, op, 'reset the second factor of');
    await t.operators.resetSecret(name, totp.sealed);
    await t.audit({ action: 'OPERATOR_RESET_OTP', details: { operator: name, role: op.role, was_locked: op.lock_until != null && op.lock_until > h.env.clock.now() } });
    return { operator: await requireOperator(t, name), otpauth_uri: totp.uri };
  });
}

/** An operator as printed by `dsk operator list`: never the sealed secret. */
export function operatorView(r: OperatorRow, now: number) {
  return {
    name: r.name,
    role: r.role,
    second_factor: secondFactor(r),
    locked_until: r.lock_until != null && r.lock_until > now ? new Date(r.lock_until).toISOString() : null,
    created_at: new Date(r.created_at).toISOString(),
    created_by: r.created_by,
    enrolled_at: r.enrolled_at == null ? null : new Date(r.enrolled_at).toISOString(),
  };
}
