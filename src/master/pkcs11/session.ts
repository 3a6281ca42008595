/**
 * One read-write session on a token and the few operations dsk needs on a secret-key object:
 * log in, find, generate, import, check its attributes, destroy, and HMAC-SHA256 (CKM_SHA256_HMAC)
 * computed by the token. Every failure names the PKCS#11 function and return value (errors.ts).
 */
import pkcs11js from 'pkcs11js';
import { AuthError, ConflictError, IntegrityError, NotFoundError } from '../../kernel/errors.js';
import { call, ckrName, pkcs11Error } from './errors.js';
import type { Pkcs11Module, TokenInfo } from './module.js';

const P = pkcs11js;
type Handle = Buffer;

/** Attributes of the master key object as dsk checks and reports them. */
export interface KeyAttributes {
  label: string;
  id: string;
  key_type: string;
  value_len: number;
  token: boolean;
  private: boolean;
  sensitive: boolean;
  extractable: boolean;
  always_sensitive: boolean;
  never_extractable: boolean;
  sign: boolean;
  verify: boolean;
  encrypt: boolean;
  decrypt: boolean;
  wrap: boolean;
  unwrap: boolean;
  derive: boolean;
}

/**
 * The template of the master key. Sign/verify only: the key can compute HMACs and nothing else,
 * and it can never be read out (sensitive, not extractable), wrapped, or used to derive keys.
 */
function keyTemplate(label: string, id: Buffer): pkcs11js.Template {
  return [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET },
    { type: P.CKA_TOKEN, value: true },
    { type: P.CKA_PRIVATE, value: true },
    { type: P.CKA_SENSITIVE, value: true },
    { type: P.CKA_EXTRACTABLE, value: false },
    { type: P.CKA_SIGN, value: true },
    { type: P.CKA_VERIFY, value: true },
    { type: P.CKA_ENCRYPT, value: false },
    { type: P.CKA_DECRYPT, value: false },
    { type: P.CKA_WRAP, value: false },
    { type: P.CKA_UNWRAP, value: false },
    { type: P.CKA_DERIVE, value: false },
    { type: P.CKA_MODIFIABLE, value: false },
    { type: P.CKA_LABEL, value: label },
    { type: P.CKA_ID, value: id },
  ];
}

export class Pkcs11Session {
  #h: Handle | null;
  constructor(
    readonly module: Pkcs11Module,
    handle: Handle,
    readonly token: TokenInfo,
  ) {
    this.#h = handle;
  }
  get #s(): Handle {
    if (!this.#h) throw new Error('internal: PKCS#11 session already closed');
    return this.#h;
  }

  /**
   * One C_Login attempt with the user PIN; never retried, so a wrong PIN costs the user exactly
   * the attempt they made. A PIN the token already reports locked is refused without trying.
   */
  login(pin: Buffer): void {
    const t = this.module.findToken(this.token.label);
    if (t.user_pin_locked) throw new AuthError('ERR_PIN_LOCKED', `token '${t.label}': the user PIN is locked`, { hint: 'the security officer must unlock or reset the user PIN' });
    try {
      this.module.lib.C_Login(this.#s, P.CKU_USER, pin.toString('utf8'));
    } catch (e) {
      if (ckrName(e) === 'CKR_USER_ALREADY_LOGGED_IN') return; // another session of this process logged in
      const err = pkcs11Error(e, 'C_Login');
      if (err.code === 'ERR_PIN' && this.#finalTry())
        throw new AuthError('ERR_PIN', err.message, { hint: 'the token reports one try left before the user PIN locks: check the PIN before trying again', cause: e });
      throw err;
    }
  }

  #finalTry(): boolean {
    try {
      return this.module.findToken(this.token.label).user_pin_final_try;
    } catch {
      return false;
    }
  }

  findKeys(label: string): Handle[] {
    const lib = this.module.lib;
    call('C_FindObjectsInit', () => lib.C_FindObjectsInit(this.#s, [{ type: P.CKA_CLASS, value: P.CKO_SECRET_KEY }, { type: P.CKA_LABEL, value: label }]));
    try {
      return call('C_FindObjects', () => lib.C_FindObjects(this.#s, 16));
    } finally {
      call('C_FindObjectsFinal', () => lib.C_FindObjectsFinal(this.#s));
    }
  }

  /** The one key object with this label: 4 if none, 6 if several. */
  findKey(label: string, id?: string): Handle {
    let hits = this.findKeys(label);
    if (id !== undefined && hits.length > 1) hits = hits.filter((h) => this.attributes(h).id === id);
    if (!hits.length)
      throw new NotFoundError('ERR_KEY_NOT_FOUND', `token '${this.token.label}' holds no key labelled '${label}'`, { hint: 'the token may have been reset or replaced; with recovery fragments run dsk hsm recover' });
    if (hits.length > 1) throw new ConflictError('ERR_KEY_AMBIGUOUS', `token '${this.token.label}' holds ${hits.length} keys labelled '${label}'`, { hint: 'remove the stray objects or use another key label' });
    return hits[0];
  }

  attributes(h: Handle): KeyAttributes {
    const lib = this.module.lib;
    const want = [
      P.CKA_LABEL, P.CKA_ID, P.CKA_KEY_TYPE, P.CKA_VALUE_LEN, P.CKA_TOKEN, P.CKA_PRIVATE, P.CKA_SENSITIVE, P.CKA_EXTRACTABLE,
      P.CKA_ALWAYS_SENSITIVE, P.CKA_NEVER_EXTRACTABLE, P.CKA_SIGN, P.CKA_VERIFY, P.CKA_ENCRYPT, P.CKA_DECRYPT, P.CKA_WRAP, P.CKA_UNWRAP, P.CKA_DERIVE,
    ];
    const got = call('C_GetAttributeValue', () => lib.C_GetAttributeValue(this.#s, h, want.map((type) => ({ type }))));
    const v = new Map(got.map((a) => [a.type, a.value]));
    const b = (t: number) => (v.get(t)?.[0] ?? 0) !== 0;
    const n = (t: number) => {
      const x = v.get(t);
      return x && x.length ? Number(x.length >= 8 ? x.readBigUInt64LE(0) : x.readUInt32LE(0)) : 0;
    };
    const kt = n(P.CKA_KEY_TYPE);
    return {
      label: v.get(P.CKA_LABEL)?.toString('utf8') ?? '',
      id: v.get(P.CKA_ID)?.toString('hex') ?? '',
      key_type: kt === P.CKK_GENERIC_SECRET ? 'CKK_GENERIC_SECRET' : kt === P.CKK_SHA256_HMAC ? 'CKK_SHA256_HMAC' : `0x${kt.toString(16)}`,
      value_len: n(P.CKA_VALUE_LEN),
      token: b(P.CKA_TOKEN),
      private: b(P.CKA_PRIVATE),
      sensitive: b(P.CKA_SENSITIVE),
      extractable: b(P.CKA_EXTRACTABLE),
      always_sensitive: b(P.CKA_ALWAYS_SENSITIVE),
      never_extractable: b(P.CKA_NEVER_EXTRACTABLE),
      sign: b(P.CKA_SIGN),
      verify: b(P.CKA_VERIFY),
      encrypt: b(P.CKA_ENCRYPT),
      decrypt: b(P.CKA_DECRYPT),
      wrap: b(P.CKA_WRAP),
      unwrap: b(P.CKA_UNWRAP),
      derive: b(P.CKA_DERIVE),
    };
  }

  /**
   * Refuses (exit 5) a key object that could leave the token: it must be a token object,
   * sensitive and not extractable; a generated key must also never have been extractable.
   * An imported (recovered) key was outside the token once by definition, so CKA_NEVER_EXTRACTABLE
   * is false for it; master_key.hsm records that origin and `hsm info` reports it.
   */
  checkKey(h: Handle, origin: 'generated' | 'imported'): KeyAttributes {
    const a = this.attributes(h);
    const bad: string[] = [];
    if (!a.token) bad.push('CKA_TOKEN is false');
    // A public key object can be used without logging in: anyone with the token could derive keys.
    if (!a.private) bad.push('CKA_PRIVATE is false');
    if (!a.sensitive) bad.push('CKA_SENSITIVE is false');
    if (a.extractable) bad.push('CKA_EXTRACTABLE is true');
    // Derivation mechanisms such as CKM_CONCATENATE_BASE_AND_DATA can copy the value into a new,
    // extractable key, so a key that may derive is as good as extractable.
    if (a.derive) bad.push('CKA_DERIVE is true');
    if (origin === 'generated' && !a.never_extractable) bad.push('CKA_NEVER_EXTRACTABLE is false');
    if (!a.sign) bad.push('CKA_SIGN is false');
    if (bad.length)
      throw new IntegrityError('ERR_KEY_UNSAFE', `key '${a.label}' in token '${this.token.label}' has unsafe attributes: ${bad.join(', ')}`, { hint: 'the key may have been exposed; rotate to a new master key (new home) and investigate' });
    return a;
  }

  generateKey(label: string, id: Buffer): Handle {
    return call('C_GenerateKey', () =>
      this.module.lib.C_GenerateKey(this.#s, { mechanism: P.CKM_GENERIC_SECRET_KEY_GEN }, [...keyTemplate(label, id), { type: P.CKA_VALUE_LEN, value: 32 }]),
    );
  }

  /** Imports raw key bytes as a sensitive, non-extractable object (recovery). The caller wipes `value`. */
  importKey(label: string, id: Buffer, value: Buffer): Handle {
    return call('C_CreateObject', () => this.module.lib.C_CreateObject(this.#s, [...keyTemplate(label, id), { type: P.CKA_VALUE, value }]));
  }

  destroy(h: Handle): void {
    call('C_DestroyObject', () => this.module.lib.C_DestroyObject(this.#s, h));
  }

  /** HMAC-SHA256 inside the token: C_SignInit + C_Sign with CKM_SHA256_HMAC. */
  hmac(key: Handle, data: Buffer, out: Buffer = Buffer.alloc(32)): Buffer {
    const lib = this.module.lib;
    const s = this.#s;
    try {
      lib.C_SignInit(s, { mechanism: P.CKM_SHA256_HMAC }, key);
      return lib.C_Sign(s, data, out);
    } catch (e) {
      throw pkcs11Error(e, 'C_Sign');
    }
  }

  close(): void {
    const h = this.#h;
    if (!h) return;
    this.#h = null;
    try {
      this.module.lib.C_CloseSession(h);
    } catch {
      // C_Finalize closes it anyway
    }
  }
}
