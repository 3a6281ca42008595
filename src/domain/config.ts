/** dsk.json: configuration and policy. Never holds a secret. */
import { assertRoleExists, DEFAULT_ROLES, type Roles } from './roles.js';
import { DEFAULT_POLICY, type Policy } from './policy.js';

export const CONFIG_FORMAT = 'dsk-config/1';

export type BackendKind = 'software' | 'pkcs11';

export interface DskConfig {
  format: typeof CONFIG_FORMAT;
  home_id: string;
  backend: BackendKind;
  created_at: string;
  policy: Policy;
  roles: Roles;
  gateway?: Record<string, unknown>;
  [extra: string]: unknown;
}

/** Fills defaults into a parsed dsk.json. */
export function withDefaults(c: DskConfig): DskConfig {
  c.policy = { ...DEFAULT_POLICY, ...(c.policy ?? {}) };
  c.roles = c.roles ?? DEFAULT_ROLES;
  return c;
}

export function assertRole(c: Pick<DskConfig, 'roles'>, role: string): void {
  assertRoleExists(c.roles, role);
}
