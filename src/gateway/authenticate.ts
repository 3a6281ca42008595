/**
 * Who is calling: a credential header to a key of the index, or a refusal. Never touches the store.
 *
 *   key:  checksum in the text (a mistyped key never reaches a lookup) → index lookup by id →
 *         constant-time SHA-256 compare → state and time (grace works until grace_until). The
 *         state is told only after the hash matched, so it tells nothing to someone without the key.
 *         An unknown id is compared against a dummy hash: a known id with a wrong secret and an
 *         unknown id cost one SHA-256 and one compare each, so timing does not tell ids apart.
 *   JWT:  kid → HS256 verify (jwt.ts) with the key's token key, derived once per key from the
 *         master key and kept (wiped on close) → parent key usable. Until the signature verifies,
 *         every failure is `invalid_token`: a forged token learns nothing about the key it names
 *         (an unknown kid is verified against a random key, so it costs the same work).
 */
import crypto from 'node:crypto';
import { checkUsable } from '../app/keys.js';
import { parseApiKey } from '../domain/key-text.js';
import { constantTimeEqual, sha256Hex } from '../kernel/crypto.js';
import type { MasterKey } from '../master/backend.js';
import { parseCredential } from './credentials.js';
import { tokenKey, tokenKid, verifyToken } from './jwt.js';
import type { IndexedKey, KeyIndex } from './key-index.js';
import { unauthorized, type Refusal } from './refusals.js';

export interface Caller {
  key: IndexedKey;
  via: 'key' | 'jwt';
  /** the presented credential: the legacy signature formula covers the key text */
  text: string;
}

const DUMMY_HASH = sha256Hex('dsk: no key has this hash');

export class Authenticator {
  readonly #tokenKeys = new Map<string, Buffer>();
  readonly #dummyTokenKey = crypto.randomBytes(32);

  /** `hash` is SHA-256 hex; tests pass a counting wrapper to show both paths do the same work. */
  constructor(
    private readonly index: KeyIndex,
    private readonly master: () => MasterKey,
    private readonly hash: (text: string) => string = sha256Hex,
  ) {}

  /** `headers` as node's headersDistinct: a repeated Authorization is seen, not dropped to its first value. */
  async authenticate(headers: NodeJS.Dict<string | string[]>, now: number): Promise<Caller | Refusal> {
    const cred = parseCredential(headers);
    if (!cred.ok) return unauthorized(cred.code, cred.code === 'MISSING_KEY' ? 'missing api key: send Authorization: Bearer <key> or X-Api-Key' : 'malformed authorization header');
    if (cred.kind === 'key') {
      const p = parseApiKey(cred.text);
      if (!p.ok) return unauthorized(p.reason);
      const k = this.index.get(p.id);
      const matches = constantTimeEqual(this.hash(cred.text), k ? k.row.key_hash : DUMMY_HASH);
      if (!k || !matches) return { ...unauthorized('NOT_FOUND'), ...(k ? { targetKeyId: k.row.id } : {}) };
      const u = checkUsable(k.row, now);
      if (!u.ok) return unauthorized(u.code, `api key ${k.row.id} is ${u.code.toLowerCase()}`, `key_${u.code.toLowerCase()}`, k.row.id);
      return { key: k, via: 'key', text: cred.text };
    }
    const kid = tokenKid(cred.text);
    const k = kid ? this.index.get(kid) : undefined;
    if (!k) {
      await verifyToken(cred.text, this.#dummyTokenKey, kid ?? '-', now);
      return unauthorized('TOKEN_INVALID', 'invalid token', 'invalid_token');
    }
    let tk = this.#tokenKeys.get(k.row.id);
    if (!tk) this.#tokenKeys.set(k.row.id, (tk = await tokenKey(this.master(), k.row.id)));
    const v = await verifyToken(cred.text, tk, k.row.id, now);
    // jose checks the signature before any claim: TOKEN_EXPIRED means the signature held
    if (!v.ok) return unauthorized(v.code, v.code === 'TOKEN_EXPIRED' ? 'token expired' : 'invalid token', v.code === 'TOKEN_EXPIRED' ? 'token_expired' : 'invalid_token', k.row.id);
    const u = checkUsable(k.row, now);
    if (!u.ok) return unauthorized(u.code, `the key behind this token is ${u.code.toLowerCase()}`, `key_${u.code.toLowerCase()}`, k.row.id);
    return { key: k, via: 'jwt', text: cred.text };
  }

  /** Overwrites the token keys in memory. */
  wipe(): void {
    this.#dummyTokenKey.fill(0);
    for (const b of this.#tokenKeys.values()) b.fill(0);
    this.#tokenKeys.clear();
  }
}
