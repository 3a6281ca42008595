/** dsk.json: configuration and policy. Never holds a secret. */
import { assertRoleExists, DEFAULT_ROLES, type Roles } from './roles.js';
import { DEFAULT_POLICY, type Policy } from './policy.js';

export const CONFIG_FORMAT = 'dsk-config/1';

export type BackendKind = 'software' | 'pkcs11';

export interface StoreConfig {
  /** postgres://user@host:port/database */
  url: string;
  /** a file holding the database password (else PGPASSWORD, PGPASSFILE, ~/.pgpass) */
  password_file?: string;
}

export interface DskConfig {
  format: typeof CONFIG_FORMAT;
  home_id: string;
  backend: BackendKind;
  created_at: string;
  policy: Policy;
  roles: Roles;
  gateway?: Record<string, unknown>;
  /** Where keys and the audit chain live when not in the home's SQLite files (PostgreSQL). Never a password. */
  store?: StoreConfig;
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
