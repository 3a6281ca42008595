/**
 * Whether an operator may run a command: registration, lock, role and second-factor rules (the
 * code itself is checked in operator-otp.ts). Every refusal is audited as OPERATOR_DENIED and thrown
 * as AuthError (exit 3). See operators.ts for the model (open mode until the first admin enrols).
 */
import { AuthError, IntegrityError, NotFoundError } from '../kernel/errors.js';
import { ADMIN_ROLE, AUTOMATION_ROLE, type Permission } from '../domain/roles.js';
import { secondFactor, type OperatorRow } from '../domain/operator.js';
import { openHome, type Home, type Tx } from './home.js';

/** Failed codes that lock an operator, the window they are counted in, and the lock (Vault's defaults). */
export const LOCKOUT_THRESHOLD = 5;
export const LOCKOUT_WINDOW_MS = 15 * 60_000;
export const LOCKOUT_DURATION_MS = 15 * 60_000;

/** What a command needs; the CLI's `Access` (src/cli/session.ts) has this shape. */
export interface OperatorAccess {
  permission: Permission | 'admin' | null;
  sensitive?: boolean;
  /** The automation role may run this command (without TOTP) whatever its matrix row says: `rotate --due`. */
  automationAllowed?: boolean;
}

export type Decision = { mode: 'open' } | { mode: 'enforced'; operator: OperatorRow; needsOtp: boolean };

/** The operator, or NotFoundError (exit 4). */
export async function requireOperator(h: Home | Tx, name: string): Promise<OperatorRow> {
  const r = await ('store' in h ? h.store : h).operators.get(name);
  if (!r) throw new NotFoundError('ERR_NO_OPERATOR', `no operator '${name}'`, { hint: 'see dsk operator list' });
  return r;
}

/** True once an admin has confirmed a TOTP enrolment. Refuses a home whose admins vanished outside dsk. */
export async function operatorsEnforced(h: Home): Promise<boolean> {
  const admins = await h.store.operators.countEnrolled(ADMIN_ROLE);
  if (admins > 0) return true;
  if (await h.store.events.hasAction('OPERATORS_ENFORCED'))
    throw new IntegrityError('ERR_OPERATORS_TAMPERED', 'the audit log says operator checks are on, but keys.db has no enrolled admin left', { hint: 'keys.db was edited outside dsk: restore it from a backup and run dsk audit verify' });
  return false;
}

/** For `dsk status`: whether checks are on and how many operators there are. */
export async function operatorSummary(h: Home): Promise<{ mode: 'open' | 'enforced'; operators: number; enrolled_admins: number }> {
  const admins = await h.store.operators.countEnrolled(ADMIN_ROLE);
  const mode = admins > 0 || (await h.store.events.hasAction('OPERATORS_ENFORCED')) ? 'enforced' : 'open';
  return { mode, operators: (await h.store.operators.list()).length, enrolled_admins: admins };
}

/** Roles that get a second factor when added: admins and anyone who can manage keys or change parameters. */
export function roleNeedsTotp(h: Home, role: string): boolean {
  if (role === ADMIN_ROLE) return true;
  const perms = h.config.roles[role] ?? [];
  return perms.includes('key.manage') || perms.includes('param.change');
}

export function roleHas(h: Home, role: string, permission: Permission | 'admin'): boolean {
  if (permission === 'admin') return role === ADMIN_ROLE;
  return (h.config.roles[role] ?? []).includes(permission);
}

/**
 * Writes a refusal or failure record. The command's home may be open read-only (list, show); the
 * record then goes through a short-lived writable handle, so every refusal is audited either way.
 */
export async function record(h: Home, fn: (t: Tx) => Promise<void>): Promise<void> {
  if (!h.store.readonly) return h.tx(fn);
  const w = await openHome(h.dir, h.env);
  try {
    await w.tx(fn);
  } finally {
    await w.close();
  }
}

export async function deny(h: Home, details: Record<string, unknown>, err: AuthError): Promise<never> {
  await record(h, async (t) => void (await t.audit({ action: 'OPERATOR_DENIED', details })));
  throw err;
}

export function permissionLabel(access: OperatorAccess): string {
  return access.permission ?? 'none';
}

/**
 * Registration, lock, role and second-factor rules for `actor` running a command that needs
 * `access`. Every refusal is audited (OPERATOR_DENIED with the operator and the permission) and
 * thrown as AuthError (exit 3). Does not check the code itself: see verifyOperatorOtp.
 */
export async function checkOperator(h: Home, actor: string, access: OperatorAccess): Promise<Decision> {
  if (!(await operatorsEnforced(h))) return { mode: 'open' };
  const permission = permissionLabel(access);
  const op = await h.store.operators.get(actor);
  if (!op)
    return deny(
      h,
      { operator: actor, permission, reason: 'not_an_operator' },
      new AuthError('ERR_NOT_OPERATOR', `'${actor}' is not a registered operator of this home`, { hint: `an admin can add you: dsk operator add ${actor} --role ROLE (or set --actor / DSK_ACTOR)` }),
    );
  const now = h.env.clock.now();
  if (op.lock_until != null && op.lock_until > now) {
    const until = new Date(op.lock_until).toISOString();
    return deny(
      h,
      { operator: actor, role: op.role, permission, reason: 'locked', until },
      new AuthError('ERR_OPERATOR_LOCKED', `operator '${actor}' is locked until ${until} after ${LOCKOUT_THRESHOLD} failed one-time codes`, { hint: 'wait, or ask an admin: dsk operator reset-otp ' + actor }),
    );
  }
  const automationGrant = op.role === AUTOMATION_ROLE && !!access.automationAllowed;
  if (access.permission && !automationGrant && !roleHas(h, op.role, access.permission))
    return deny(
      h,
      { operator: actor, role: op.role, permission, reason: 'missing_permission' },
      new AuthError('ERR_PERMISSION', `operator '${actor}' (role ${op.role}) lacks the ${access.permission} permission this command needs`, { hint: 'see dsk policy show; an admin can change the role: dsk operator add/remove, dsk policy set' }),
    );
  if (!access.sensitive || automationGrant) return { mode: 'enforced', operator: op, needsOtp: false };
  if (op.role === AUTOMATION_ROLE || secondFactor(op) !== 'enrolled')
    return deny(
      h,
      { operator: actor, role: op.role, permission, reason: 'second_factor_required' },
      new AuthError(
        'ERR_OTP_NOT_ENROLLED',
        op.role === AUTOMATION_ROLE ? `the automation role may not run this sensitive command; it needs a person with a second factor` : `operator '${actor}' has no confirmed second factor, which this sensitive command needs`,
        {
          hint: op.role === AUTOMATION_ROLE ? 'run it as a human operator with --otp' : secondFactor(op) === 'pending' ? `confirm the enrolment: dsk operator confirm ${actor} --code CODE` : `an admin can enrol one: dsk operator reset-otp ${actor}`,
        },
      ),
    );
  return { mode: 'enforced', operator: op, needsOtp: true };
}
