/**
 * PKCS#11 failures as DskErrors. Every message names the function and its return value as the
 * specification spells them (`C_Login: CKR_PIN_INCORRECT`), so an operator can look the pair up in
 * the vendor's documentation, and each return value maps to the brief's exit code for that kind of
 * failure (wrong PIN 3, token gone 4, mechanism missing 7).
 */
import pkcs11js from 'pkcs11js';
import { AuthError, NotFoundError, UnavailableError, type DskError } from '../../kernel/errors.js';

const CKR_NAMES = new Map<number, string>();
for (const [k, v] of Object.entries(pkcs11js)) if (k.startsWith('CKR_') && typeof v === 'number' && !CKR_NAMES.has(v)) CKR_NAMES.set(v, k);

/** The CKR_ name of a pkcs11js error (its numeric code, else the first word of its message). */
export function ckrName(e: unknown): string {
  const code = (e as { code?: number }).code;
  return (typeof code === 'number' && CKR_NAMES.get(code)) || String((e as Error).message ?? e).split(/\s/)[0] || 'CKR_GENERAL_ERROR';
}

/** Maps a pkcs11js error to a DskError; `fn` names the PKCS#11 function when the error does not. */
export function pkcs11Error(e: unknown, fn: string, context = ''): DskError {
  if ((e as { exitCode?: number }).exitCode !== undefined) return e as DskError;
  const ckr = ckrName(e);
  const where = `${(e as { method?: string }).method || fn}: ${ckr}${context ? ` (${context})` : ''}`;
  switch (ckr) {
    case 'CKR_PIN_INCORRECT':
      return new AuthError('ERR_PIN', `${where}: wrong user PIN`, { hint: 'check the PIN; each wrong attempt counts against the token, which locks after too many', cause: e });
    case 'CKR_PIN_LOCKED':
      return new AuthError('ERR_PIN_LOCKED', `${where}: the user PIN is locked`, { hint: 'the security officer must unlock or reset the user PIN (e.g. softhsm2-util / the vendor tool)', cause: e });
    case 'CKR_PIN_LEN_RANGE':
    case 'CKR_PIN_INVALID':
      return new AuthError('ERR_PIN', `${where}: the PIN is not acceptable to this token`, { hint: 'check the PIN file or DSK_HSM_PIN', cause: e });
    case 'CKR_MECHANISM_INVALID':
      return new UnavailableError('ERR_MECHANISM', `${where}: the token does not support this mechanism`, { hint: 'run dsk hsm info to see what the token supports', cause: e });
    case 'CKR_TOKEN_NOT_PRESENT':
    case 'CKR_DEVICE_REMOVED':
    case 'CKR_SLOT_ID_INVALID':
      return new NotFoundError('ERR_TOKEN_NOT_FOUND', `${where}: the token is gone`, { hint: 'reconnect the token and retry', cause: e });
    default:
      return new UnavailableError('ERR_PKCS11', `${where}`, { hint: 'run dsk hsm info to check the module and token', cause: e });
  }
}

/** Runs one PKCS#11 call, turning its failure into a DskError that names `fn`. */
export function call<T>(fn: string, f: () => T, context = ''): T {
  try {
    return f();
  } catch (e) {
    throw pkcs11Error(e, fn, context);
  }
}
