/**
 * The manifest of a dsk backup: the first entry of the archive (`dsk-backup.json`), naming every
 * other entry with its size and SHA-256, and the format version a restore checks before anything.
 *
 *   {"format":"dsk-backup/1","producer":"dsk 0.1.0","schema_version":4,"home_id":…,"backend":…,
 *    "created_at":…,"fragments_included":false,"audit":{"rows":…,"first_seq":…,"last_seq":…,
 *    "head_hash":…},"files":[{"path":"keys.db","size":…,"sha256":…},…]}
 *
 * The checksums catch damage (a bad disk, a cut transfer); they are not a signature: someone who
 * can rewrite the archive can rewrite them too. What stops a forged restore is the audit chain
 * (checked on restore, its MACs on the first unsealed `dsk audit verify`) and, for an encrypted
 * backup, age's authenticated encryption.
 */
import { IntegrityError, UnavailableError } from '../kernel/errors.js';
import { SCHEMA_VERSION } from '../store/migrations.js';

export const BACKUP_FORMAT_NAME = 'dsk-backup';
export const BACKUP_FORMAT_VERSION = 1;
export const BACKUP_FORMAT = `${BACKUP_FORMAT_NAME}/${BACKUP_FORMAT_VERSION}`;
export const MANIFEST_NAME = 'dsk-backup.json';
/** A manifest is a few hundred bytes; anything larger is not one. */
export const MANIFEST_MAX_BYTES = 1024 * 1024;

/** The only paths a backup may hold: the home's files, never anything else. */
const HOME_PATH = /^(dsk\.json|keys\.db|master_key\.hsm|audit_log\/audit\.db|audit_log\/HEAD|key_fragments\/metadata\.json|key_fragments\/frag[1-9][0-9]{0,2}\.enc)$/;

export interface ManifestFile {
  path: string;
  size: number;
  sha256: string;
}

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  producer: string;
  schema_version: number;
  home_id: string;
  backend: string;
  created_at: string;
  fragments_included: boolean;
  audit: { rows: number; first_seq: number | null; last_seq: number | null; head_hash: string };
  files: ManifestFile[];
}

function bad(what: string): IntegrityError {
  return new IntegrityError('ERR_BACKUP_DAMAGED', `the backup archive is damaged: ${what}; nothing was restored`, { hint: 'use another copy of the backup' });
}

/** Parses and checks a manifest: a newer format or schema is exit 7 (upgrade dsk), anything malformed exit 5. */
export function parseManifest(text: string): BackupManifest {
  let m: Partial<BackupManifest>;
  try {
    m = JSON.parse(text);
  } catch {
    throw bad('its manifest is not valid JSON');
  }
  if (m === null || typeof m !== 'object') throw bad('its manifest is not an object');
  const f = /^dsk-backup\/([1-9][0-9]{0,5})$/.exec(String(m.format));
  if (!f) throw bad(`it is not a dsk backup (format ${JSON.stringify(m.format)?.slice(0, 40)})`);
  if (Number(f[1]) > BACKUP_FORMAT_VERSION || (Number.isSafeInteger(m.schema_version) && (m.schema_version as number) > SCHEMA_VERSION))
    throw new UnavailableError('ERR_BACKUP_TOO_NEW', `the backup was made by a newer dsk (${String(m.producer ?? m.format).slice(0, 40)}, format ${m.format}, schema ${m.schema_version}); this dsk reads ${BACKUP_FORMAT} up to schema ${SCHEMA_VERSION}; nothing was restored`, {
      hint: 'restore it with the dsk version that made it, or a newer one',
    });
  if (!Number.isSafeInteger(m.schema_version) || (m.schema_version as number) < 1) throw bad('its manifest has no schema version');
  if (typeof m.home_id !== 'string' || !/^[0-9a-f]{32}$/.test(m.home_id)) throw bad('its manifest has no valid home id');
  if (typeof m.backend !== 'string' || typeof m.created_at !== 'string' || typeof m.fragments_included !== 'boolean') throw bad('its manifest is incomplete');
  const a = m.audit as Partial<BackupManifest['audit']> | undefined;
  if (!a || typeof a !== 'object' || typeof a.head_hash !== 'string' || !(a.last_seq === null || Number.isSafeInteger(a.last_seq))) throw bad('its manifest has no audit summary');
  if (!Array.isArray(m.files) || m.files.length === 0) throw bad('its manifest lists no files');
  const seen = new Set<string>();
  for (const e of m.files) {
    if (!e || typeof e.path !== 'string' || !HOME_PATH.test(e.path)) throw bad(`its manifest names a file that is not part of a home: ${JSON.stringify(e?.path)?.slice(0, 80)}`);
    if (seen.has(e.path)) throw bad(`its manifest lists ${e.path} twice`);
    if (!Number.isSafeInteger(e.size) || e.size < 0 || typeof e.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(e.sha256)) throw bad(`its manifest entry for ${e.path} is malformed`);
    seen.add(e.path);
  }
  for (const need of ['dsk.json', 'keys.db', 'audit_log/audit.db']) if (!seen.has(need)) throw bad(`its manifest does not list ${need}`);
  return m as BackupManifest;
}

export function isHomePath(p: string): boolean {
  return HOME_PATH.test(p);
}
