/** Where each part of a dsk home lives, relative to the home directory (the brief's layout). */
import path from 'node:path';

export const HOME_FILES = {
  config: 'dsk.json',
  hsm: 'master_key.hsm',
  fragments: 'key_fragments',
  keysDb: 'keys.db',
  auditDir: 'audit_log',
  auditDb: path.join('audit_log', 'audit.db'),
  auditHead: path.join('audit_log', 'HEAD'),
  lock: 'dsk.lock',
  /** SQLite homes: nonces of signed requests shared by the gateways of one host (a cache, not backed up) */
  noncesDb: 'nonces.db',
} as const;

export type HomeFile = keyof typeof HOME_FILES;

export function homePath(home: string, f: HomeFile): string {
  return path.join(home, HOME_FILES[f]);
}
