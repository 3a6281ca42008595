/** Opens the store of a home. SQLite is the only engine so far; the choice will come from dsk.json. */
import type { OpenStoreOptions, Store } from './store.js';
import { SqliteStore } from './sqlite/engine.js';
import { SCHEMA_VERSION } from './migrations.js';

export async function openStore(home: string, opts: OpenStoreOptions = {}): Promise<Store> {
  return SqliteStore.open(home, opts);
}

/** The schema version of a home's store and the one this dsk writes, without opening it for use (no migration). */
export function storeSchema(home: string): { keys: number; audit: number; current: number } {
  return { ...SqliteStore.schemaVersions(home), current: SCHEMA_VERSION };
}
