/**
 * Copying a SQLite home's tables into a new PostgreSQL store (`dsk store migrate`), row for row:
 * every table of keys.db, and audit.db's `events` as `audit_events` (its rows keep their seq, hash
 * and MAC: the chain is not rewritten, so it verifies as it did). The copy runs in the new store's
 * creating transaction, so it lands whole or not at all. Tables are found in SQLite's catalogue, so
 * a migration that adds a table needs no change here, only the same table in PostgreSQL.
 */
import Database from 'better-sqlite3';
import { homePath } from '../../kernel/home-layout.js';
import { IntegrityError } from '../../kernel/errors.js';
import type { Exec } from './migrations.js';

const BATCH = 500;

export interface ImportCount {
  table: string;
  rows: number;
}

export async function importSqliteHome(home: string, exec: Exec, address: string): Promise<ImportCount[]> {
  const db = new Database(homePath(home, 'keysDb'), { readonly: true, fileMustExist: true });
  try {
    db.prepare('ATTACH DATABASE ? AS audit').run(homePath(home, 'auditDb'));
    const tables = [
      ...(db.prepare("SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((t) => ({ from: `main."${t.name}"`, to: t.name })),
      ...(db.prepare("SELECT name FROM audit.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[]).map((t) => ({ from: `audit."${t.name}"`, to: `audit_${t.name}` })),
    ];
    const out: ImportCount[] = [];
    for (const t of tables) {
      // Names come from a file: only plain identifiers are spliced into SQL.
      if (!/^[a-z_][a-z0-9_]*$/.test(t.to)) throw new IntegrityError('ERR_STORE_IMPORT', `cannot copy table ${JSON.stringify(t.to).slice(0, 80)} into the store at ${address}: not a dsk table name; nothing was changed`, { hint: 'the home\'s database holds a table dsk did not create: check keys.db' });
      const present = (await exec('SELECT to_regclass($1) IS NOT NULL AS ok', [t.to])).rows[0].ok;
      if (!present)
        throw new IntegrityError('ERR_STORE_IMPORT', `cannot copy table ${t.to} into the store at ${address}: it has no such table (this dsk and the home disagree on the schema); nothing was changed`, { hint: 'run the same dsk version that last opened the home' });
      const stmt = db.prepare(`SELECT * FROM ${t.from}`);
      const cols = stmt.columns().map((c) => c.name);
      if (cols.some((c) => !/^[a-z_][a-z0-9_]*$/.test(c))) throw new IntegrityError('ERR_STORE_IMPORT', `cannot copy table ${t.to} into the store at ${address}: a column is not a dsk column name; nothing was changed`, { hint: 'check keys.db' });
      const list = cols.map((c) => `"${c}"`).join(', ');
      let batch: unknown[][] = [];
      let n = 0;
      const flush = async () => {
        if (!batch.length) return;
        const values = batch.map((_, i) => `(${cols.map((__, j) => `$${i * cols.length + j + 1}`).join(', ')})`).join(', ');
        await exec(`INSERT INTO "${t.to}" (${list}) VALUES ${values}`, batch.flat());
        n += batch.length;
        batch = [];
      };
      for (const row of stmt.raw(true).iterate() as Iterable<unknown[]>) {
        batch.push(row);
        if (batch.length >= BATCH) await flush();
      }
      await flush();
      out.push({ table: t.to, rows: n });
    }
    await exec('INSERT INTO audit_head (id, seq, hash) SELECT 1, seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1');
    return out;
  } finally {
    db.close();
  }
}
