/**
 * The only module that talks to pkcs11js (PKCS#11 v2.40, OASIS). It loads a module, finds a token
 * by its label (never by slot number: SoftHSM2 and many HSMs renumber slots), logs in once, and
 * offers the few operations dsk needs on a secret-key object: generate, import, find, check,
 * HMAC-SHA256 (CKM_SHA256_HMAC) and destroy. Every PKCS#11 failure becomes a DskError naming the
 * function and its return value (`C_Login: CKR_PIN_INCORRECT`) with the brief's exit code.
 *
 * One loaded module per process and path, reference-counted, so two masters in one process (the
 * demo, or `hsm recover`) share one C_Initialize; the last release calls C_Finalize, and so do
 * SIGINT and SIGTERM while a module is loaded.
 */
import fs from 'node:fs';
import path from 'node:path';
import pkcs11js from 'pkcs11js';
import { AuthError, ConflictError, IntegrityError, NotFoundError, UnavailableError, type DskError } from '../../kernel/errors.js';

const P = pkcs11js;
type Handle = Buffer;

/** The mechanisms dsk needs, by name (for messages and `hsm info`). */
export const NEEDED_MECHANISMS = { CKM_SHA256_HMAC: P.CKM_SHA256_HMAC, CKM_GENERIC_SECRET_KEY_GEN: P.CKM_GENERIC_SECRET_KEY_GEN } as const;
export type MechanismName = keyof typeof NEEDED_MECHANISMS;

const CKR_NAMES = new Map<number, string>();
for (const [k, v] of Object.entries(P)) if (k.startsWith('CKR_') && typeof v === 'number' && !CKR_NAMES.has(v)) CKR_NAMES.set(v, k);

function ckrName(e: unknown): string {
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
      return new AuthError('ERR_PIN', `${where}: wrong user PIN`, { hint: 'check the PIN; each wrong attempt counts against the token, which locks after too many' });
    case 'CKR_PIN_LOCKED':
      return new AuthError('ERR_PIN_LOCKED', `${where}: the user PIN is locked`, { hint: 'the security officer must unlock or reset the user PIN (e.g. softhsm2-util / the vendor tool)' });
    case 'CKR_PIN_LEN_RANGE':
    case 'CKR_PIN_INVALID':
      return new AuthError('ERR_PIN', `${where}: the PIN is not acceptable to this token`, { hint: 'check the PIN file or DSK_HSM_PIN' });
    case 'CKR_MECHANISM_INVALID':
      return new UnavailableError('ERR_MECHANISM', `${where}: the token does not support this mechanism`, { hint: 'run dsk hsm info to see what the token supports' });
    case 'CKR_TOKEN_NOT_PRESENT':
    case 'CKR_DEVICE_REMOVED':
    case 'CKR_SLOT_ID_INVALID':
      return new NotFoundError('ERR_TOKEN_NOT_FOUND', `${where}: the token is gone`, { hint: 'reconnect the token and retry' });
    default:
      return new UnavailableError('ERR_PKCS11', `${where}`, { hint: 'run dsk hsm info to check the module and token' });
  }
}

function call<T>(fn: string, f: () => T, context = ''): T {
  try {
    return f();
  } catch (e) {
    throw pkcs11Error(e, fn, context);
  }
}

const trim = (s: string) => s.replace(/[\s\0]+$/, '');

// ---- the process-wide module registry -------------------------------------------------------

interface Loaded {
  lib: pkcs11js.PKCS11;
  refs: number;
  path: string;
}
const loaded = new Map<string, Loaded>();
let signalsInstalled = false;

function finalizeAll(): void {
  for (const l of loaded.values()) {
    try {
      l.lib.C_Finalize();
    } catch {
      // already finalized or the module is broken: nothing more to release
    }
  }
  loaded.clear();
}

function onSignal(sig: NodeJS.Signals): void {
  finalizeAll();
  process.stderr.write(`dsk: error: interrupted (${sig}); the PKCS#11 module was finalized\n`);
  process.exit(sig === 'SIGINT' ? 130 : 143);
}

function installSignals(): void {
  if (signalsInstalled) return;
  signalsInstalled = true;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function uninstallSignals(): void {
  if (!signalsInstalled || loaded.size) return;
  signalsInstalled = false;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}

/** Checks the module path before any dlopen: missing file → 4. */
export function assertModuleFile(modulePath: string): string {
  const abs = path.resolve(modulePath);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch {
    throw new NotFoundError('ERR_MODULE_NOT_FOUND', `PKCS#11 module ${abs}: no such file`, { hint: 'give the path of the vendor library, e.g. /usr/lib/softhsm/libsofthsm2.so' });
  }
  if (!st.isFile()) throw new NotFoundError('ERR_MODULE_NOT_FOUND', `PKCS#11 module ${abs} is not a file`);
  return abs;
}

/** A loaded and initialized PKCS#11 module. Release with `release()` (C_Finalize on the last one). */
export class Pkcs11Module {
  #l: Loaded | null;
  private constructor(l: Loaded) {
    this.#l = l;
  }

  static load(modulePath: string): Pkcs11Module {
    const abs = assertModuleFile(modulePath);
    const have = loaded.get(abs);
    if (have) {
      have.refs++;
      return new Pkcs11Module(have);
    }
    const lib = new P.PKCS11();
    try {
      lib.load(abs);
    } catch (e) {
      const why = String((e as Error).message ?? e).replace(abs + ': ', '');
      throw new UnavailableError('ERR_MODULE_LOAD', `${abs} is not a loadable PKCS#11 library (${why})`, { hint: 'check the path points at the vendor PKCS#11 module (.so), built for this machine' });
    }
    try {
      lib.C_Initialize();
    } catch (e) {
      try {
        lib.close();
      } catch {
        // the library is unusable either way
      }
      throw pkcs11Error(e, 'C_Initialize', abs);
    }
    const l: Loaded = { lib, refs: 1, path: abs };
    loaded.set(abs, l);
    installSignals();
    return new Pkcs11Module(l);
  }

  get path(): string {
    return this.#lib().path;
  }
  #lib(): Loaded {
    if (!this.#l) throw new Error('internal: PKCS#11 module already released');
    return this.#l;
  }
  get lib(): pkcs11js.PKCS11 {
    return this.#lib().lib;
  }

  info() {
    const i = call('C_GetInfo', () => this.lib.C_GetInfo());
    return {
      cryptoki_version: `${i.cryptokiVersion.major}.${i.cryptokiVersion.minor}`,
      manufacturer: trim(i.manufacturerID),
      library_description: trim(i.libraryDescription),
      library_version: `${i.libraryVersion.major}.${i.libraryVersion.minor}`,
    };
  }

  /** Every slot with a token: its label, serial, model and whether it is initialized. */
  tokens() {
    const slots = call('C_GetSlotList', () => this.lib.C_GetSlotList(true));
    return slots.map((slot) => {
      const t = call('C_GetTokenInfo', () => this.lib.C_GetTokenInfo(slot));
      return {
        slot,
        slot_id: slot.length >= 8 ? slot.readBigUInt64LE(0).toString() : slot.toString('hex'),
        label: trim(t.label),
        manufacturer: trim(t.manufacturerID),
        model: trim(t.model),
        serial: trim(t.serialNumber),
        initialized: (t.flags & P.CKF_TOKEN_INITIALIZED) !== 0,
        login_required: (t.flags & P.CKF_LOGIN_REQUIRED) !== 0,
        user_pin_locked: (t.flags & P.CKF_USER_PIN_LOCKED) !== 0,
        user_pin_final_try: (t.flags & P.CKF_USER_PIN_FINAL_TRY) !== 0,
      };
    });
  }

  /** The slot holding the token with this label; 4 with the labels that exist if none does. */
  findToken(label: string) {
    const all = this.tokens().filter((t) => t.initialized);
    const hits = all.filter((t) => t.label === label);
    if (!hits.length)
      throw new NotFoundError('ERR_TOKEN_NOT_FOUND', `no token labelled '${label}' in ${this.path}`, { hint: all.length ? `tokens present: ${all.map((t) => `'${t.label}'`).join(', ')}` : 'the module reports no token; initialize one (e.g. softhsm2-util --init-token --free --label ...)' });
    if (hits.length > 1) throw new ConflictError('ERR_TOKEN_AMBIGUOUS', `${hits.length} tokens are labelled '${label}'`, { hint: 'relabel one of them so the label is unique' });
    return hits[0];
  }

  mechanisms(slot: Handle): Record<MechanismName, boolean> {
    const list = new Set(call('C_GetMechanismList', () => this.lib.C_GetMechanismList(slot)));
    return Object.fromEntries(Object.entries(NEEDED_MECHANISMS).map(([n, v]) => [n, list.has(v)])) as Record<MechanismName, boolean>;
  }

  /** Opens a read-write session on the token labelled `label`, checking the mechanisms dsk needs. */
  openSession(label: string, need: MechanismName[]): Pkcs11Session {
    const t = this.findToken(label);
    const mechs = this.mechanisms(t.slot);
    for (const m of need)
      if (!mechs[m]) throw new UnavailableError('ERR_MECHANISM', `token '${label}' does not support ${m}`, { hint: 'dsk needs CKM_SHA256_HMAC (and CKM_GENERIC_SECRET_KEY_GEN to generate the key inside the token)' });
    const h = call('C_OpenSession', () => this.lib.C_OpenSession(t.slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION));
    return new Pkcs11Session(this, h, t);
  }

  /** Drops this reference; the last one finalizes the module. Idempotent. */
  release(): void {
    const l = this.#l;
    if (!l) return;
    this.#l = null;
    if (--l.refs > 0) return;
    loaded.delete(l.path);
    try {
      l.lib.C_Finalize();
    } catch {
      // a module that fails to finalize has nothing left for us to release
    }
    uninstallSignals();
  }
}

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
    readonly token: ReturnType<Pkcs11Module['tokens']>[number],
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
        throw new AuthError(err.code, err.message, { hint: 'the token reports one try left before the user PIN locks: check the PIN before trying again' });
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
