/**
 * Nonces of signed requests on SQLite (migration 7): `nonces.db` beside keys.db, shared by every
 * gateway process of the home. keys.db commits with journal_mode=DELETE and synchronous=FULL
 * (several fsyncs, and readers wait), which would put a disk flush on every signed request; this
 * file uses WAL with synchronous=NORMAL instead: a claim is a short local commit that survives a
 * killed process (the WAL is in the OS cache), though not a power cut, after which a nonce seen in
 * the last few seconds could pass once more within the skew window. The primary key makes the
 * check and the insert one atomic statement across processes.
 */
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { homePath } from '../../kernel/home-layout.js';
import type { NonceClaims } from '../store.js';
import type { DB } from './statements.js';

const DDL = `
CREATE TABLE IF NOT EXISTS nonces (
  key_id     TEXT NOT NULL,
  nonce      TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (key_id, nonce)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces(expires_at);
`;

/** How often expired nonces are deleted (each claim only replaces its own expired row). */
const PRUNE_EVERY_MS = 10_000;

export class SqliteNonces {
  #db: DB | null = null;
  #claim: Database.Statement | null = null;
  #prunedAt = 0;

  constructor(
    private readonly home: string,
    private readonly lockTimeoutMs: () => number,
  ) {}

  claim(keyId: string, nonce: string, expiresAt: number, now: number): boolean {
    const db = this.#open();
    if (now - this.#prunedAt > PRUNE_EVERY_MS) {
      this.#prunedAt = now;
      db.prepare('DELETE FROM nonces WHERE expires_at <= ?').run(now);
    }
    // New, or an expired row replaced: one change. A live row: none, which is a replay.
    return this.#claim!.run(keyId, nonce, expiresAt, now).changes === 1;
  }

  setLockTimeout(ms: number): void {
    this.#db?.pragma(`busy_timeout = ${Math.max(0, Math.floor(ms))}`);
  }

  close(): void {
    if (this.#db?.open) this.#db.close();
    this.#db = null;
  }

  #open(): DB {
    if (this.#db) return this.#db;
    const file = homePath(this.home, 'noncesDb');
    try {
      fs.closeSync(fs.openSync(file, 'wx', 0o600));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const db = new Database(file, { fileMustExist: true });
    try {
      db.pragma(`busy_timeout = ${this.lockTimeoutMs()}`);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.exec(DDL);
      this.#claim = db.prepare(
        `INSERT INTO nonces (key_id, nonce, expires_at) VALUES (?, ?, ?)
         ON CONFLICT (key_id, nonce) DO UPDATE SET expires_at = excluded.expires_at WHERE nonces.expires_at <= ?`,
      );
    } catch (e) {
      db.close();
      throw e;
    }
    this.#db = db;
    return db;
  }
}
