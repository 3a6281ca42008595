/** Prepared statements of one connection, prepared on first use (opening a home stays cheap). */
import type Database from 'better-sqlite3';

export type DB = Database.Database;

export class Statements {
  #cache = new Map<string, Database.Statement>();
  constructor(readonly db: DB) {}

  get(sql: string): Database.Statement {
    let s = this.#cache.get(sql);
    if (!s) this.#cache.set(sql, (s = this.db.prepare(sql)));
    return s;
  }
}
