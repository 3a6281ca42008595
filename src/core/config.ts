/** dsk.json: configuration and policy. Never holds a secret. */
import fs from 'node:fs';
import path from 'node:path';
import { IntegrityError, NotFoundError, UsageError } from './errors.js';
import { assertPrivate, writePrivateFile } from './files.js';
import { parseDuration } from './duration.js';
import type { BackendKind } from '../master/backend.js';

export const CONFIG_FORMAT = 'dsk-config/1';

/** The seed's permission columns. */
export const PERMISSIONS = ['model.invoke', 'param.change', 'audit.view', 'key.manage'] as const;
export type Permission = (typeof PERMISSIONS)[number];

/** The seed's role matrix (section 2.3). */
export const DEFAULT_ROLES: Record<string, Permission[]> = {
  admin: ['model.invoke', 'param.change', 'audit.view', 'key.manage'],
  developer: ['model.invoke', 'param.change'],
  auditor: ['audit.view'],
  automation: ['model.invoke'],
};

export interface Policy {
  grace: string; // 48h
  rotate_every: string; // 90d
  max_uses: number; // 100000
  expires: string | null; // default expiry for new keys, null = none
  warn_within: string; // 7d
}

export const DEFAULT_POLICY: Policy = { grace: '48h', rotate_every: '90d', max_uses: 100_000, expires: null, warn_within: '7d' };

export interface DskConfig {
  format: typeof CONFIG_FORMAT;
  home_id: string;
  backend: BackendKind;
  created_at: string;
  policy: Policy;
  roles: Record<string, Permission[]>;
  gateway?: Record<string, unknown>;
  [extra: string]: unknown;
}

export const HOME_FILES = {
  config: 'dsk.json',
  hsm: 'master_key.hsm',
  fragments: 'key_fragments',
  keysDb: 'keys.db',
  auditDir: 'audit_log',
  auditDb: path.join('audit_log', 'audit.db'),
  lock: 'dsk.lock',
} as const;

export function homePath(home: string, f: keyof typeof HOME_FILES): string {
  return path.join(home, HOME_FILES[f]);
}

export function loadConfig(home: string): DskConfig {
  const p = homePath(home, 'config');
  if (!fs.existsSync(home)) throw new NotFoundError('ERR_NO_HOME', `no dsk home at ${home}`, 'run dsk init, or point --home / DSK_HOME at an existing home');
  assertPrivate(home, 'home');
  let text: string;
  try {
    text = fs.readFileSync(p, 'utf8');
  } catch {
    throw new NotFoundError('ERR_NO_HOME', `${home} is not a dsk home (no dsk.json)`, 'run dsk init, or point --home at an existing home');
  }
  let c: DskConfig;
  try {
    c = JSON.parse(text);
  } catch {
    throw new IntegrityError('ERR_CONFIG', `${p} is not valid JSON`, 'restore it from a backup');
  }
  if (c.format !== CONFIG_FORMAT) throw new IntegrityError('ERR_CONFIG', `${p}: unknown format ${String(c.format)}`);
  c.policy = { ...DEFAULT_POLICY, ...(c.policy ?? {}) };
  c.roles = c.roles ?? DEFAULT_ROLES;
  return c;
}

export function saveConfig(home: string, c: DskConfig): void {
  writePrivateFile(homePath(home, 'config'), JSON.stringify(c, null, 2) + '\n');
}

export function policyMs(p: Policy) {
  return {
    graceMs: parseDuration(p.grace, 'policy.grace', true),
    rotateEveryMs: parseDuration(p.rotate_every, 'policy.rotate_every'),
    expiresMs: p.expires ? parseDuration(p.expires, 'policy.expires') : null,
    warnWithinMs: parseDuration(p.warn_within, 'policy.warn_within', true),
    maxUses: p.max_uses,
  };
}

export function assertRole(c: DskConfig, role: string): void {
  if (!Object.hasOwn(c.roles, role))
    throw new UsageError(`unknown role '${role}'`, `known roles: ${Object.keys(c.roles).join(', ')}`, 'ERR_ROLE');
}
