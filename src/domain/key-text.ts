/**
 * API key text format, version 1:
 *
 *   dsk_<id>_<secret>_<check>
 *
 *   id      12 lower-case hex characters (48 random bits): the public key id shown in lists and audit
 *   secret  64 lower-case hex characters: generate_api_key(master_key, salt) from the seed
 *   check   6 base62 characters: CRC-32 of "dsk_<id>_<secret>", so a mistyped or truncated key is
 *           rejected before any lookup, and secret scanners can match the whole token
 *
 * The CRC is not a security control (anyone can compute it); the secret is. Only SHA-256 of the
 * whole text is stored.
 */
import { zlibCrc32 } from '../kernel/crc32.js';
import { UsageError } from '../kernel/errors.js';

export const KEY_PREFIX = 'dsk';
export const KEY_ID_LENGTH = 12;
const KEY_PATTERN = /^dsk_([0-9a-f]{12})_([0-9a-f]{64})_([0-9A-Za-z]{6})$/;
const ID_PATTERN = /^[0-9a-f]{12}$/;
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

export function isKeyId(text: string): boolean {
  return ID_PATTERN.test(text);
}

function base62Fixed(n: number, width: number): string {
  let out = '';
  for (let i = 0; i < width; i++) {
    out = BASE62[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}

export function checksum(body: string): string {
  return base62Fixed(zlibCrc32(Buffer.from(body)), 6);
}

export function formatApiKey(id: string, secretHex: string): string {
  const body = `${KEY_PREFIX}_${id}_${secretHex}`;
  return `${body}_${checksum(body)}`;
}

export type ParsedKey = { ok: true; id: string; secret: string } | { ok: false; reason: 'MALFORMED' | 'BAD_CHECKSUM' };

/** Parses a key text. Never throws; never looks anything up. */
export function parseApiKey(text: string): ParsedKey {
  if (typeof text !== 'string' || text.length !== 88) return { ok: false, reason: 'MALFORMED' };
  const m = KEY_PATTERN.exec(text);
  if (!m) return { ok: false, reason: 'MALFORMED' };
  if (checksum(text.slice(0, 81)) !== m[3]) return { ok: false, reason: 'BAD_CHECKSUM' };
  return { ok: true, id: m[1], secret: m[2] };
}

/** Anything in the text that could be a secret: a key (or its start), a signing secret, a long hex run. */
const KEY_IN_TEXT = /dsk_([0-9a-f]{12})_/;
const SECRETISH = /dsk_|dss_|[0-9a-f]{20,}|[A-Za-z0-9_-]{40,}/;

/**
 * Refuses a value that is not a key id, without repeating anything that may be secret: a pasted
 * API key is named by its id only ("the id is 3f9a2c7d1e8b"), a signing secret or other long token
 * is not shown at all. Short, harmless typos are quoted so the user sees what was wrong.
 */
export function assertKeyId(text: string, what = 'key id'): void {
  if (ID_PATTERN.test(text)) return;
  const k = KEY_IN_TEXT.exec(text);
  if (k)
    throw new UsageError('ERR_KEY_PASTED', `this looks like an API key, not a ${what}; the id is ${k[1]} (dsk_${k[1]}_…)`, {
      hint: `pass the id: ${k[1]}. A key typed on a command line is in shell history and visible in ps: if it was exposed, rotate it`,
    });
  if (text.includes('dss_'))
    throw new UsageError('ERR_KEY_PASTED', `this looks like a signing secret, not a ${what}`, { hint: 'pass the 12-character key id (dsk keys list shows it); if the secret was exposed, rotate the key' });
  const shown = text.length <= 40 && !SECRETISH.test(text) && /^[\x20-\x7e]*$/.test(text) ? `'${text}'` : `the value given (${text.length} characters, not shown)`;
  throw new UsageError('ERR_KEY_ID', `${shown} is not a ${what} (12 hex characters, as shown by dsk keys list)`);
}
