/**
 * The PKCS#11 master-key backend: the master key is a secret-key object inside a token and every
 * use of it is CKM_SHA256_HMAC computed by the token.
 *
 * stretch() is PBKDF2-HMAC-SHA256 (RFC 8018 section 5.2) with the PRF run inside the token. For
 * one 32-byte output block: U1 = PRF(P, S || INT(1)), Ui = PRF(P, U(i-1)), T = U1 ^ U2 ^ ... ^ Uc.
 * Only the U values (public-looking PRF outputs) and T pass through this process; P never does.
 * That costs one C_SignInit + C_Sign pair per iteration (100,000 for the seed's derivation), so the
 * session is opened and logged in once per process and reused (see bench/hsm.mjs for the cost).
 *
 * Sealing signing secrets: the home derives sealKey = hmac(PURPOSE.SEAL) and seals with
 * AES-256-GCM in software. On this backend that makes sealKey a data key derived by the token key:
 * it exists only in memory while a command runs, cannot be recomputed without the token and PIN,
 * and needs no second token object (see docs/hsm.md).
 */
import fs from 'node:fs';
import { homePath } from '../../kernel/home-layout.js';
import { IntegrityError, NotFoundError } from '../../kernel/errors.js';
import { writePrivateFile } from '../../kernel/files.js';
import { wipe } from '../../kernel/crypto.js';
import { keyCheckValue, type MasterKey } from '../backend.js';
import type { UnsealInputs } from '../unseal.js';
import { Pkcs11Module, type MechanismName } from './module.js';
import type { Pkcs11Session } from './session.js';

export const HSM_FORMAT = 'dsk-hsm/1';
export const DEFAULT_KEY_LABEL = 'dsk-master';

/** master_key.hsm: where the master key lives. Never a secret. */
export interface HsmFile {
  format: typeof HSM_FORMAT;
  module: string;
  token_label: string;
  token_serial: string;
  key_label: string;
  key_id: string;
  key_check_value: string;
  origin: 'generated' | 'imported';
  mechanism: 'CKM_SHA256_HMAC';
  created_at: string;
  recovery: { threshold: number; shares: number } | null;
}

export function readHsmFile(home: string): HsmFile {
  const p = homePath(home, 'hsm');
  let text: string;
  try {
    text = fs.readFileSync(p, 'utf8');
  } catch {
    throw new NotFoundError('ERR_NO_HSM_FILE', `${p} is missing`, { hint: 'restore master_key.hsm from a backup of the home' });
  }
  let f: HsmFile;
  try {
    f = JSON.parse(text);
  } catch {
    throw new IntegrityError('ERR_HSM_FILE', `${p} is not valid JSON`, { hint: 'restore it from a backup' });
  }
  const str = (v: unknown, max: number) => typeof v === 'string' && v.length > 0 && v.length <= max;
  if (
    f?.format !== HSM_FORMAT ||
    !str(f.module, 4096) ||
    !str(f.token_label, 32) ||
    !str(f.key_label, 128) ||
    !/^[0-9a-f]{2,64}$/.test(String(f.key_id)) ||
    !/^[0-9a-f]{16}$/.test(String(f.key_check_value)) ||
    (f.origin !== 'generated' && f.origin !== 'imported')
  )
    throw new IntegrityError('ERR_HSM_FILE', `${p} is malformed or of an unknown format`, { hint: 'restore it from a backup' });
  return f;
}

export function writeHsmFile(dir: string, f: HsmFile): void {
  writePrivateFile(homePath(dir, 'hsm'), JSON.stringify(f, null, 2) + '\n');
}

/** How many PRF iterations run between yields to the event loop, so Ctrl-C is handled promptly. */
const YIELD_EVERY = 4096;

export class Pkcs11MasterKey implements MasterKey {
  readonly backend = 'pkcs11' as const;
  #session: Pkcs11Session | null;
  #key: Buffer;
  #onClose: () => void;
  constructor(session: Pkcs11Session, key: Buffer, onClose: () => void) {
    this.#session = session;
    this.#key = key;
    this.#onClose = onClose;
  }
  #s(): Pkcs11Session {
    if (!this.#session) throw new Error('internal: master key already closed');
    return this.#session;
  }

  async stretch(salt: Buffer, iterations: number): Promise<Buffer> {
    if (!Number.isInteger(iterations) || iterations < 1) throw new Error('internal: bad iteration count');
    const s = this.#s();
    let u: Buffer = s.hmac(this.#key, Buffer.concat([salt, Buffer.from([0, 0, 0, 1])]));
    const t = Buffer.from(u);
    let spare: Buffer = Buffer.alloc(32);
    for (let i = 2; i <= iterations; i++) {
      const next = s.hmac(this.#key, u, spare);
      spare = u;
      u = next;
      for (let j = 0; j < 32; j++) t[j] ^= u[j];
      if (i % YIELD_EVERY === 0) await new Promise((r) => setImmediate(r));
    }
    wipe(u, spare);
    return t;
  }

  async hmac(data: Buffer): Promise<Buffer> {
    return this.#s().hmac(this.#key, data);
  }

  async close(): Promise<void> {
    if (!this.#session) return;
    this.#session = null;
    this.#onClose();
  }
}

/**
 * Opens the master key of a pkcs11 home: load the module, find the token by label, one C_Login,
 * find the key by label and id, refuse unsafe attributes (5), and confirm the key check value (5).
 */
export async function openPkcs11Master(home: string, inputs: UnsealInputs): Promise<MasterKey> {
  const f = readHsmFile(home);
  const { session, release } = await openTokenSession(f.module, f.token_label, ['CKM_SHA256_HMAC'], inputs.pin);
  try {
    const key = session.findKey(f.key_label, f.key_id);
    const attrs = session.checkKey(key, f.origin);
    if (attrs.id !== f.key_id)
      throw new IntegrityError('ERR_TOKEN_KEY_ID', `key '${f.key_label}' in token '${f.token_label}' has id ${attrs.id || '(none)'}, master_key.hsm says ${f.key_id}`, { hint: 'the token holds a different key under this label' });
    const master = new Pkcs11MasterKey(session, key, release);
    if ((await keyCheckValue(master)) !== f.key_check_value) {
      await master.close();
      throw new IntegrityError('ERR_KCV', `key '${f.key_label}' in token '${f.token_label}' does not match the key check value in master_key.hsm`, { hint: 'the token holds a different key under this label; check the home and the token' });
    }
    return master;
  } catch (e) {
    release();
    throw e;
  }
}

/** Loads the module, opens a session on the labelled token and logs in once. `release` undoes all. */
export async function openTokenSession(modulePath: string, tokenLabel: string, need: MechanismName[], pin: () => Promise<Buffer>): Promise<{ session: Pkcs11Session; release: () => void }> {
  const mod = Pkcs11Module.load(modulePath);
  let session: Pkcs11Session | null = null;
  const release = () => {
    session?.close();
    mod.release();
  };
  try {
    session = mod.openSession(tokenLabel, need);
    const p = await pin();
    try {
      session.login(p);
    } finally {
      wipe(p);
    }
    return { session, release };
  } catch (e) {
    release();
    throw e;
  }
}

/** dsk hsm info: the module, its tokens and mechanisms, and (with a PIN) the master key object. */
export async function hsmInfo(o: { module: string; tokenLabel?: string; keyLabel?: string; pin?: () => Promise<Buffer | null> }) {
  const mod = Pkcs11Module.load(o.module);
  try {
    const tokens = mod.tokens().map(({ slot, ...t }) => ({ ...t, mechanisms: mod.mechanisms(slot) }));
    const out: Record<string, unknown> = { module: mod.path, library: mod.info(), tokens };
    if (o.tokenLabel) {
      const tok = mod.findToken(o.tokenLabel);
      out.token_label = tok.label;
      const label = o.keyLabel ?? DEFAULT_KEY_LABEL;
      const pin = o.pin ? await o.pin() : null;
      if (!pin) out.key = { label, checked: false, reason: 'no PIN given (the key is a private object)' };
      else {
        const session = mod.openSession(o.tokenLabel, []);
        try {
          try {
            session.login(pin);
          } finally {
            wipe(pin);
          }
          const found = session.findKeys(label);
          out.key = found.length ? { label, checked: true, present: true, count: found.length, attributes: session.attributes(found[0]) } : { label, checked: true, present: false };
        } finally {
          session.close();
        }
      }
    }
    return out;
  } finally {
    mod.release();
  }
}
