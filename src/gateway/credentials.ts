/**
 * Header parsers at the gateway's trust boundary. They never throw and never look anything up;
 * every input an attacker controls is length-capped before a regular expression sees it.
 */
import net from 'node:net';
import { looksLikeJwt } from './jwt.js';

export type Credential =
  | { ok: true; kind: 'key' | 'jwt'; text: string }
  | { ok: false; code: 'MISSING_KEY' | 'MALFORMED_AUTH' };

const MAX_CREDENTIAL = 8192;

function single(v: string | string[] | undefined): string | undefined | null {
  if (Array.isArray(v)) return v.length === 1 ? v[0] : null;
  return v;
}

/**
 * `Authorization: Bearer <key or JWT>` (scheme case-insensitive, RFC 7235) or `X-Api-Key: <key>`.
 * Both may be sent (some clients do) only if they carry the same value.
 */
export function parseCredential(h: Record<string, string | string[] | undefined>): Credential {
  const auth = single(h['authorization']);
  const apiKey = single(h['x-api-key']);
  if (auth === null || apiKey === null) return { ok: false, code: 'MALFORMED_AUTH' };
  let bearer: string | undefined;
  if (auth !== undefined) {
    if (auth.length > MAX_CREDENTIAL) return { ok: false, code: 'MALFORMED_AUTH' };
    const m = /^[Bb][Ee][Aa][Rr][Ee][Rr] +([\x21-\x7e]+) *$/.exec(auth);
    if (!m) return { ok: false, code: 'MALFORMED_AUTH' };
    bearer = m[1];
  }
  let xkey: string | undefined;
  if (apiKey !== undefined) {
    const t = apiKey.trim();
    if (!t || t.length > MAX_CREDENTIAL || !/^[\x21-\x7e]+$/.test(t)) return { ok: false, code: 'MALFORMED_AUTH' };
    xkey = t;
  }
  if (bearer !== undefined && xkey !== undefined && bearer !== xkey) return { ok: false, code: 'MALFORMED_AUTH' };
  const text = bearer ?? xkey;
  if (text === undefined) return { ok: false, code: 'MISSING_KEY' };
  return { ok: true, kind: text.startsWith('dsk_') || !looksLikeJwt(text) ? 'key' : 'jwt', text };
}

/**
 * The client address. X-Forwarded-For is trusted only with --trust-proxy, and then only its last
 * entry (the address the trusted proxy itself saw); anything unparsable falls back to the socket.
 */
export function clientIp(socketIp: string | undefined, xff: string | string[] | undefined, trustProxy: boolean): string {
  const fallback = socketIp ?? 'unknown';
  if (!trustProxy || xff === undefined) return fallback;
  const v = Array.isArray(xff) ? xff[xff.length - 1] : xff;
  if (typeof v !== 'string' || v.length > 4096) return fallback;
  const last = v.split(',').pop()!.trim();
  return net.isIP(last) ? last : fallback;
}
