/**
 * Nonces of signed requests on PostgreSQL (migration 7): the UNLOGGED `nonces` table every gateway
 * of the home writes. The primary key makes check and insert one atomic statement across hosts: a
 * new row, or an expired one replaced, is one changed row; a live one is a replay.
 */
import type { NonceClaims } from '../store.js';
import type { Q } from './query.js';

const PRUNE_EVERY_MS = 10_000;

export class PgNonces implements NonceClaims {
  #prunedAt = 0;
  constructor(private readonly q: Q) {}

  async claim(keyId: string, nonce: string, expiresAt: number, now: number): Promise<boolean> {
    if (now - this.#prunedAt > PRUNE_EVERY_MS) {
      this.#prunedAt = now;
      await this.q.run('DELETE FROM nonces WHERE expires_at <= $1', [now]);
    }
    const n = await this.q.run(
      `INSERT INTO nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3)
       ON CONFLICT (key_id, nonce) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE nonces.expires_at <= $4`,
      [keyId, nonce, expiresAt, now],
    );
    return n === 1;
  }
}
