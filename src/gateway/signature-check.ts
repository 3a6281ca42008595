/**
 * The request signature at the gateway (the format is in signature.ts): required when the gateway
 * or the key says so, checked whenever sent. Order: headers → timestamp within the skew and not
 * older than the nonce cache can vouch for (the process's start, or a nonce dropped early) → HMAC
 * (or the seed's legacy formula, when allowed) → nonce not seen before. The nonce is recorded
 * last, and the server checks every limit before this runs, so neither a forged request nor one
 * refused for a limit can burn a nonce the real client is about to use.
 */
import type http from 'node:http';
import type { IndexedKey, KeyIndex } from './key-index.js';
import { unauthorized, type Refusal } from './refusals.js';
import { bodyHash, computeSignature, legacySignature, NonceCache, parseSignatureHeaders, signatureMatches, timestampFresh } from './signature.js';

export interface SignaturePolicy {
  requireSignature: boolean;
  allowLegacySignature: boolean;
  skewS: number;
  nonceCacheBytes: number;
}

export class SignatureCheck {
  readonly #nonces: NonceCache;

  constructor(
    private readonly index: KeyIndex,
    private readonly policy: SignaturePolicy,
    startedAtMs: number,
  ) {
    // a nonce must be remembered as long as its timestamp can pass: the skew either side
    this.#nonces = new NonceCache(policy.skewS * 2000, 1_000_000, policy.nonceCacheBytes, startedAtMs);
  }

  /** Null when the request may pass. `keyText` is the presented credential (for the legacy formula). */
  check(req: http.IncomingMessage, k: IndexedKey, via: 'key' | 'jwt', keyText: string, body: Buffer, now: number): Refusal | null {
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
    if (!this.#nonces.checkAndAdd(id, legacy ? `legacy:${s.signature}` : s.nonce, now, Number(s.timestamp))) return bad('NONCE_REPLAYED', 'nonce already used');
    return null;
  }
}
