/**
 * PostgreSQL and network failures mapped to the brief's exit codes, each naming the store by its
 * redacted address (never a password). Cannot connect, cannot log in, no such database, a
 * read-only standby: exit 7 (the store is unavailable to this node). Another writer's lock held past
 * the lock timeout, or a serialisation failure: exit 6 (retry). Missing tables: exit 5.
 */
import { ConflictError, IntegrityError, UnavailableError } from '../../kernel/errors.js';

const NOTHING = 'nothing was changed';
const NETWORK = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'ECONNRESET', 'EPIPE']);

export function isDisconnect(e: unknown): boolean {
  const code = (e as { code?: string })?.code ?? '';
  const msg = (e as Error)?.message ?? '';
  return NETWORK.has(code) || code.startsWith('08') || code === '57P01' || code === '57P02' || code === '57P03' || /timeout expired|Connection terminated|connection timeout|Query read timeout|Client has encountered a connection error/i.test(msg);
}

export function mapPgError(e: unknown, address: string): Error {
  if ((e as { exitCode?: number })?.exitCode !== undefined) return e as Error;
  const code = (e as { code?: string })?.code ?? '';
  const msg = ((e as Error)?.message ?? String(e)).split('\n')[0].slice(0, 200);
  if (isDisconnect(e))
    return new UnavailableError('ERR_STORE_UNREACHABLE', `cannot reach the store at ${address} (${code || msg}); ${NOTHING}`, {
      hint: 'check that PostgreSQL runs there and accepts connections from this host (pg_isready -h HOST -p PORT)',
      cause: e,
    });
  if (code === '28P01' || code === '28000' || /password must be a string|SASL|no password supplied/i.test(msg))
    return new UnavailableError('ERR_STORE_LOGIN', `cannot log in to the store at ${address}: ${code ? msg : 'the server asked for a password and none was given'}; ${NOTHING}`, {
      hint: 'give the password in PGPASSWORD, PGPASSFILE (~/.pgpass) or store.password_file in dsk.json (--store-password-file at init)',
      cause: e,
    });
  if (code === '3D000')
    return new UnavailableError('ERR_STORE_NO_DATABASE', `the store at ${address} does not exist (${msg}); ${NOTHING}`, { hint: 'create it first (createdb), or correct the database name in the address', cause: e });
  if (code === '55P03' || code === '40001' || code === '40P01')
    return new ConflictError('ERR_STORE_BUSY', `the store at ${address} stayed locked by another writer (${code}); ${NOTHING}`, { hint: 'try again in a moment; another dsk on this store holds the lock', cause: e });
  if (code === '53100')
    return new UnavailableError('ERR_STORE_FULL', `cannot write the store at ${address}: the server has no space left (${code}); ${NOTHING}`, { hint: 'free disk space on the database server, then retry', cause: e });
  if (code === '25006')
    return new UnavailableError('ERR_STORE_UNWRITABLE', `cannot write the store at ${address}: it is a read-only standby (${code}); ${NOTHING}`, { hint: 'point store.url at the primary, or promote this standby (pg_ctl promote)', cause: e });
  if (code === '42P01' || code === '42703')
    return new IntegrityError('ERR_STORE_DAMAGED', `the store at ${address} is damaged: ${msg} (${code}); ${NOTHING}`, { hint: 'restore the database from a backup (pg_dump / pg_basebackup); dsk audit verify checks the audit log afterwards', cause: e });
  return e instanceof Error ? e : new Error(String(e));
}
