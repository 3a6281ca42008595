/**
 * Thin wrappers over node:crypto (OpenSSL): AES-256-GCM (NIST SP 800-38D), HMAC-SHA256 (RFC 2104),
 * PBKDF2-HMAC-SHA256 (RFC 8018) and scrypt (RFC 7914). Nothing here is hand-rolled crypto; the
 * wrappers fix the parameters dsk uses and the sealed-box layout so every caller agrees on them.
 */
import crypto from 'node:crypto';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(crypto.pbkdf2);

export const AES_KEY_BYTES = 32;
export const GCM_IV_BYTES = 12;
export const GCM_TAG_BYTES = 16;

export function sha256(data: Buffer | string): Buffer {
  return crypto.createHash('sha256').update(data).digest();
}

export function sha256Hex(data: Buffer | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

export function hmacSha256(key: Buffer, data: Buffer | string): Buffer {
  return crypto.createHmac('sha256', key).update(data).digest();
}

export function pbkdf2Sha256(password: Buffer, salt: Buffer, iterations: number, length = 32): Promise<Buffer> {
  return pbkdf2Async(password, salt, iterations, length, 'sha256');
}

export function pbkdf2Sha256Sync(password: Buffer, salt: Buffer, iterations: number, length = 32): Buffer {
  return crypto.pbkdf2Sync(password, salt, iterations, length, 'sha256');
}

export function scrypt(password: Buffer, salt: Buffer, N: number, r: number, p: number, length = 32): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    crypto.scrypt(password, salt, length, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) =>
      err ? reject(err) : resolve(key),
    ),
  );
}

/** Constant-time comparison; unequal lengths compare false without leaking where they differ. */
export function constantTimeEqual(a: Buffer | string, b: Buffer | string): boolean {
  const ab = typeof a === 'string' ? Buffer.from(a) : a;
  const bb = typeof b === 'string' ? Buffer.from(b) : b;
  if (ab.length !== bb.length) {
    crypto.timingSafeEqual(ab, ab);
    return false;
  }
  return crypto.timingSafeEqual(ab, bb);
}

/** AES-256-GCM encrypt; returns the parts separately (used by vector tests). */
export function gcmEncrypt(key: Buffer, iv: Buffer, plaintext: Buffer, aad: Buffer): { ciphertext: Buffer; tag: Buffer } {
  const c = crypto.createCipheriv('aes-256-gcm', key, iv, { authTagLength: GCM_TAG_BYTES });
  c.setAAD(aad);
  const ciphertext = Buffer.concat([c.update(plaintext), c.final()]);
  return { ciphertext, tag: c.getAuthTag() };
}

/** AES-256-GCM decrypt; returns null on any authentication failure (never throws details). */
export function gcmDecrypt(key: Buffer, iv: Buffer, ciphertext: Buffer, tag: Buffer, aad: Buffer): Buffer | null {
  if (key.length !== AES_KEY_BYTES || tag.length !== GCM_TAG_BYTES || iv.length === 0) return null;
  try {
    const d = crypto.createDecipheriv('aes-256-gcm', key, iv, { authTagLength: GCM_TAG_BYTES });
    d.setAAD(aad);
    d.setAuthTag(tag);
    return Buffer.concat([d.update(ciphertext), d.final()]);
  } catch {
    return null;
  }
}

/** Sealed box: iv(12) || ciphertext || tag(16), fresh random IV each time. */
export function seal(key: Buffer, plaintext: Buffer, aad: Buffer, iv: Buffer = crypto.randomBytes(GCM_IV_BYTES)): Buffer {
  const { ciphertext, tag } = gcmEncrypt(key, iv, plaintext, aad);
  return Buffer.concat([iv, ciphertext, tag]);
}

export function open(key: Buffer, box: Buffer, aad: Buffer): Buffer | null {
  if (box.length < GCM_IV_BYTES + GCM_TAG_BYTES) return null;
  const iv = box.subarray(0, GCM_IV_BYTES);
  const tag = box.subarray(box.length - GCM_TAG_BYTES);
  const ct = box.subarray(GCM_IV_BYTES, box.length - GCM_TAG_BYTES);
  return gcmDecrypt(key, iv, ct, tag, aad);
}

export function wipe(...bufs: (Buffer | undefined | null)[]): void {
  for (const b of bufs) b?.fill(0);
}
