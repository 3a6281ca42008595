/**
 * Schema versions. Every engine applies the same numbered migrations, in order, inside one
 * transaction when a store is opened, and records the number it reached (SQLite: `user_version` of
 * keys.db and of audit_log/audit.db). A home made by an older dsk is therefore upgraded in place the
 * first time a newer dsk opens it; a home whose version is newer than this dsk knows is refused
 * before anything is written, because an older dsk cannot know what the newer tables mean.
 *
 *   1  keys; audit events with their indexes (the first released schema)
 *   2  operators and operator_failures (created on first use before they were a migration)
 *   3  master_state (created by the first master key replacement before it was a migration)
 *   4  deliveries: per rotated key's successor, whether it reached its callers (written in the
 *      rotation's transaction; `rotate --due` delivers what is pending)
 *   5  usage_hourly: requests, errors and tokens per key, hour and model (the gateway's counters);
 *      quota_marks: which quota warning (80%, 100%) was written for a key, kind and period
 *   6  key_sources: each key's learned history of where it was used from (site, country, ASN),
 *      which the gateway's anomaly check compares new sources against
 *   7  nonces: signed requests' nonces shared by every gateway on the store (primary key
 *      (key_id, nonce), expires_at). SQLite keeps the table in nonces.db, a file of its own in WAL
 *      mode, created by the first gateway that checks a nonce: keys.db commits with several fsyncs
 *      and would put one on every signed request. Also `flushes` (writer, seq, at): which gateway
 *      flushes were applied, so a flush retried after a lost answer is not counted twice.
 *
 * Every engine applies the same numbers with the same tables and columns (times are epoch
 * milliseconds: INTEGER in SQLite, BIGINT in PostgreSQL).
 */
import { UnavailableError } from '../kernel/errors.js';

export const MIGRATIONS = [
  { version: 1, name: 'keys and audit events' },
  { version: 2, name: 'operators' },
  { version: 3, name: 'master state' },
  { version: 4, name: 'rotation deliveries' },
  { version: 5, name: 'usage per key per hour; quota warnings' },
  { version: 6, name: 'key sources' },
  { version: 7, name: 'shared nonces' },
] as const;

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1].version;

/** Refuses a store written by a newer dsk (exit 7: this dsk cannot use it; nothing was written). */
export function assertKnownVersion(found: number, where: string): void {
  if (found > SCHEMA_VERSION)
    throw new UnavailableError('ERR_SCHEMA_TOO_NEW', `${where} has schema version ${found}, newer than this dsk knows (${SCHEMA_VERSION}); nothing was changed`, {
      hint: 'a newer dsk wrote this home: upgrade dsk to open it',
    });
}
