/**
 * PostgreSQL DDL for each numbered migration (see ../migrations.ts): the same tables and columns as
 * SQLite, times BIGINT epoch ms, blobs BYTEA; the audit table is `audit_events` (SQLite keeps it in a
 * second file as `audit.events`). Adding a migration is one entry in PG_DDL.
 *
 * Beside the numbered tables, `dsk_meta` is the store's identity: the dsk home it belongs to, the
 * schema version it reached (SQLite's user_version), the key check value of the master key it was
 * created under (what `init --join` compares), the shared part of dsk.json, and `keys_version`, which
 * a trigger moves on every change to `keys` except usage counting (what the gateways poll: a usage
flush by one gateway does not make every other reload its index). `audit_head` holds the chain
 * head written in the same transaction as each row: cutting rows off the end without also moving it
 * back is a truncation `audit verify` names.
 *
 * PostgreSQL DDL is transactional: a migration runs in the opener's transaction, under the store's
 * advisory lock, and commits with it or not at all.
 */
import { assertKnownVersion, MIGRATIONS, SCHEMA_VERSION } from '../migrations.js';

export type Exec = (sql: string, params?: unknown[]) => Promise<{ rows: any[] }>;

export const META_DDL = `
CREATE TABLE dsk_meta (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  home_id         TEXT NOT NULL,
  schema_version  INTEGER NOT NULL,
  key_check_value TEXT NOT NULL,
  shared_config   TEXT NOT NULL DEFAULT '{}',
  created_at      BIGINT NOT NULL,
  keys_version    BIGINT NOT NULL DEFAULT 0
);`;

const V1 = `
CREATE TABLE keys (
  id              TEXT PRIMARY KEY,
  name            TEXT NOT NULL,
  owner           TEXT,
  role            TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('active','grace','retired','revoked','expired')),
  key_hash        TEXT NOT NULL UNIQUE,
  salt            TEXT NOT NULL,
  secret_sealed   BYTEA NOT NULL,
  created_at      BIGINT NOT NULL,
  expires_at      BIGINT,
  rotate_every_ms BIGINT,
  max_uses        BIGINT,
  use_count       BIGINT NOT NULL DEFAULT 0,
  last_used_at    BIGINT,
  replaces        TEXT,
  replaced_by     TEXT,
  grace_until     BIGINT,
  revoked_at      BIGINT,
  revoke_reason   TEXT,
  retired_at      BIGINT,
  updated_at      BIGINT NOT NULL,
  options         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX keys_status ON keys(status);
CREATE INDEX keys_name ON keys(name);
CREATE INDEX keys_replaces ON keys(replaces);
CREATE FUNCTION dsk_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE dsk_meta SET keys_version = keys_version + 1 WHERE id = 1; RETURN NULL; END $$;
CREATE TRIGGER keys_changed AFTER INSERT OR DELETE OR UPDATE OF id, name, owner, role, status, key_hash, salt, secret_sealed, created_at,
  expires_at, rotate_every_ms, max_uses, replaces, replaced_by, grace_until, revoked_at, revoke_reason, retired_at, updated_at, options
  ON keys FOR EACH STATEMENT EXECUTE FUNCTION dsk_keys_changed();

CREATE TABLE audit_events (
  seq       BIGINT PRIMARY KEY,
  ts        TEXT COLLATE "C" NOT NULL,
  action    TEXT NOT NULL,
  actor     TEXT NOT NULL,
  source_ip TEXT,
  key_id    TEXT,
  details   TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash      TEXT NOT NULL,
  mac       TEXT
);
CREATE INDEX audit_events_ts ON audit_events(ts);
CREATE INDEX audit_events_action ON audit_events(action, ts);
CREATE INDEX audit_events_actor ON audit_events(actor, ts);
CREATE INDEX audit_events_key ON audit_events(key_id, ts);
CREATE INDEX audit_events_ip ON audit_events(source_ip, ts);
CREATE TABLE audit_head (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  seq  BIGINT NOT NULL,
  hash TEXT NOT NULL
);`;

const V2 = `
CREATE TABLE operators (
  name          TEXT PRIMARY KEY,
  role          TEXT NOT NULL,
  totp_sealed   BYTEA,
  enrolled_at   BIGINT,
  created_at    BIGINT NOT NULL,
  created_by    TEXT NOT NULL,
  last_otp_step BIGINT,
  lock_until    BIGINT
);
CREATE TABLE operator_failures (
  name TEXT NOT NULL,
  at   BIGINT NOT NULL
);
CREATE INDEX operator_failures_name ON operator_failures(name, at);`;

const V3 = `
CREATE TABLE master_state (
  id              INTEGER PRIMARY KEY CHECK (id = 1),
  key_check_value TEXT NOT NULL,
  replaced_at     BIGINT NOT NULL
);`;

const V4 = `
CREATE TABLE deliveries (
  key_id       TEXT PRIMARY KEY,
  old_key_id   TEXT NOT NULL,
  trigger      TEXT NOT NULL,
  created_at   BIGINT NOT NULL,
  delivered_at BIGINT,
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_error   TEXT
);
CREATE INDEX deliveries_pending ON deliveries(delivered_at, created_at);`;

// hour: the start of the UTC hour (epoch ms); model '' when the request named none.
const V5 = `
CREATE TABLE usage_hourly (
  key_id            TEXT NOT NULL,
  hour              BIGINT NOT NULL,
  model             TEXT NOT NULL DEFAULT '',
  requests          BIGINT NOT NULL DEFAULT 0,
  errors            BIGINT NOT NULL DEFAULT 0,
  prompt_tokens     BIGINT NOT NULL DEFAULT 0,
  completion_tokens BIGINT NOT NULL DEFAULT 0,
  no_usage          BIGINT NOT NULL DEFAULT 0,
  last_at           BIGINT NOT NULL DEFAULT 0,
  PRIMARY KEY (key_id, hour, model)
);
CREATE INDEX usage_hourly_hour ON usage_hourly(hour);
CREATE TABLE quota_marks (
  key_id       TEXT NOT NULL,
  kind         TEXT NOT NULL,
  period_start BIGINT NOT NULL,
  level        INTEGER NOT NULL,
  at           BIGINT NOT NULL,
  PRIMARY KEY (key_id, kind, period_start, level)
);`;

const V6 = `
CREATE TABLE key_sources (
  key_id     TEXT NOT NULL,
  kind       TEXT NOT NULL CHECK (kind IN ('site','country','asn')),
  value      TEXT NOT NULL,
  first_seen BIGINT NOT NULL,
  PRIMARY KEY (key_id, kind, value)
);`;

// Nonces are a cache of what the gateways saw in the last skew window: UNLOGGED spares a WAL write
// per signed request, at the cost that a crash of the server or a failover to a standby forgets
// them (a request seen in the last ten minutes could then pass once more). The key-change trigger
// also notifies, so gateways that LISTEN reload at once instead of at their next poll.
const V7 = `
CREATE UNLOGGED TABLE nonces (
  key_id     TEXT NOT NULL,
  nonce      TEXT NOT NULL,
  expires_at BIGINT NOT NULL,
  PRIMARY KEY (key_id, nonce)
);
CREATE INDEX nonces_expiry ON nonces(expires_at);
CREATE TABLE flushes (
  writer TEXT NOT NULL,
  seq    BIGINT NOT NULL,
  at     BIGINT NOT NULL,
  PRIMARY KEY (writer, seq)
);
CREATE OR REPLACE FUNCTION dsk_keys_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE dsk_meta SET keys_version = keys_version + 1 WHERE id = 1; PERFORM pg_notify('dsk_keys_changed', ''); RETURN NULL; END $$;`;

/** version → DDL. */
export const PG_DDL: Record<number, string> = { 1: V1, 2: V2, 3: V3, 4: V4, 5: V5, 6: V6, 7: V7 };

/** The schema version recorded in dsk_meta; null when the database holds no dsk store. */
export async function storedVersion(q: Exec): Promise<{ version: number; home_id: string } | null> {
  const t = await q("SELECT to_regclass('dsk_meta') IS NOT NULL AS present");
  if (!t.rows[0].present) return null;
  const r = await q('SELECT schema_version, home_id FROM dsk_meta WHERE id = 1');
  return r.rows[0] ? { version: Number(r.rows[0].schema_version), home_id: r.rows[0].home_id } : null;
}

/** Applies the missing migrations in the caller's transaction (which holds the store's lock). */
export async function migrate(q: Exec, from: number, where: string): Promise<void> {
  assertKnownVersion(from, where);
  for (const m of MIGRATIONS) if (m.version > from) await q(PG_DDL[m.version]);
  if (from < SCHEMA_VERSION) await q('UPDATE dsk_meta SET schema_version = $1 WHERE id = 1', [SCHEMA_VERSION]);
}
