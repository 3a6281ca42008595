/**
 * Short-lived bearer tokens (the seed's JWT example, section 3.2): HS256 JWTs (RFC 7519) minted by
 * `dsk token issue` and accepted by the gateway in place of the key.
 *
 *   header  {"alg":"HS256","typ":"JWT","kid":<key id>}
 *   claims  {"iss":"dsk","sub":<key id>,"scope":"deepseek_api","iat","exp","jti"}
 *   key     K_jwt(id) = HMAC-SHA256(master, "dsk/v1/jwt/" + id)
 *
 * The token key is derived from the master key, not from the key's signing secret: a caller who
 * holds a signing secret cannot mint tokens, only the operator (who can unseal) can, and the
 * gateway (which is unsealed) can check them. Each key has its own token key, so a token for one
 * key says nothing about another. A token is worth no more than its parent key: the gateway
 * refuses it once the parent is revoked, retired or expired, whatever the token's own expiry.
 *
 * Verification pins the algorithm to HS256 (jose rejects `none`, RS256/ES256 and any other `alg`
 * before touching the key, which rules out algorithm confusion), requires iss, sub = kid, scope,
 * iat and exp, and allows 5 s of clock tolerance.
 */
import crypto from 'node:crypto';
import { SignJWT, jwtVerify, decodeProtectedHeader, errors as joseErrors } from 'jose';
import type { MasterKey } from '../master/backend.js';
import { isKeyId } from '../domain/key-text.js';

export const JWT_ISSUER = 'dsk';
export const JWT_SCOPE = 'deepseek_api';
export const JWT_MAX_TTL_MS = 24 * 3_600_000;
const JWT_SHAPE = /^[A-Za-z0-9_-]{2,2048}\.[A-Za-z0-9_-]{2,4096}\.[A-Za-z0-9_-]{0,512}$/;

export async function tokenKey(master: MasterKey, keyId: string): Promise<Buffer> {
  return master.hmac(Buffer.from(`dsk/v1/jwt/${keyId}`));
}

export async function issueToken(key: Buffer, keyId: string, ttlMs: number, nowMs: number): Promise<{ token: string; expires_at: string; jti: string }> {
  const iat = Math.floor(nowMs / 1000);
  const exp = iat + Math.max(1, Math.floor(ttlMs / 1000));
  const jti = crypto.randomBytes(12).toString('base64url');
  const token = await new SignJWT({ scope: JWT_SCOPE })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT', kid: keyId })
    .setIssuer(JWT_ISSUER)
    .setSubject(keyId)
    .setIssuedAt(iat)
    .setExpirationTime(exp)
    .setJti(jti)
    .sign(key);
  return { token, expires_at: new Date(exp * 1000).toISOString(), jti };
}

export function looksLikeJwt(text: string): boolean {
  return JWT_SHAPE.test(text);
}

/** The kid of a token, without trusting anything else in it; null when unusable. */
export function tokenKid(token: string): string | null {
  try {
    const h = decodeProtectedHeader(token);
    return typeof h.kid === 'string' && isKeyId(h.kid) && h.alg === 'HS256' ? h.kid : null;
  } catch {
    return null;
  }
}

export type TokenCheck = { ok: true } | { ok: false; code: 'TOKEN_EXPIRED' | 'TOKEN_INVALID' };

export async function verifyToken(token: string, key: Buffer, keyId: string, nowMs: number): Promise<TokenCheck> {
  try {
    const { payload } = await jwtVerify(token, key, {
      algorithms: ['HS256'],
      issuer: JWT_ISSUER,
      subject: keyId,
      requiredClaims: ['iat', 'exp', 'scope'],
      currentDate: new Date(nowMs),
      clockTolerance: 5,
    });
    if (payload.scope !== JWT_SCOPE) return { ok: false, code: 'TOKEN_INVALID' };
    return { ok: true };
  } catch (e) {
    return { ok: false, code: e instanceof joseErrors.JWTExpired ? 'TOKEN_EXPIRED' : 'TOKEN_INVALID' };
  }
}

/** dsk token issue: a token for a usable key, audited as TOKEN_ISSUE (the token itself never is). */
export async function issueKeyToken(home: import('../app/home.js').Home, id: string, ttlMs: number) {
  const { getKey, checkUsable } = await import('../app/keys.js');
  const { ConflictError, UsageError } = await import('../kernel/errors.js');
  if (ttlMs > JWT_MAX_TTL_MS) throw new UsageError('ERR_TOKEN_TTL', `a token lifetime is at most 24h: tokens are meant to be short-lived`, { hint: 'issue a new token when it expires' });
  const { master } = home.requireUnsealed();
  const now = home.env.clock.now();
  const row = await getKey(home, id);
  const u = checkUsable(row, now);
  if (!u.ok) throw new ConflictError('ERR_KEY_STATE', `key ${id} is ${u.code.toLowerCase()}; tokens are issued only for active keys or keys in grace`);
  const key = await tokenKey(master, id);
  const t = await issueToken(key, id, ttlMs, now);
  key.fill(0);
  await home.tx((tx) => tx.audit({ action: 'TOKEN_ISSUE', key_id: id, details: { key_id: id, jti: t.jti, expires_at: t.expires_at, scope: JWT_SCOPE } }));
  return { token: t.token, key_id: id, scope: JWT_SCOPE, jti: t.jti, expires_at: t.expires_at };
}
