/**
 * Loading a PKCS#11 module (PKCS#11 v2.40, OASIS) through pkcs11js and finding a token in it: by
 * its label, never by slot number (SoftHSM2 and many HSMs renumber slots). C_Initialize runs once
 * per library path and process, C_Finalize on the last release (see registry.ts); the session and
 * the key operations are in session.ts, the error mapping in errors.ts.
 */
import fs from 'node:fs';
import path from 'node:path';
import pkcs11js from 'pkcs11js';
import { ConflictError, NotFoundError, UnavailableError } from '../../kernel/errors.js';
import { call, pkcs11Error } from './errors.js';
import { addLoaded, findLoaded, releaseLoaded, type LoadedModule } from './registry.js';
import { Pkcs11Session } from './session.js';

const P = pkcs11js;
type Handle = Buffer;

/** The mechanisms dsk needs, by name (for messages and `hsm info`). */
export const NEEDED_MECHANISMS = { CKM_SHA256_HMAC: P.CKM_SHA256_HMAC, CKM_GENERIC_SECRET_KEY_GEN: P.CKM_GENERIC_SECRET_KEY_GEN } as const;
export type MechanismName = keyof typeof NEEDED_MECHANISMS;

/** A token as C_GetTokenInfo describes it. */
export interface TokenInfo {
  slot: Handle;
  slot_id: string;
  label: string;
  manufacturer: string;
  model: string;
  serial: string;
  initialized: boolean;
  login_required: boolean;
  user_pin_locked: boolean;
  user_pin_final_try: boolean;
}

const trim = (s: string) => s.replace(/[\s\0]+$/, '');

/** Checks the module path before any dlopen: missing file → 4. */
export function assertModuleFile(modulePath: string): string {
  const abs = path.resolve(modulePath);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch (e) {
    throw new NotFoundError('ERR_MODULE_NOT_FOUND', `PKCS#11 module ${abs}: no such file`, { hint: 'give the path of the vendor library, e.g. /usr/lib/softhsm/libsofthsm2.so', cause: e });
  }
  if (!st.isFile()) throw new NotFoundError('ERR_MODULE_NOT_FOUND', `PKCS#11 module ${abs} is not a file`);
  return abs;
}

/** A loaded and initialized PKCS#11 module. Release with `release()` (C_Finalize on the last one). */
export class Pkcs11Module {
  #l: LoadedModule | null;
  private constructor(l: LoadedModule) {
    this.#l = l;
  }

  static load(modulePath: string): Pkcs11Module {
    const abs = assertModuleFile(modulePath);
    const have = findLoaded(abs);
    if (have) {
      have.refs++;
      return new Pkcs11Module(have);
    }
    const lib = new P.PKCS11();
    try {
      lib.load(abs);
    } catch (e) {
      const why = String((e as Error).message ?? e).replace(abs + ': ', '');
      throw new UnavailableError('ERR_MODULE_LOAD', `${abs} is not a loadable PKCS#11 library (${why})`, { hint: 'check the path points at the vendor PKCS#11 module (.so), built for this machine', cause: e });
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
    return new Pkcs11Module(addLoaded(lib, abs));
  }

  #loaded(): LoadedModule {
    if (!this.#l) throw new Error('internal: PKCS#11 module already released');
    return this.#l;
  }
  get path(): string {
    return this.#loaded().path;
  }
  get lib(): pkcs11js.PKCS11 {
    return this.#loaded().lib;
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
  tokens(): TokenInfo[] {
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
  findToken(label: string): TokenInfo {
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
    releaseLoaded(l);
  }
}
