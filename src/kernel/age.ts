/**
 * Encryption of a whole file to one or more recipients, in the age format
 * (https://age-encryption.org/v1) through the `age-encryption` package (typage, by age's author).
 *
 * Why age: it is a published, stable file format with a reference CLI, so an operator can check or
 * decrypt a dsk backup with the stock `age -d -i key.txt` without dsk; recipients are public keys
 * (`age1…`), so the machine that takes backups never holds the key that opens them; the payload is
 * authenticated in 64 KiB chunks (ChaCha20-Poly1305 STREAM), so a flipped or cut byte fails the
 * decryption rather than yielding altered plaintext; and the package streams, with no native code.
 */
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import type { Encrypter } from 'age-encryption';
import { AuthError, IntegrityError, UsageError } from './errors.js';

export const AGE_MAGIC = 'age-encryption.org/v1\n';

export function isAgeFile(head: Buffer): boolean {
  return head.subarray(0, AGE_MAGIC.length).toString('latin1') === AGE_MAGIC;
}

/** Loaded on first use: a plain backup or restore never pays for it. */
const age = () => import('age-encryption');

/** Checks recipients before any work (exit 2 naming the bad one). */
export async function ageEncrypter(recipients: string[]): Promise<Encrypter> {
  const e = new (await age()).Encrypter();
  for (const r of recipients) {
    try {
      if (!/^age1[0-9a-z]+$/.test(r)) throw new Error('not an age1… recipient');
      e.addRecipient(r);
    } catch {
      throw new UsageError('ERR_RECIPIENT', `invalid age recipient '${r.slice(0, 80)}': expected a public key starting with age1`, { hint: 'create a key pair with: age-keygen -o backup-key.txt (the recipient is the "public key" line)' });
    }
  }
  return e;
}

export async function* encryptStream(e: Encrypter, src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const out = await e.encrypt(Readable.toWeb(Readable.from(src)) as unknown as ReadableStream<Uint8Array>);
  yield* out as unknown as WebReadableStream<Uint8Array>;
}

/** Decrypts with the identity file's keys; a wrong key is exit 3, a damaged file exit 5. */
export async function* decryptStream(identityText: string, src: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const d = new (await age()).Decrypter();
  const ids = identityText.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  try {
    if (!ids.length) throw new Error('no key');
    for (const id of ids) d.addIdentity(id);
  } catch {
    throw new UsageError('ERR_IDENTITY', 'the identity file holds no valid age secret key (AGE-SECRET-KEY-1…)', { hint: 'give the file age-keygen wrote' });
  }
  let out: WebReadableStream<Uint8Array>;
  try {
    out = (await d.decrypt(Readable.toWeb(Readable.from(src)) as unknown as ReadableStream<Uint8Array>)) as unknown as WebReadableStream<Uint8Array>;
  } catch (e) {
    throw decryptError(e);
  }
  try {
    yield* out;
  } catch (e) {
    throw decryptError(e);
  }
}

function decryptError(e: unknown): Error {
  if (e instanceof AuthError || e instanceof IntegrityError) return e;
  if (/no identity matched/.test((e as Error)?.message ?? ''))
    return new AuthError('ERR_WRONG_IDENTITY', 'the backup is encrypted to another recipient: no key in the identity file opens it', { hint: 'give the identity file whose public key the backup was encrypted to' });
  return new IntegrityError('ERR_BACKUP_DAMAGED', `the encrypted backup is damaged or truncated (${(e as Error)?.message ?? 'decryption failed'}); nothing was restored`, { hint: 'use another copy of the backup' });
}
