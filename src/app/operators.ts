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
 * TOTP secrets are sealed (AES-256-GCM) under the home's seal key with the operator name bound in
 * as associated data, so a sealed secret cannot be moved to another operator's row.
 */
import { open, seal, wipe } from '../kernel/crypto.js';
import { AuthError, ConflictError, IntegrityError, NotFoundError, UsageError } from '../kernel/errors.js';
import { assertRole } from '../domain/config.js';
import { type Permission } from '../domain/roles.js';
import { openHome, type Home } from './home.js';
import { isTotpCodeShape, totpUri, TOTP_SECRET_BYTES, verifyTotp } from '../domain/totp.js';
import { OPERATORS_SCHEMA } from '../store/sqlite.js';

/** Failed codes that lock an operator, the window they are counted in, and the lock (Vault's defaults). */
export const LOCKOUT_THRESHOLD = 5;
export const LOCKOUT_WINDOW_MS = 15 * 60_000;
export const LOCKOUT_DURATION_MS = 15 * 60_000;

export const AUTOMATION_ROLE = 'automation';
export const ADMIN_ROLE = 'admin';

/** What a command needs; the CLI's `Access` (src/cli/session.ts) has this shape. */
export interface OperatorAccess {
  permission: Permission | 'admin' | null;
  sensitive?: boolean;
  /** The automation role may run this command (without TOTP) whatever its matrix row says: `rotate --due`. */
  automationAllowed?: boolean;
}

export interface OperatorRow {
  name: string;
  role: string;
  totp_sealed: Buffer | null;
  enrolled_at: number | null;
  created_at: number;
  created_by: string;
  last_otp_step: number | null;
  lock_until: number | null;
}

export type SecondFactor = 'enrolled' | 'pending' | 'none';

export function secondFactor(r: OperatorRow): SecondFactor {
  return r.totp_sealed == null ? 'none' : r.enrolled_at == null ? 'pending' : 'enrolled';
}

export type Decision =
  | { mode: 'open' }
  | { mode: 'enforced'; operator: OperatorRow; needsOtp: boolean };

const NAME_RE = /^[\w.@+-]{1,64}$/;

function hasTables(h: Home): boolean {
  return !!h.db.prepare("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'operators'").get();
}

function ensureTables(h: Home): void {
  if (!hasTables(h)) h.db.exec(OPERATORS_SCHEMA);
}

export function getOperator(h: Home, name: string): OperatorRow | undefined {
  if (!hasTables(h)) return undefined;
  return h.db.prepare('SELECT * FROM operators WHERE name = ?').get(name) as OperatorRow | undefined;
}

function mustGet(h: Home, name: string): OperatorRow {
  const r = getOperator(h, name);
  if (!r) throw new NotFoundError('ERR_NO_OPERATOR', `no operator '${name}'`, { hint: 'see dsk operator list' });
  return r;
}

export function listOperators(h: Home): OperatorRow[] {
  if (!hasTables(h)) return [];
  return h.db.prepare('SELECT * FROM operators ORDER BY name').all() as OperatorRow[];
}

function enrolledAdmins(h: Home): number {
  if (!hasTables(h)) return 0;
  return (h.db.prepare('SELECT count(*) AS n FROM operators WHERE role = ? AND enrolled_at IS NOT NULL').get(ADMIN_ROLE) as { n: number }).n;
}

function enforcedMarker(h: Home): boolean {
  return !!h.db.prepare("SELECT 1 FROM audit.events WHERE action = 'OPERATORS_ENFORCED' LIMIT 1").get();
}

/** True once an admin has confirmed a TOTP enrolment. Refuses a home whose admins vanished outside dsk. */
export function operatorsEnforced(h: Home): boolean {
  const admins = enrolledAdmins(h);
  if (admins > 0) return true;
  if (enforcedMarker(h))
    throw new IntegrityError('ERR_OPERATORS_TAMPERED', 'the audit log says operator checks are on, but keys.db has no enrolled admin left', { hint: 'keys.db was edited outside dsk: restore it from a backup and run dsk audit verify' });
  return false;
}

/** For `dsk status`: whether checks are on and how many operators there are. */
export function operatorSummary(h: Home): { mode: 'open' | 'enforced'; operators: number; enrolled_admins: number } {
  const admins = enrolledAdmins(h);
  const mode = admins > 0 || enforcedMarker(h) ? 'enforced' : 'open';
  return { mode, operators: listOperators(h).length, enrolled_admins: admins };
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
async function record(h: Home, fn: (w: Home) => void): Promise<void> {
  if (!h.db.readonly) {
    h.tx(() => fn(h));
    return;
  }
  const w = openHome(h.dir, h.env);
  try {
    w.tx(() => fn(w));
  } finally {
    await w.close();
  }
}

async function deny(h: Home, details: Record<string, unknown>, err: AuthError): Promise<never> {
  await record(h, (w) => w.audit({ action: 'OPERATOR_DENIED', details }));
  throw err;
}

function permissionLabel(access: OperatorAccess): string {
  return access.permission ?? 'none';
}

/**
 * Registration, lock, role and second-factor rules for `actor` running a command that needs
 * `access`. Every refusal is audited (OPERATOR_DENIED with the operator and the permission) and
 * thrown as AuthError (exit 3). Does not check the code itself: see verifyOperatorOtp.
 */
export async function checkOperator(h: Home, actor: string, access: OperatorAccess): Promise<Decision> {
  if (!operatorsEnforced(h)) return { mode: 'open' };
  const permission = permissionLabel(access);
  const op = getOperator(h, actor);
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
      new AuthError('ERR_OTP_NOT_ENROLLED', op.role === AUTOMATION_ROLE
          ? `the automation role may not run this sensitive command; it needs a person with a second factor`
          : `operator '${actor}' has no confirmed second factor, which this sensitive command needs`, { hint: op.role === AUTOMATION_ROLE ? 'run it as a human operator with --otp' : secondFactor(op) === 'pending' ? `confirm the enrolment: dsk operator confirm ${actor} --code CODE` : `an admin can enrol one: dsk operator reset-otp ${actor}` }),
    );
  return { mode: 'enforced', operator: op, needsOtp: true };
}

function openTotpSecret(h: Home, op: OperatorRow): Buffer {
  const { sealKey } = h.requireUnsealed();
  const s = op.totp_sealed ? open(sealKey, op.totp_sealed, totpAad(op.name)) : null;
  if (!s) throw new IntegrityError('ERR_SECRET_SEAL', `the second-factor secret of operator '${op.name}' does not open: the store was altered or belongs to another master key`, { hint: `an admin can re-enrol it: dsk operator reset-otp ${op.name}` });
  return s;
}

function totpAad(name: string): Buffer {
  return Buffer.from(`dsk/v1/operator-totp\0${name}`);
}

/**
 * Checks a one-time code (home must be unsealed). A code is accepted once: its time step is stored
 * and a code of that step or an earlier one is refused. A wrong, stale or replayed code is a failure;
 * LOCKOUT_THRESHOLD failures within LOCKOUT_WINDOW_MS lock the operator for LOCKOUT_DURATION_MS.
 */
export async function verifyOperatorOtp(h: Home, name: string, code: string | null, purpose: 'command' | 'enrolment' = 'command', permission: string | null = null): Promise<number> {
  const op = mustGet(h, name);
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
    h.tx(() => {
      h.db.prepare('UPDATE operators SET last_otp_step = ? WHERE name = ?').run(accepted, name);
      h.db.prepare('DELETE FROM operator_failures WHERE name = ?').run(name);
    });
    return accepted;
  }
  const reason = replayed ? 'replayed' : 'wrong_or_stale';
  let failures = 0;
  let lockedUntil: number | null = null;
  await record(h, (w) => {
    w.db.prepare('INSERT INTO operator_failures (name, at) VALUES (?, ?)').run(name, now);
    w.db.prepare('DELETE FROM operator_failures WHERE name = ? AND at <= ?').run(name, now - LOCKOUT_WINDOW_MS);
    failures = (w.db.prepare('SELECT count(*) AS n FROM operator_failures WHERE name = ?').get(name) as { n: number }).n;
    w.audit({ action: 'OTP_FAILURE', details: { operator: name, reason, purpose, permission: permission ?? purpose, failures } });
    if (failures >= LOCKOUT_THRESHOLD) {
      lockedUntil = now + LOCKOUT_DURATION_MS;
      w.db.prepare('UPDATE operators SET lock_until = ? WHERE name = ?').run(lockedUntil, name);
      w.db.prepare('DELETE FROM operator_failures WHERE name = ?').run(name);
      w.audit({ action: 'OPERATOR_LOCKED', details: { operator: name, failures, until: new Date(lockedUntil).toISOString() } });
    }
  });
  if (lockedUntil != null)
    throw new AuthError('ERR_OPERATOR_LOCKED', `${reason === 'replayed' ? 'one-time code already used' : 'wrong one-time code'}; operator '${name}' is now locked until ${new Date(lockedUntil).toISOString()}`, { hint: `wait 15 minutes, or ask an admin: dsk operator reset-otp ${name}` });
  throw new AuthError(replayed ? 'ERR_OTP_REPLAYED' : 'ERR_OTP_INVALID', replayed ? `one-time code already used (failure ${failures} of ${LOCKOUT_THRESHOLD})` : `wrong or expired one-time code (failure ${failures} of ${LOCKOUT_THRESHOLD})`, { hint: replayed ? 'wait for the next code (30 s)' : "use the code your authenticator shows now; check the host's clock" });
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

function newSecret(h: Home, name: string): { sealed: Buffer; uri: string } {
  const { sealKey } = h.requireUnsealed();
  const secret = h.env.random(TOTP_SECRET_BYTES);
  try {
    return { sealed: seal(sealKey, secret, totpAad(name)), uri: totpUri(secret, name) };
  } finally {
    wipe(secret);
  }
}

export function validateOperatorName(name: string): void {
  if (!NAME_RE.test(name)) throw new UsageError('ERR_OPERATOR_NAME', `invalid operator name '${name}': use letters, digits and . _ @ + - (at most 64)`);
}

/** Checks made before unsealing, so a bad name or role costs nobody a passphrase. */
export function preflightAdd(h: Home, name: string, role: string): void {
  validateOperatorName(name);
  assertRole(h.config, role);
  if (getOperator(h, name)) throw new ConflictError('ERR_OPERATOR_EXISTS', `operator '${name}' already exists`, { hint: `remove it first (dsk operator remove ${name}) or reset its second factor (dsk operator reset-otp ${name})` });
}

/** dsk operator add. Roles that need a second factor get a pending TOTP enrolment (see confirmEnrolment). */
export function addOperator(h: Home, name: string, role: string): AddedOperator {
  preflightAdd(h, name, role);
  const now = h.env.clock.now();
  const totp = roleNeedsTotp(h, role) ? newSecret(h, name) : null;
  return h.tx(() => {
    ensureTables(h);
    if (getOperator(h, name)) throw new ConflictError('ERR_OPERATOR_EXISTS', `operator '${name}' already exists`, { hint: `see dsk operator list` });
    h.db
      .prepare('INSERT INTO operators (name, role, totp_sealed, enrolled_at, created_at, created_by, last_otp_step, lock_until) VALUES (?, ?, ?, NULL, ?, ?, NULL, NULL)')
      .run(name, role, totp?.sealed ?? null, now, h.env.actor);
    h.audit({ action: 'OPERATOR_ADD', details: { operator: name, role, second_factor: totp ? 'pending' : 'none' } });
    return { operator: mustGet(h, name), otpauth_uri: totp?.uri ?? null };
  });
}

/**
 * Confirms a pending enrolment with a first code, proving the authenticator holds the secret. The
 * first admin to confirm turns operator checks on (audited OPERATORS_ENFORCED).
 */
export async function confirmEnrolment(h: Home, name: string, code: string | null): Promise<{ operator: OperatorRow; enforced_now: boolean }> {
  const op = mustGet(h, name);
  if (secondFactor(op) === 'none') throw new ConflictError('ERR_NO_ENROLMENT', `operator '${name}' has no second factor to confirm`, { hint: `an admin can enrol one: dsk operator reset-otp ${name}` });
  if (secondFactor(op) === 'enrolled') throw new ConflictError('ERR_ALREADY_ENROLLED', `operator '${name}' has already confirmed its second factor`, { hint: `to replace it: dsk operator reset-otp ${name}` });
  if (code == null)
    throw new AuthError('ERR_NO_OTP', `confirming needs the code ${name}'s authenticator shows, and there is no terminal to ask on`, { hint: `give --code CODE` });
  await verifyOperatorOtp(h, name, code, 'enrolment');
  const now = h.env.clock.now();
  return h.tx(() => {
    const wasEnforced = enrolledAdmins(h) > 0 || enforcedMarker(h);
    h.db.prepare('UPDATE operators SET enrolled_at = ? WHERE name = ?').run(now, name);
    h.audit({ action: 'OPERATOR_ENROL', details: { operator: name, role: op.role } });
    const enforcedNow = !wasEnforced && op.role === ADMIN_ROLE;
    if (enforcedNow) h.audit({ action: 'OPERATORS_ENFORCED', details: { first_admin: name } });
    return { operator: mustGet(h, name), enforced_now: enforcedNow };
  });
}

function assertNotLastAdmin(h: Home, op: OperatorRow, what: string): void {
  if (op.role === ADMIN_ROLE && secondFactor(op) === 'enrolled' && enrolledAdmins(h) <= 1)
    throw new ConflictError('ERR_LAST_ADMIN', `cannot ${what} '${op.name}': it is the only enrolled admin`, { hint: 'add and enrol another admin first, so someone can still run sensitive commands' });
}

export function removeOperator(h: Home, name: string): OperatorRow {
  return h.tx(() => {
    const op = mustGet(h, name);
    assertNotLastAdmin(h, op, 'remove');
    h.db.prepare('DELETE FROM operators WHERE name = ?').run(name);
    h.db.prepare('DELETE FROM operator_failures WHERE name = ?').run(name);
    h.audit({ action: 'OPERATOR_REMOVE', details: { operator: name, role: op.role } });
    return op;
  });
}

/** A new TOTP secret (the old one stops working at once), pending until confirmed; clears any lock. */
export function resetOtp(h: Home, name: string): AddedOperator {
  const op0 = mustGet(h, name);
  assertNotLastAdmin(h, op0, 'reset the second factor of');
  const totp = newSecret(h, name);
  return h.tx(() => {
    const op = mustGet(h, name);
    assertNotLastAdmin(h, op, 'reset the second factor of');
    h.db.prepare('UPDATE operators SET totp_sealed = ?, enrolled_at = NULL, last_otp_step = NULL, lock_until = NULL WHERE name = ?').run(totp.sealed, name);
    h.db.prepare('DELETE FROM operator_failures WHERE name = ?').run(name);
    h.audit({ action: 'OPERATOR_RESET_OTP', details: { operator: name, role: op.role, was_locked: op.lock_until != null && op.lock_until > h.env.clock.now() } });
    return { operator: mustGet(h, name), otpauth_uri: totp.uri };
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

