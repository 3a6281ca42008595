/**
 * `dsk store migrate --to postgres://…`: moves a SQLite home's store into an empty PostgreSQL
 * database. Checked at both ends: the SQLite chain must verify before anything is copied; the copy
 * (every table, the audit rows with their own seq, hash and MAC) and a STORE_MIGRATE row land in one
 * transaction; then the chain is verified again, in PostgreSQL, with the audit key and against this
 * home's audit_log/HEAD. Only then does dsk.json name the new store. Until that last step the home
 * keeps using its SQLite files, which are left as they were (a copy from before the move).
 */
import { IntegrityError, ConflictError } from '../kernel/errors.js';
import { readTextIfExists, writePrivateFile } from '../kernel/files.js';
import type { StoreConfig } from '../domain/config.js';
import { loadConfig, saveConfig } from '../store/config-file.js';
import { openPgStore } from '../store/open.js';
import { headPath, readHead } from '../audit/head.js';
import { verifyChain } from '../audit/verify.js';
import { keyCheckValue } from '../master/backend.js';
import { Home } from './home.js';

export interface MigrateResult {
  store: string;
  tables: { table: string; rows: number }[];
  audit: { rows: number; head_seq: number | null; verified: boolean };
}

export async function migrateToPostgres(h: Home, store: StoreConfig): Promise<MigrateResult> {
  const { master, sealKey, auditKey } = h.requireUnsealed();
  if (h.config.store?.url || h.store.engine !== 'sqlite')
    throw new ConflictError('ERR_STORE_ALREADY_SHARED', 'this home already keeps its store in PostgreSQL', { hint: 'dsk store migrate moves a SQLite home; to copy one PostgreSQL database to another use pg_dump' });
  const before = await verifyChain(h.store, readHead(h.dir), auditKey);
  if (!before.ok)
    throw new IntegrityError('ERR_MIGRATE_SOURCE_BROKEN', `the audit chain of this home does not verify (${before.breach?.kind} at seq ${before.breach?.seq}); nothing was copied`, { hint: 'run dsk audit verify and deal with the breach first' });
  const config = { ...loadConfig(h.dir), store };
  const identity = { homeId: config.home_id, keyCheckValue: await keyCheckValue(master), sharedConfig: JSON.stringify({ policy: config.policy, roles: config.roles }), now: h.env.clock.now(), importFrom: h.dir };
  const headBefore = readTextIfExists(headPath(h.dir));
  const pg = await openPgStore(config, { create: identity });
  try {
    const moved = new Home(h.dir, config, pg, h.env, master, sealKey, auditKey);
    const tables = pg.imported;
    await moved.tx((t) => t.audit({ action: 'STORE_MIGRATE', details: { from: 'sqlite', to: pg.address, rows: Object.fromEntries(tables.map((c) => [c.table, c.rows])) } }));
    const after = await verifyChain(pg, readHead(h.dir), auditKey);
    if (!after.ok || after.rows !== before.rows + 1) {
      // HEAD moved to the STORE_MIGRATE row that only the copy holds: put it back for the SQLite chain.
      if (headBefore !== null) writePrivateFile(headPath(h.dir), headBefore);
      throw new IntegrityError('ERR_MIGRATE_VERIFY', `the copy in ${pg.address} does not verify (${after.breach?.message ?? `${after.rows} rows, expected ${before.rows + 1}`}); this home still uses SQLite`, {
        hint: 'drop that database and retry; report it if it happens again',
      });
    }
    saveConfig(h.dir, config);
    return { store: pg.address, tables, audit: { rows: after.rows, head_seq: after.last_seq, verified: true } };
  } finally {
    await pg.close();
  }
}
