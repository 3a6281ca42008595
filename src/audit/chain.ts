/**
 * The audit chain's formula, the one definition the writer, the verifier (and its worker threads)
 * and the archive all use:
 *
 *   hash[n] = SHA-256(JSON [seq, ts, action, actor, source_ip, key_id, details, hash[n-1]])   hex
 *   mac[n]  = HMAC-SHA256(K_audit, hash[n] as 64 ASCII hex characters)                          hex
 *   hash[0] = 64 × "0" (genesis)          K_audit = HMAC(master, "dsk/v1/audit-chain")
 *
 * `details` is canonical JSON text (keys sorted, undefined dropped), so the same event always
 * hashes the same. The unkeyed hash shows any edit, deletion, insertion or reordering to anyone;
 * the MAC stops a writer of the file who cannot unseal from recomputing a consistent chain.
 *
 * Speed matters here: `dsk audit verify` hashes millions of rows, so both functions use one-shot
 * hashing (crypto.hash, Node >= 20.12, several times cheaper per call than createHash) and the MAC
 * reuses precomputed HMAC pads (RFC 2104) instead of a new Hmac object per row.
 */
import crypto from 'node:crypto';
import { hmacSha256 } from '../kernel/crypto.js';

export const GENESIS_HASH = '0'.repeat(64);

/**
 * The only actions ever written without the audit key: refusals recorded before anyone unsealed
 * (a failed unseal; an operator refused by the role checks, which run before custodians are asked
 * for a passphrase). Every other row must carry a MAC: `dsk audit verify` names an unkeyed row with
 * any other action as `forged`, and a keyed writer refuses to chain onto one without recording the
 * break (writer.ts). A closed list, so a writer of the file cannot pass off a deleted or edited
 * row as "written while sealed".
 */
export const UNKEYED_ACTIONS: ReadonlySet<string> = new Set(['UNSEAL_FAILURE', 'OPERATOR_DENIED']);

const oneShot = (crypto as unknown as { hash?: (alg: string, data: string | Buffer, enc: string) => string | Buffer }).hash;

function sha256(data: string | Buffer, enc: 'hex'): string;
function sha256(data: string | Buffer, enc: 'buffer'): Buffer;
function sha256(data: string | Buffer, enc: 'hex' | 'buffer'): string | Buffer {
  if (oneShot) return oneShot('sha256', data, enc);
  const h = crypto.createHash('sha256').update(data);
  return enc === 'hex' ? h.digest('hex') : h.digest();
}

/** hash[n] over a row's fields and its predecessor's hash. */
export function chainHash(seq: number, ts: string, action: string, actor: string, sourceIp: string | null, keyId: string | null, details: string, prevHash: string): string {
  return sha256(JSON.stringify([seq, ts, action, actor, sourceIp, keyId, details, prevHash]), 'hex');
}

export function rowHash(r: { seq: number; ts: string; action: string; actor: string; source_ip: string | null; key_id: string | null; details: string; prev_hash: string }): string {
  return chainHash(r.seq, r.ts, r.action, r.actor, r.source_ip, r.key_id, r.details, r.prev_hash);
}

/** mac[n] for one row. */
export function rowMac(auditKey: Buffer, hash: string): string {
  return hmacSha256(auditKey, hash).toString('hex');
}

/** The same MAC as rowMac, with the key's pads computed once (verify MACs every row of the chain). */
export class ChainMac {
  #inner: Buffer;
  #outer: Buffer;
  constructor(key: Buffer) {
    const k = Buffer.alloc(64);
    (key.length > 64 ? sha256(key, 'buffer') : key).copy(k);
    this.#inner = Buffer.alloc(64 + 64);
    this.#outer = Buffer.alloc(64 + 32);
    for (let i = 0; i < 64; i++) {
      this.#inner[i] = k[i] ^ 0x36;
      this.#outer[i] = k[i] ^ 0x5c;
    }
    k.fill(0);
  }

  /** rowMac(key, hashHex) for a hash of 64 hex characters (verify calls it only on checked hashes). */
  ofHash(hashHex: string): string {
    if (hashHex.length !== 64) throw new Error('internal: ChainMac takes a 64-character hash');
    this.#inner.write(hashHex, 64, 'latin1');
    sha256(this.#inner, 'buffer').copy(this.#outer, 64);
    return sha256(this.#outer, 'hex');
  }

  wipe(): void {
    this.#inner.fill(0);
    this.#outer.fill(0);
  }
}

export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v ?? null);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}
