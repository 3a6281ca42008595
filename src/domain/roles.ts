/** The seed's role matrix (section 2.3): roles × permissions. Applies to API keys and operators. */
import { NotFoundError } from '../kernel/errors.js';

/** The seed's permission columns. */
export const PERMISSIONS = ['model.invoke', 'param.change', 'audit.view', 'key.manage'] as const;
export type Permission = (typeof PERMISSIONS)[number];
export type Roles = Record<string, Permission[]>;

export const DEFAULT_ROLES: Roles = {
  admin: ['model.invoke', 'param.change', 'audit.view', 'key.manage'],
  developer: ['model.invoke', 'param.change'],
  auditor: ['audit.view'],
  automation: ['model.invoke'],
};

export const ADMIN_ROLE = 'admin';
export const AUTOMATION_ROLE = 'automation';

export function isPermission(p: string): p is Permission {
  return (PERMISSIONS as readonly string[]).includes(p);
}

export function roleExists(roles: Roles, role: string): boolean {
  return Object.hasOwn(roles, role);
}

/** Permissions of a role; an unknown role has none. */
export function permissionsOf(roles: Roles, role: string): readonly Permission[] {
  return Object.hasOwn(roles, role) ? roles[role] : [];
}

/** Refuses a role the matrix does not name (exit 4, like any unknown name). */
export function assertRoleExists(roles: Roles, role: string): void {
  if (!roleExists(roles, role)) throw new NotFoundError('ERR_ROLE_UNKNOWN', `unknown role '${role}'`, { hint: `known roles: ${Object.keys(roles).join(', ')}` });
}
