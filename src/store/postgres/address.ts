/**
 * A PostgreSQL store's address: `postgres://user@host:port/database` (or `postgresql://`), with
 * libpq's query parameters `sslmode` and `application_name`. The password never travels in the
 * address, which sits in argv and in dsk.json: it comes from a password file named in dsk.json
 * (`store.password_file`), else from PGPASSWORD, else from PGPASSFILE / ~/.pgpass, as libpq reads
 * them; only when the server asks for one. Everything printed about a store uses `redacted`.
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { UsageError, UnavailableError } from '../../kernel/errors.js';

export interface PgAddress {
  host: string;
  port: number;
  database: string;
  user: string;
  ssl: boolean;
  /** the address as shown to people: never a password */
  redacted: string;
}

/** Whether `text` names a PostgreSQL store (rather than being a malformed one). */
export function isPostgresUrl(text: string): boolean {
  return /^postgres(ql)?:\/\//i.test(text);
}

export function parsePgUrl(text: string): PgAddress {
  const bad = (why: string) =>
    new UsageError('ERR_STORE_URL', `not a usable PostgreSQL address (${why})`, { hint: 'write it as postgres://USER@HOST:PORT/DATABASE, the password in PGPASSWORD, PGPASSFILE or a password file' });
  if (!isPostgresUrl(text)) throw bad('it must start with postgres:// or postgresql://');
  let u: URL;
  try {
    u = new URL(text.replace(/^postgres(ql)?:/i, 'http:'));
  } catch {
    throw bad('it does not parse as a URL');
  }
  if (u.password) throw new UsageError('ERR_STORE_URL_PASSWORD', 'a PostgreSQL address must not carry a password (argv and dsk.json are readable)', { hint: 'remove it from the address; give it in PGPASSWORD, PGPASSFILE or a password file' });
  const host = decodeURIComponent(u.hostname.replace(/^\[|\]$/g, ''));
  if (!host) throw bad('no host');
  const database = decodeURIComponent(u.pathname.replace(/^\//, ''));
  if (!database || database.includes('/')) throw bad('no database name after the host');
  const port = u.port ? Number(u.port) : 5432;
  const user = decodeURIComponent(u.username) || process.env.PGUSER || 'postgres';
  for (const k of u.searchParams.keys()) if (k !== 'sslmode' && k !== 'application_name') throw bad(`unknown parameter ${k}`);
  const sslmode = u.searchParams.get('sslmode') ?? 'disable';
  if (!['disable', 'prefer', 'require', 'verify-full'].includes(sslmode)) throw bad(`unknown sslmode ${sslmode}`);
  const hostText = host.includes(':') ? `[${host}]` : host;
  return { host, port, database, user, ssl: sslmode === 'require' || sslmode === 'verify-full', redacted: `postgres://${encodeURIComponent(user)}@${hostText}:${port}/${encodeURIComponent(database)}` };
}

/** Reads a password file (first line, trailing newline dropped); null when none is named. */
export function readPasswordFile(file: string | undefined, address: string): string | undefined {
  if (!file) return undefined;
  try {
    return fs.readFileSync(file, 'utf8').split(/\r?\n/)[0];
  } catch (e) {
    throw new UnavailableError('ERR_STORE_PASSWORD_FILE', `cannot read the password file of ${address}: ${file} (${(e as NodeJS.ErrnoException).code ?? 'error'})`, {
      hint: 'check store.password_file in dsk.json (or --store-password-file): it must name a readable file',
      cause: e,
    });
  }
}

type Conn = { host: string; port: number; database: string; user: string };
/** pgpass's line matcher (its entry point would skip the file whenever PGPASSWORD is set, even empty). */
const pgpass = createRequire(import.meta.url)('pgpass/lib/helper.js') as { getFileName(): string; getPassword(c: Conn, s: NodeJS.ReadableStream, cb: (pw: string | undefined) => void): void };

/**
 * The password, looked up when the server asks: the file dsk.json names, else PGPASSWORD (if not
 * empty), else the matching line of PGPASSFILE or ~/.pgpass. Undefined: none (the login fails,
 * naming where a password can come from).
 */
export function passwordSource(a: PgAddress, file: string | undefined): () => Promise<string | undefined> {
  return async () => {
    const fromFile = readPasswordFile(file, a.redacted);
    if (fromFile !== undefined) return fromFile;
    // as libpq: an empty PGPASSWORD counts as unset; a pgpass file others can read is ignored
    if (process.env.PGPASSWORD) return process.env.PGPASSWORD;
    const f = pgpass.getFileName();
    let st: fs.Stats;
    try {
      st = fs.statSync(f);
    } catch {
      return undefined;
    }
    if (!st.isFile() || st.mode & 0o077) return undefined;
    return new Promise((resolve) => pgpass.getPassword({ host: a.host, port: a.port, database: a.database, user: a.user }, fs.createReadStream(f), resolve));
  };
}
