/** Opens the store of a home. SQLite is the only engine so far; the choice will come from dsk.json. */
import type { OpenStoreOptions, Store } from './store.js';
import { SqliteStore } from './sqlite/engine.js';

export async function openStore(home: string, opts: OpenStoreOptions = {}): Promise<Store> {
  return SqliteStore.open(home, opts);
}
