/**
 * Opens the store of a home: the home's own SQLite files (the embedded default), or the
 * PostgreSQL database named by `store.url` in its dsk.json, checked to belong to this home.
 */
import fs from 'node:fs';
import { homePath } from '../kernel/home-layout.js';
import type { DskConfig } from '../domain/config.js';
import type { OpenStoreOptions, Store } from './store.js';
import { configFromText } from './config-file.js';
import { SqliteStore } from './sqlite/engine.js';
import { assertKnownVersion, SCHEMA_VERSION } from './migrations.js';
import { parsePgUrl, passwordSource } from './postgres/address.js';
import { PgStore, type PgOpenOptions } from './postgres/engine.js';

export async function openStore(home: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const config = readConfigIfAny(home);
  if (config?.store?.url) {
    if (opts.create && !opts.identity) throw new Error('internal: a new PostgreSQL store needs its identity');
    const create = opts.create ? { homeId: config.home_id, ...opts.identity! } : undefined;
    // Each node keeps its own audit_log/HEAD: a local witness of how far the shared chain reached.
    if (opts.create) fs.mkdirSync(homePath(home, 'auditDir'), { recursive: true, mode: 0o700 });
    return openPgStore(config, { homeId: config.home_id, lockTimeoutMs: opts.lockTimeoutMs, create });
  }
  return SqliteStore.open(home, opts);
}

export type StoreSchema =
  | { engine: 'sqlite'; keys: number; audit: number; current: number }
  | { engine: 'postgres'; address: string; version: number; current: number };

/**
 * The schema version of a home's store and the one this dsk writes, without opening it for use (no
 * migration, no lock): keys.db's and audit.db's user_version, or the version in the PostgreSQL
 * store's dsk_meta when `config` names one (a version newer than this dsk knows is refused).
 */
export async function storeSchema(home: string, config: Pick<DskConfig, 'store' | 'home_id'> | null): Promise<StoreSchema> {
  if (config?.store?.url) {
    const a = parsePgUrl(config.store.url);
    const version = await PgStore.inspect(a, { homeId: config.home_id, password: passwordSource(a, config.store.password_file) });
    assertKnownVersion(version, `the store at ${a.redacted}`);
    return { engine: 'postgres', address: a.redacted, version, current: SCHEMA_VERSION };
  }
  return { engine: 'sqlite', ...SqliteStore.schemaVersions(home), current: SCHEMA_VERSION };
}

/** The PostgreSQL store a config names (password from its file, else PGPASSWORD, else PGPASSFILE / ~/.pgpass). */
export async function openPgStore(config: Pick<DskConfig, 'store'>, opts: Omit<PgOpenOptions, 'password'> = {}): Promise<PgStore> {
  const a = parsePgUrl(config.store!.url);
  return PgStore.open(a, { ...opts, password: passwordSource(a, config.store!.password_file) });
}

function readConfigIfAny(home: string): DskConfig | null {
  const p = homePath(home, 'config');
  if (!fs.existsSync(p)) return null;
  return configFromText(fs.readFileSync(p, 'utf8'), p);
}

/** Before creating a home in PostgreSQL: reachable, logged in, and holding no dsk home yet. */
export async function checkNewStore(store: NonNullable<DskConfig['store']>): Promise<void> {
  const a = parsePgUrl(store.url);
  await PgStore.checkEmpty(a, { password: passwordSource(a, store.password_file) });
}

/** A store address as printed: no password (the address carries none; this also checks it parses). */
export function redactedStore(url: string): string {
  return parsePgUrl(url).redacted;
}
