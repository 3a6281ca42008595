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
