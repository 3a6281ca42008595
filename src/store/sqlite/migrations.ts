/**
 * SQLite DDL for each numbered migration (see ../migrations.ts) and the runner. keys.db and
 * audit_log/audit.db each record the version they reached in `user_version`; both move together in
 * one transaction. Every statement is IF NOT EXISTS: a home of version 1 may already hold tables
 * that older dsk releases created on first use (operators, master_state).
 */
import { assertKnownVersion, MIGRATIONS, SCHEMA_VERSION } from '../migrations.js';
import type { DB } from './statements.js';

const KEYS_V1 = `
CREATE TABLE IF NOT EXISTS keys (
  id              TEXT PRIMARY KEY,
  name            TEXT NOT NULL,
  owner           TEXT,
  role            TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('active','grace','retired','revoked','expired')),
  key_hash        TEXT NOT NULL UNIQUE,
  salt            TEXT NOT NULL,
  secret_sealed   BLOB NOT NULL,
  created_at      INTEGER NOT NULL,
  expires_at      INTEGER,
  rotate_every_ms INTEGER,
  max_uses        INTEGER,
  use_count       INTEGER NOT NULL DEFAULT 0,
  last_used_at    INTEGER,
  replaces        TEXT,
  replaced_by     TEXT,
  grace_until     INTEGER,
  revoked_at      INTEGER,
  revoke_reason   TEXT,
  retired_at      INTEGER,
  updated_at      INTEGER NOT NULL,
  options         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS keys_status ON keys(status);
CREATE INDEX IF NOT EXISTS keys_name ON keys(name);
CREATE INDEX IF NOT EXISTS keys_replaces ON keys(replaces);
`;

const AUDIT_V1 = `
CREATE TABLE IF NOT EXISTS audit.events (
  seq       INTEGER PRIMARY KEY,
  ts        TEXT NOT NULL,
  action    TEXT NOT NULL,
  actor     TEXT NOT NULL,
  source_ip TEXT,
  key_id    TEXT,
  details   TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash      TEXT NOT NULL,
  mac       TEXT
);
CREATE INDEX IF NOT EXISTS audit.events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS audit.events_action ON events(action, ts);
CREATE INDEX IF NOT EXISTS audit.events_actor ON events(actor, ts);
CREATE INDEX IF NOT EXISTS audit.events_key ON events(key_id, ts);
CREATE INDEX IF NOT EXISTS audit.events_ip ON events(source_ip, ts);
`;

const OPERATORS_V2 = `
CREATE TABLE IF NOT EXISTS operators (
  name          TEXT PRIMARY KEY,
  role          TEXT NOT NULL,
  totp_sealed   BLOB,
  enrolled_at   INTEGER,
  created_at    INTEGER NOT NULL,
  created_by    TEXT NOT NULL,
  last_otp_step INTEGER,
  lock_until    INTEGER
);
CREATE TABLE IF NOT EXISTS operator_failures (
  name TEXT NOT NULL,
  at   INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS operator_failures_name ON operator_failures(name, at);
`;

const MASTER_STATE_V3 = `
CREATE TABLE IF NOT EXISTS master_state (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  key_check_value TEXT NOT NULL,
  replaced_at     INTEGER NOT NULL
);
`;

// Portable DDL: the same statement creates the table on PostgreSQL with INTEGER → BIGINT.
const DELIVERIES_V4 = `
CREATE TABLE IF NOT EXISTS deliveries (
  key_id       TEXT PRIMARY KEY,
  old_key_id   TEXT NOT NULL,
  trigger      TEXT NOT NULL,
  created_at   INTEGER NOT NULL,
  delivered_at INTEGER,
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries(delivered_at, created_at);
`;

// Portable DDL. hour: the start of the UTC hour (epoch ms); model '' when the request named none.
const USAGE_V5 = `
CREATE TABLE IF NOT EXISTS usage_hourly (
  key_id            TEXT NOT NULL,
  hour              INTEGER NOT NULL,
  model             TEXT NOT NULL DEFAULT '',
  requests          INTEGER NOT NULL DEFAULT 0,
  errors            INTEGER NOT NULL DEFAULT 0,
  prompt_tokens     INTEGER NOT NULL DEFAULT 0,
  completion_tokens INTEGER NOT NULL DEFAULT 0,
  no_usage          INTEGER NOT NULL DEFAULT 0,
  last_at           INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (key_id, hour, model)
);
CREATE INDEX IF NOT EXISTS usage_hourly_hour ON usage_hourly(hour);
CREATE TABLE IF NOT EXISTS quota_marks (
  key_id       TEXT NOT NULL,
  kind         TEXT NOT NULL,
  period_start INTEGER NOT NULL,
  level        INTEGER NOT NULL,
  at           INTEGER NOT NULL,
  PRIMARY KEY (key_id, kind, period_start, level)
);
`;

// One row per (key, kind, value) the key was first seen from; portable DDL like DELIVERIES_V4.
const KEY_SOURCES_V6 = `
CREATE TABLE IF NOT EXISTS key_sources (
  key_id     TEXT NOT NULL,
  kind       TEXT NOT NULL CHECK (kind IN ('site','country','asn')),
  value      TEXT NOT NULL,
  first_seen INTEGER NOT NULL,
  PRIMARY KEY (key_id, kind, value)
);
`;

// Which gateway flushes were applied, so a retried one is not counted twice (portable DDL).
const FLUSHES_V7 = `
CREATE TABLE IF NOT EXISTS flushes (
  writer TEXT NOT NULL,
  seq    INTEGER NOT NULL,
  at     INTEGER NOT NULL,
  PRIMARY KEY (writer, seq)
);
`;

/** version → DDL for keys.db (main) and audit.db (schema `audit`). */
const DDL: Record<number, { keys?: string; audit?: string }> = {
  1: { keys: KEYS_V1, audit: AUDIT_V1 },
  2: { keys: OPERATORS_V2 },
  3: { keys: MASTER_STATE_V3 },
  4: { keys: DELIVERIES_V4 },
  5: { keys: USAGE_V5 },
  6: { keys: KEY_SOURCES_V6 },
  // 7: the nonces table lives in nonces.db (sqlite/nonces.ts); keys.db gets the applied flushes
  7: { keys: FLUSHES_V7 },
};

export function versions(db: DB): { keys: number; audit: number } {
  return { keys: db.pragma('user_version', { simple: true }) as number, audit: db.pragma('audit.user_version', { simple: true }) as number };
}

/** Refuses files newer than this dsk; true when a migration is needed. */
export function checkVersions(db: DB): boolean {
  const v = versions(db);
  assertKnownVersion(v.keys, 'keys.db');
  assertKnownVersion(v.audit, 'audit_log/audit.db');
  return v.keys < SCHEMA_VERSION || v.audit < SCHEMA_VERSION;
}

/** Applies the missing migrations in one BEGIN IMMEDIATE transaction (versions re-read under the lock). */
export function migrate(db: DB): void {
  db.exec('BEGIN IMMEDIATE');
  try {
    if (checkVersions(db)) {
      const v = versions(db);
      for (const m of MIGRATIONS) {
        const d = DDL[m.version];
        if (d.keys && v.keys < m.version) db.exec(d.keys);
        if (d.audit && v.audit < m.version) db.exec(d.audit);
      }
      db.pragma(`user_version = ${SCHEMA_VERSION}`);
      db.pragma(`audit.user_version = ${SCHEMA_VERSION}`);
    }
    db.exec('COMMIT');
  } catch (e) {
    if (db.inTransaction) db.exec('ROLLBACK');
    throw e;
  }
}
