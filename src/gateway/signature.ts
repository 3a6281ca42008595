/**
 * Request signatures, version 1.
 *
 * A client sends three headers beside its key:
 *
 *   X-Timestamp  unix seconds (decimal, at most 12 digits)
 *   X-Nonce      16 to 128 characters of [A-Za-z0-9_-], unique per request
 *   X-Signature  hex HMAC-SHA256(signing secret, canonical)
 *
 *   canonical = timestamp "\n" nonce "\n" METHOD "\n" path-with-query "\n" hex(SHA-256(body)) "\n" key-id
 *
 * METHOD is upper-case; path-with-query is the request target exactly as sent (for example
 * `/v1/chat/completions?x=1`); the body hash of an empty body is SHA-256 of zero bytes. The key id
 * binds the signature to one key. The gateway accepts a timestamp within the skew window (300 s)
 * either side of its clock, and remembers nonces for that window so a captured request cannot be
 * replayed. Comparison is constant-time.
 *
 * The seed's formula, sha256(timestamp + method + path + api_key + secret), is accepted only with
 * --allow-legacy-signature: it has no nonce and does not cover the body, so a captured request can
 * be replayed with another body within the window (see docs/gateway.md).
 */
import crypto from 'node:crypto';
import { constantTimeEqual } from '../kernel/crypto.js';

export const SIGNATURE_SKEW_S = 300;
const TIMESTAMP = /^\d{1,12}$/;
const NONCE = /^[A-Za-z0-9_-]{16,128}$/;
const SIGNATURE = /^[0-9a-fA-F]{64}$/;

export interface SignatureHeaders {
  timestamp: string;
  nonce: string;
  signature: string;
}

export function bodyHash(body: Buffer | string): string {
  return crypto.createHash('sha256').update(body).digest('hex');
}

export function canonicalString(p: { timestamp: string; nonce: string; method: string; path: string; bodySha256: string; keyId: string }): string {
  return `${p.timestamp}\n${p.nonce}\n${p.method.toUpperCase()}\n${p.path}\n${p.bodySha256}\n${p.keyId}`;
}

export function computeSignature(secret: string, p: Parameters<typeof canonicalString>[0]): string {
  return crypto.createHmac('sha256', secret).update(canonicalString(p)).digest('hex');
}

/** The seed's formula (section 3.2): sha256(timestamp + method + path + api_key + secret). */
export function legacySignature(secret: string, apiKey: string, timestamp: string, method: string, path: string): string {
  return crypto.createHash('sha256').update(timestamp + method.toUpperCase() + path + apiKey + secret).digest('hex');
}

export type ParsedSignature =
  | { ok: true; value: SignatureHeaders }
  | { ok: false; code: 'SIGNATURE_MISSING' | 'SIGNATURE_MALFORMED' };

function one(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? (v.length === 1 ? v[0] : undefined) : v;
}

/** Parses the signature headers. Never throws; repeated headers are malformed. */
export function parseSignatureHeaders(h: Record<string, string | string[] | undefined>): ParsedSignature {
  const ts = h['x-timestamp'];
  const nonce = h['x-nonce'];
  const sig = h['x-signature'];
  if (ts === undefined && nonce === undefined && sig === undefined) return { ok: false, code: 'SIGNATURE_MISSING' };
  const t = one(ts);
  const n = one(nonce);
  const s = one(sig);
  if (t === undefined || s === undefined || !TIMESTAMP.test(t) || !SIGNATURE.test(s)) return { ok: false, code: 'SIGNATURE_MALFORMED' };
  // The legacy formula has no nonce; an absent nonce is checked later against that option.
  if (n !== undefined && !NONCE.test(n)) return { ok: false, code: 'SIGNATURE_MALFORMED' };
  return { ok: true, value: { timestamp: t, nonce: n ?? '', signature: s.toLowerCase() } };
}

export function signatureMatches(expected: string, presented: string): boolean {
  return constantTimeEqual(Buffer.from(expected, 'hex'), Buffer.from(presented, 'hex'));
}

/** Within the skew window of `nowMs`? */
export function timestampFresh(timestamp: string, nowMs: number, skewS = SIGNATURE_SKEW_S): boolean {
  const t = Number(timestamp);
  return Number.isSafeInteger(t) && Math.abs(nowMs / 1000 - t) <= skewS;
}

/**
 * Nonces seen within the skew window, per process (replicas do not share them; docs/gateway.md).
 * Bounded by an estimate of the memory it holds (`maxBytes`) as well as by count: past either, the
 * oldest entries go. A nonce dropped before its time must not become replayable, so the cache
 * remembers the newest timestamp it has dropped early and refuses (`covers` is false) any signature
 * not newer than that. The same floor starts at the second the process started: a restarted
 * gateway has forgotten every nonce, and refuses what was signed before it existed.
 */
export class NonceCache {
  #seen = new Map<string, { expires: number; timestamp: number }>();
  #bytes = 0;
  #floorS: number;
  /** what one entry costs, roughly: map slot, entry object and the key string (two bytes a character at worst) */
  static entryBytes(key: string): number {
    return 160 + 2 * key.length;
  }

  constructor(
    private readonly ttlMs = SIGNATURE_SKEW_S * 1000 * 2,
    private readonly capacity = 1_000_000,
    private readonly maxBytes = 64 * 1024 * 1024,
    startedAtMs = -Infinity,
  ) {
    this.#floorS = Math.floor(startedAtMs / 1000);
  }

  /** False when a signature with this timestamp (unix seconds) may repeat a nonce already forgotten. */
  covers(timestampS: number): boolean {
    return timestampS >= this.#floorS;
  }

  /** Records the nonce; false when it was already seen (a replay). `timestampS` is the signature's. */
  checkAndAdd(keyId: string, nonce: string, nowMs: number, timestampS = Math.floor(nowMs / 1000)): boolean {
    const k = `${keyId}:${nonce}`;
    const prev = this.#seen.get(k);
    if (prev !== undefined && prev.expires > nowMs) return false;
    if (prev !== undefined) this.#drop(k);
    this.#seen.set(k, { expires: nowMs + this.ttlMs, timestamp: timestampS });
    this.#bytes += NonceCache.entryBytes(k);
    this.#evict(nowMs);
    return true;
  }

  #drop(k: string): void {
    this.#seen.delete(k);
    this.#bytes -= NonceCache.entryBytes(k);
  }

  #evict(nowMs: number): void {
    for (const [k, e] of this.#seen) {
      const full = this.#seen.size > this.capacity || this.#bytes > this.maxBytes;
      if (!full && e.expires > nowMs) break;
      if (e.expires > nowMs) this.#floorS = Math.max(this.#floorS, e.timestamp + 1);
      this.#drop(k);
    }
  }

  get size(): number {
    return this.#seen.size;
  }

  get bytes(): number {
    return this.#bytes;
  }
}

/** Fresh headers for a request: what `dsk sign` prints and the client helper sends. */
export function signHeaders(o: { apiKey: string; apiSecret: string; keyId: string; method: string; path: string; body?: Buffer | string; nowMs?: number; nonce?: string }): Record<string, string> {
  const timestamp = String(Math.floor((o.nowMs ?? Date.now()) / 1000));
  const nonce = o.nonce ?? crypto.randomBytes(16).toString('base64url');
  const signature = computeSignature(o.apiSecret, { timestamp, nonce, method: o.method, path: o.path, bodySha256: bodyHash(o.body ?? ''), keyId: o.keyId });
  return { Authorization: `Bearer ${o.apiKey}`, 'X-Timestamp': timestamp, 'X-Nonce': nonce, 'X-Signature': signature };
}
