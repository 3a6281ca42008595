/**
 * The request signature at the gateway (the format is in signature.ts): required when the gateway
 * or the key says so, checked whenever sent. Order: headers → timestamp within the skew and not
 * older than the nonce cache can vouch for (the process's start, or a nonce dropped early) → HMAC
 * (or the seed's legacy formula, when allowed) → nonce not seen before. The nonce is recorded
 * last, and the server checks every limit before this runs, so neither a forged request nor one
 * refused for a limit can burn a nonce the real client is about to use.
 *
 * Nonces are checked twice: in this process's memory (a replay to the same gateway costs no store
 * call), then in the store's shared table (store.nonces), which every gateway on the store writes,
 * so a request replayed to another replica or worker is refused there too. When the store cannot
 * answer, the request is refused with 503: a nonce that cannot be checked is not accepted.
 */
import type http from 'node:http';
import type { NonceClaims } from '../store/store.js';
import type { IndexedKey, KeyIndex } from './key-index.js';
import { storeUnavailable, unauthorized, type Refusal } from './refusals.js';
import { bodyHash, computeSignature, legacySignature, NonceCache, parseSignatureHeaders, signatureMatches, timestampFresh } from './signature.js';

export interface SignaturePolicy {
  requireSignature: boolean;
  allowLegacySignature: boolean;
  skewS: number;
  nonceCacheBytes: number;
}

export class SignatureCheck {
  readonly #nonces: NonceCache;
  readonly #ttlMs: number;

  constructor(
    private readonly index: KeyIndex,
    private readonly policy: SignaturePolicy,
    startedAtMs: number,
    private readonly shared: NonceClaims,
  ) {
    // a nonce must be remembered as long as its timestamp can pass: the skew either side
    this.#ttlMs = policy.skewS * 2000;
    this.#nonces = new NonceCache(this.#ttlMs, 1_000_000, policy.nonceCacheBytes, startedAtMs);
  }

  /** Null when the request may pass. `keyText` is the presented credential (for the legacy formula). */
  async check(req: http.IncomingMessage, k: IndexedKey, via: 'key' | 'jwt', keyText: string, body: Buffer, now: number): Promise<Refusal | null> {
    const o = this.policy;
    const required = o.requireSignature || k.options.require_signature === true;
    const parsed = parseSignatureHeaders(req.headers);
    const id = k.row.id;
    const bad = (reason: string, message: string) => unauthorized(reason, message, 'invalid_signature', id);
    if (!parsed.ok) {
      if (parsed.code === 'SIGNATURE_MISSING' && !required) return null;
      return bad(parsed.code, parsed.code === 'SIGNATURE_MISSING' ? 'this key requires signed requests (X-Timestamp, X-Nonce, X-Signature)' : 'malformed signature headers');
    }
    const s = parsed.value;
    if (!timestampFresh(s.timestamp, now, o.skewS)) return bad('SIGNATURE_STALE', 'signature timestamp outside the allowed clock skew');
    if (!this.#nonces.covers(Number(s.timestamp))) return bad('SIGNATURE_PREDATES_NONCES', 'signature timestamp is older than the nonces this gateway remembers (it restarted since): sign the request again');
    const secret = this.index.secretOf(k);
    const target = req.url ?? '/';
    let ok = false;
    let legacy = false;
    if (s.nonce) {
      ok = signatureMatches(computeSignature(secret, { timestamp: s.timestamp, nonce: s.nonce, method: req.method ?? 'GET', path: target, bodySha256: bodyHash(body), keyId: id }), s.signature);
    }
    if (!ok && o.allowLegacySignature && via === 'key') {
      ok = signatureMatches(legacySignature(secret, keyText, s.timestamp, req.method ?? 'GET', target), s.signature);
      legacy = ok;
    }
    if (!ok) return bad(s.nonce || o.allowLegacySignature ? 'SIGNATURE_INVALID' : 'SIGNATURE_MALFORMED', 'signature does not match');
    // The legacy formula has no nonce: its signature stands in for one, so an identical request
    // cannot be replayed (a changed body can: the formula does not cover it).
    const nonce = legacy ? `legacy:${s.signature}` : s.nonce;
    if (!this.#nonces.checkAndAdd(id, nonce, now, Number(s.timestamp))) return bad('NONCE_REPLAYED', 'nonce already used');
    let fresh: boolean;
    try {
      fresh = await this.shared.claim(id, nonce, now + this.#ttlMs, now);
    } catch {
      return storeUnavailable('the request nonce cannot be checked: the key store is unreachable', id);
    }
    return fresh ? null : bad('NONCE_REPLAYED', 'nonce already used');
  }
}
