/** Reading and writing dsk.json (atomic replace, mode 0600) and refusing an unsafe home. */
import fs from 'node:fs';
import { IntegrityError, NotFoundError } from '../kernel/errors.js';
import { assertPrivate, writePrivateFile } from '../kernel/files.js';
import { homePath } from '../kernel/home-layout.js';
import { CONFIG_FORMAT, withDefaults, type DskConfig } from '../domain/config.js';
import { checkConfig } from '../domain/config-schema.js';

export function loadConfig(home: string): DskConfig {
  const p = homePath(home, 'config');
  if (!fs.existsSync(home)) throw new NotFoundError('ERR_NO_HOME', `no dsk home at ${home}`, { hint: 'run dsk init, or point --home / DSK_HOME at an existing home' });
  assertPrivate(home, 'home');
  let text: string;
  try {
    text = fs.readFileSync(p, 'utf8');
  } catch {
    throw new NotFoundError('ERR_NO_HOME', `${home} is not a dsk home (no dsk.json)`, { hint: 'run dsk init, or point --home at an existing home' });
  }
  return configFromText(text, p);
}

/** dsk.json's text to a checked config (defaults filled in); IntegrityError (exit 5) naming the field. */
export function configFromText(text: string, p = 'dsk.json'): DskConfig {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new IntegrityError('ERR_CONFIG', `${p} is damaged: not valid JSON`, { hint: 'restore dsk.json from a backup of the home' });
  }
  if (v !== null && typeof v === 'object' && 'format' in v && v.format !== CONFIG_FORMAT)
    throw new IntegrityError('ERR_CONFIG', `${p}: unknown format ${JSON.stringify(v.format)}`, { hint: 'a newer dsk may have written it; else restore dsk.json from a backup of the home' });
  const c = checkConfig(v);
  if (!c.ok) throw new IntegrityError('ERR_CONFIG', `${p} is damaged: ${c.field ? `${c.field}: ` : ''}${c.problem}`, { hint: 'fix that field, or restore dsk.json from a backup of the home' });
  return withDefaults(c.config);
}

export function saveConfig(home: string, c: DskConfig): void {
  writePrivateFile(homePath(home, 'config'), JSON.stringify(c, null, 2) + '\n');
}

/**
 * A shared store's policy and role matrix take precedence over the node's dsk.json (which keeps a
 * copy from the node's last change or join). Checked like dsk.json: a damaged field is named.
 */
export function applySharedConfig(config: DskConfig, text: string | undefined | null): void {
  if (!text) return;
  let shared: { policy?: unknown; roles?: unknown };
  try {
    shared = JSON.parse(text);
  } catch {
    throw new IntegrityError('ERR_CONFIG', 'the policy kept in the shared store is damaged: not valid JSON', { hint: 'set it again from a node: dsk policy set …' });
  }
  const c = checkConfig({ ...config, ...(shared.policy ? { policy: shared.policy } : {}), ...(shared.roles ? { roles: shared.roles } : {}) });
  if (!c.ok) throw new IntegrityError('ERR_CONFIG', `the policy kept in the shared store is damaged: ${c.field ? `${c.field}: ` : ''}${c.problem}`, { hint: 'set it again from a node: dsk policy set …' });
  const merged = withDefaults(c.config);
  config.policy = merged.policy;
  config.roles = merged.roles;
}
