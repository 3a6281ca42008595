/**
 * Schema migrations on real homes: a home made with the first released schema (user_version 1, no
 * operators or master_state tables: older dsk created those on first use) is upgraded in place the
 * first time it is opened, keeps every row and works; a home written by a newer dsk is refused with
 * exit 7 before anything is written.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { dsk, dskAsync, json, makeHome, snapshot } from './helpers.js';
import { SCHEMA_VERSION } from '../src/store/migrations.js';

/** The first released schema, as dsk 0.1 created it (copied here, independent of src/store). */
const V1_KEYS = `
CREATE TABLE keys (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT, role TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('active','grace','retired','revoked','expired')),
  key_hash TEXT NOT NULL UNIQUE, salt TEXT NOT NULL, secret_sealed BLOB NOT NULL, created_at INTEGER NOT NULL,
  expires_at INTEGER, rotate_every_ms INTEGER, max_uses INTEGER, use_count INTEGER NOT NULL DEFAULT 0,
  last_used_at INTEGER, replaces TEXT, replaced_by TEXT, grace_until INTEGER, revoked_at INTEGER,
  revoke_reason TEXT, retired_at INTEGER, updated_at INTEGER NOT NULL, options TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX keys_status ON keys(status);
CREATE INDEX keys_name ON keys(name);
CREATE INDEX keys_replaces ON keys(replaces);
PRAGMA user_version = 1;
`;
const V1_AUDIT = `
CREATE TABLE events (
  seq INTEGER PRIMARY KEY, ts TEXT NOT NULL, action TEXT NOT NULL, actor TEXT NOT NULL, source_ip TEXT,
  key_id TEXT, details TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL, mac TEXT
);
CREATE INDEX events_ts ON events(ts);
CREATE INDEX events_action ON events(action, ts);
CREATE INDEX events_actor ON events(actor, ts);
CREATE INDEX events_key ON events(key_id, ts);
CREATE INDEX events_ip ON events(source_ip, ts);
PRAGMA user_version = 1;
`;

/** Rebuilds a database file with `ddl`, copying the rows of `table` from the current file; mode 0600 kept. */
function rebuild(file: string, ddl: string, table: string): void {
  const old = `${file}.old`;
  fs.renameSync(file, old);
  const db = new Database(file);
  try {
    db.exec(ddl);
    db.prepare('ATTACH DATABASE ? AS old').run(old);
    db.exec(`INSERT INTO main.${table} SELECT * FROM old.${table}`);
    db.exec('DETACH DATABASE old');
  } finally {
    db.close();
  }
  fs.rmSync(old);
  fs.chmodSync(file, 0o600);
}

/** A home as the first release left it: user_version 1, keys and events only. */
function asV1(home: string): void {
  rebuild(path.join(home, 'keys.db'), V1_KEYS, 'keys');
  rebuild(path.join(home, 'audit_log', 'audit.db'), V1_AUDIT, 'events');
}

function inspect(file: string) {
  const db = new Database(file, { readonly: true });
  try {
    return {
      version: db.pragma('user_version', { simple: true }) as number,
      tables: (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[]).map((r) => r.name),
    };
  } finally {
    db.close();
  }
}

function setVersion(file: string, v: number): void {
  const db = new Database(file);
  db.pragma(`user_version = ${v}`);
  db.close();
}

describe('schema migrations', () => {
  it('upgrades a version-1 home in place on first open, keeping every row, and it works', () => {
    const m = makeHome(undefined, { shares: 2, threshold: 2 });
    const issued = json(dsk(['keygen', '--name', 'old-key', '--role', 'developer', '--json'], { env: m.env }));
    const keysBefore = json(dsk(['keys', 'list', '--json'], { env: m.env }));
    asV1(m.home);
    expect(inspect(path.join(m.home, 'keys.db'))).toEqual({ version: 1, tables: ['keys'] });
    expect(inspect(path.join(m.home, 'audit_log', 'audit.db'))).toEqual({ version: 1, tables: ['events'] });

    // The first command is a read-only one: the upgrade still happens (through a writable handle).
    expect(json(dsk(['keys', 'list', '--json'], { env: m.env }))).toEqual(keysBefore);
    expect(SCHEMA_VERSION).toBe(7);
    expect(inspect(path.join(m.home, 'keys.db'))).toEqual({ version: SCHEMA_VERSION, tables: ['deliveries', 'flushes', 'key_sources', 'keys', 'master_state', 'operator_failures', 'operators', 'quota_marks', 'usage_hourly'] });
    expect(inspect(path.join(m.home, 'audit_log', 'audit.db'))).toEqual({ version: SCHEMA_VERSION, tables: ['events'] });

    // Everything that needs the new tables works, and the chain written before the upgrade verifies.
    expect(json(dsk(['operator', 'add', 'audrey', '--role', 'auditor', '--json'], { env: m.env }))).toMatchObject({ name: 'audrey', role: 'auditor' });
    expect(json(dsk(['keys', 'revoke', issued.id, '--json'], { env: m.env }))).toMatchObject({ status: 'revoked' });
    expect(json(dsk(['audit', 'verify', '--json'], { env: m.env }))).toMatchObject({ ok: true, macs_checked: true, head_file: { state: 'match' } });
    expect(json(dsk(['status', '--json'], { env: m.env }))).toMatchObject({ keys: { revoked: 1 }, operators: { mode: 'open', operators: 1 } });
    // A second open finds nothing to do.
    const after = snapshot(m.home);
    expect(dsk(['keys', 'list', '--json'], { env: m.env }).code).toBe(0);
    expect(snapshot(m.home)).toEqual(after);
  });

  it('several processes opening an old home at once upgrade it once, and all succeed', async () => {
    const m = makeHome(undefined, { shares: 2, threshold: 2 });
    asV1(m.home);
    const runs = Array.from({ length: 4 }, () => dskAsync(['keys', 'list', '--json'], { env: m.env }));
    const codes = await Promise.all(runs.map((p) => new Promise<number | null>((r) => p.on('exit', r))));
    expect(codes).toEqual([0, 0, 0, 0]);
    expect(inspect(path.join(m.home, 'keys.db')).version).toBe(SCHEMA_VERSION);
    expect(json(dsk(['audit', 'verify', '--json'], { env: m.env }))).toMatchObject({ ok: true });
  });

  it('refuses a home written by a newer dsk (exit 7, ERR_SCHEMA_TOO_NEW) before anything is written', () => {
    const m = makeHome(undefined, { shares: 2, threshold: 2 });
    for (const [file, name] of [[path.join(m.home, 'keys.db'), 'keys.db'], [path.join(m.home, 'audit_log', 'audit.db'), 'audit_log/audit.db']] as const) {
      setVersion(file, SCHEMA_VERSION + 1);
      const before = snapshot(m.home);
      for (const args of [['keys', 'list'], ['keygen', '--name', 'x', '--role', 'developer'], ['audit', 'verify'], ['rotate', '--due']]) {
        const r = dsk(args, { env: m.env });
        expect({ args, code: r.code }).toEqual({ args, code: 7 });
        expect(r.stderr).toBe(`dsk: error: ${name} has schema version ${SCHEMA_VERSION + 1}, newer than this dsk knows (${SCHEMA_VERSION}); nothing was changed\ndsk: hint: a newer dsk wrote this home: upgrade dsk to open it\n`);
        expect(r.stdout).toBe('');
      }
      const j = dsk(['keys', 'list', '--json'], { env: m.env });
      expect(JSON.parse(j.stderr).error.code).toBe('ERR_SCHEMA_TOO_NEW');
      expect(snapshot(m.home)).toEqual(before);
      setVersion(file, SCHEMA_VERSION);
    }
    expect(dsk(['keys', 'list'], { env: m.env }).code).toBe(0);
  });
});
