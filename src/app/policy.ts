/**
 * `dsk policy`: the role matrix in dsk.json (roles × the seed's permissions), shown and changed.
 *
 * Ordering of a change, chosen to fail closed: the CONFIG_CHANGE audit row commits first, then
 * dsk.json is replaced atomically (temp file, fsync, rename). If the audit row cannot be written,
 * nothing changes. If the config write then fails, a CONFIG_CHANGE_FAILED row records that the
 * change did not happen, and the error is reported. A crash between the two leaves an audit row
 * for a change that is not in dsk.json (visible, harmless), never a change without its row.
 * Each row carries the SHA-256 of the new dsk.json so an auditor can tell which file it produced.
 */
import { assertRoleExists, DEFAULT_ROLES, PERMISSIONS, type Permission } from '../domain/roles.js';
import { saveConfig } from '../store/config-file.js';
import { type DskConfig } from '../domain/config.js';
import { ConflictError, NotFoundError, UsageError } from '../kernel/errors.js';
import { sha256Hex } from '../kernel/crypto.js';
import { listOperators } from './operators.js';
import type { Home } from './home.js';

export interface MatrixRow {
  role: string;
  builtin: boolean;
  permissions: Record<Permission, boolean>;
}

export function policyMatrix(config: DskConfig): MatrixRow[] {
  return Object.entries(config.roles).map(([role, perms]) => ({
    role,
    builtin: Object.hasOwn(DEFAULT_ROLES, role),
    permissions: Object.fromEntries(PERMISSIONS.map((p) => [p, perms.includes(p)])) as Record<Permission, boolean>,
  }));
}

export function assertPermission(p: string): asserts p is Permission {
  if (!(PERMISSIONS as readonly string[]).includes(p)) throw new UsageError('ERR_PERMISSION_UNKNOWN', `unknown permission '${p}'`, { hint: `use one of ${PERMISSIONS.join(', ')}` });
}

function assertKnownRole(config: DskConfig, role: string): void {
  assertRoleExists(config.roles, role);
}

export function parseOnOff(v: string): boolean {
  if (v === 'on' || v === 'yes' || v === 'true') return true;
  if (v === 'off' || v === 'no' || v === 'false') return false;
  throw new UsageError('ERR_ON_OFF', `expected on or off, got '${v}'`);
}

export function validateRoleName(name: string): void {
  if (!/^[a-z][a-z0-9_-]{0,31}$/.test(name)) throw new UsageError('ERR_ROLE_NAME', `invalid role name '${name}': lower-case letters, digits, _ and -, starting with a letter (at most 32)`);
}

async function applyChange(h: Home, details: Record<string, unknown>, roles: Record<string, Permission[]>): Promise<MatrixRow[]> {
  const next: DskConfig = { ...h.config, roles };
  const text = JSON.stringify(next, null, 2) + '\n';
  await h.tx(async (t) => {
    // On a shared store the matrix lives there too, changed with its audit row: every node sees it.
    await t.setSharedConfig?.(JSON.stringify({ policy: next.policy, roles }));
    await t.audit({ action: 'CONFIG_CHANGE', details: { ...details, config_sha256: sha256Hex(text) } });
  });
  try {
    saveConfig(h.dir, next);
  } catch (e) {
    try {
      await h.tx((t) => t.audit({ action: 'CONFIG_CHANGE_FAILED', details: { ...details, error: (e as { code?: string }).code ?? 'write_failed' } }));
    } catch {
      // the change did not happen either way; the error below says so
    }
    throw e;
  }
  h.config.roles = roles;
  return policyMatrix(h.config);
}

function cloneRoles(config: DskConfig): Record<string, Permission[]> {
  return Object.fromEntries(Object.entries(config.roles).map(([r, p]) => [r, [...p]]));
}

/** Validations that need no unsealing, run before anyone is asked for a passphrase or code. */
export function preflightSet(config: DskConfig, role: string, permission: string): void {
  assertPermission(permission);
  assertKnownRole(config, role);
}

export async function setPermission(h: Home, role: string, permission: string, on: boolean): Promise<{ changed: boolean; matrix: MatrixRow[] }> {
  preflightSet(h.config, role, permission);
  assertPermission(permission);
  const roles = cloneRoles(h.config);
  const had = roles[role].includes(permission);
  if (had === on) return { changed: false, matrix: policyMatrix(h.config) };
  roles[role] = on ? PERMISSIONS.filter((p) => p === permission || roles[role].includes(p)) : roles[role].filter((p) => p !== permission);
  return { changed: true, matrix: await applyChange(h, { change: 'policy.set', role, permission, value: on ? 'on' : 'off' }, roles) };
}

export function preflightAddRole(config: DskConfig, name: string, from: string | undefined): void {
  validateRoleName(name);
  if (Object.hasOwn(config.roles, name)) throw new ConflictError('ERR_ROLE_EXISTS', `role '${name}' already exists`, { hint: `change it with dsk policy set ${name} PERMISSION on|off` });
  if (from !== undefined) assertKnownRole(config, from);
}

export function addRole(h: Home, name: string, from: string | undefined): Promise<MatrixRow[]> {
  preflightAddRole(h.config, name, from);
  const roles = cloneRoles(h.config);
  roles[name] = from ? [...roles[from]] : [];
  return applyChange(h, { change: 'policy.add_role', role: name, from: from ?? null, permissions: roles[name] }, roles);
}

export async function preflightRemoveRole(h: Home, name: string): Promise<void> {
  assertKnownRole(h.config, name);
  if (Object.hasOwn(DEFAULT_ROLES, name)) throw new ConflictError('ERR_BUILTIN_ROLE', `role '${name}' is one of the seed's built-in roles and cannot be removed`, { hint: `change its permissions instead: dsk policy set ${name} PERMISSION off` });
  const ops = (await listOperators(h)).filter((o) => o.role === name).length;
  const keys = await h.store.keys.countLive(name);
  if (ops || keys) throw new ConflictError('ERR_ROLE_IN_USE', `role '${name}' is in use by ${ops} operator(s) and ${keys} live key(s)`, { hint: 'remove or re-role them first' });
}

export async function removeRole(h: Home, name: string): Promise<MatrixRow[]> {
  await preflightRemoveRole(h, name);
  const roles = cloneRoles(h.config);
  delete roles[name];
  return applyChange(h, { change: 'policy.remove_role', role: name }, roles);
}

