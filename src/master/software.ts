import { hmacSha256, pbkdf2Sha256, wipe } from '../kernel/crypto.js';
import type { MasterKey } from './backend.js';

/** Software backend: the rebuilt master key lives in process memory until close(). */
export class SoftwareMasterKey implements MasterKey {
  readonly backend = 'software' as const;
  #key: Buffer | null;
  constructor(key: Buffer) {
    this.#key = Buffer.from(key);
  }
  #k(): Buffer {
    if (!this.#key) throw new Error('master key already closed');
    return this.#key;
  }
  stretch(salt: Buffer, iterations: number): Promise<Buffer> {
    return pbkdf2Sha256(this.#k(), salt, iterations, 32);
  }
  async hmac(data: Buffer): Promise<Buffer> {
    return hmacSha256(this.#k(), data);
  }
  async close(): Promise<void> {
    wipe(this.#key);
    this.#key = null;
  }
}
