/**
 * The one check of every command-line value that names a key by id (keys show|revoke, rotate,
 * export, token issue, audit query --key, …): a key pasted in its place is refused naming only its
 * id, never echoing the secret part, on stderr, in --json errors or in the audit log (the command
 * stops before it opens the home).
 */
import { assertKeyId } from '../domain/key-text.js';

/** Returns `text` if it is a key id; throws exit 2 otherwise (ERR_KEY_PASTED for a key or secret). */
export function keyIdArg(text: string, flag?: string): string {
  assertKeyId(text, flag ? `key id for ${flag}` : 'key id');
  return text;
}
