/**
 * The seed's key derivation, bit-for-bit:
 *
 *   kdf = PBKDF2HMAC(algorithm=SHA256, length=32, salt=salt, iterations=100000)
 *   key = kdf.derive(master_key)
 *   return hmac.new(key, msg=b'deepseek_api_key', digestmod=sha256).hexdigest()
 *
 * The first step is pluggable so an HSM can run it inside the token (the master key never leaves).
 */
import { hmacSha256, pbkdf2Sha256, wipe } from '../kernel/crypto.js';

export const SEED_ITERATIONS = 100_000;
export const SEED_MESSAGE = Buffer.from('deepseek_api_key');
export const SALT_BYTES = 16;

/** Second step of the seed function, given the PBKDF2 output. */
export function finishSeedDerivation(stretched: Buffer): string {
  const out = hmacSha256(stretched, SEED_MESSAGE).toString('hex');
  wipe(stretched);
  return out;
}

/** generate_api_key(master_key, salt) with a master key held in memory. */
export async function generateApiKey(masterKey: Buffer, salt: Buffer): Promise<string> {
  return finishSeedDerivation(await pbkdf2Sha256(masterKey, salt, SEED_ITERATIONS, 32));
}
