/**
 * The library surface of `dsk` (`import … from 'dsk'`): what a client of the gateway needs, and
 * nothing that opens a home, unseals a master key or touches SQLite.
 *
 *   generateApiKey            the seed's generate_api_key(master_key, salt), bit-for-bit
 *   formatApiKey, parseApiKey the key text dsk_<id>_<secret>_<check> (see domain/key-text.ts)
 *   signedFetch, signHeaders  request signatures, version 1 (see gateway/signature.ts);
 *                             also importable alone as 'dsk/client'
 *
 * Everything else under src/ is internal and may change between releases.
 */
export { generateApiKey } from './domain/derivation.js';
export { checksum, formatApiKey, isKeyId, parseApiKey, type ParsedKey } from './domain/key-text.js';
export { bodyHash, canonicalString, computeSignature, signedFetch, signHeaders } from './gateway/client.js';
