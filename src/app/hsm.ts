/**
 * Creating a pkcs11 home and recovering its master key into a (new) token.
 *
 * Without recovery flags the key is generated inside the token (C_GenerateKey) and no copy of it
 * ever exists anywhere else: losing or resetting the token loses every key derived from it. With
 * --recovery-shares/--recovery-threshold the key is made here, split into Shamir fragments sealed
 * exactly like the software backend's, imported into the token (C_CreateObject, sensitive and not
 * extractable) and wiped from memory: the fragments can then rebuild it into another token
 * (`dsk hsm recover`), at the price that K custodians together can also reconstruct it outside any
 * HSM. That trade-off is the user's to make, so it is off by default.
 */
import type { StoreConfig } from '../domain/config.js';
import fs from 'node:fs';
import path from 'node:path';
import type { DEFAULT_POLICY } from '../domain/policy.js';
import { homePath } from '../kernel/home-layout.js';
import { ConflictError, IntegrityError, NotFoundError, UsageError } from '../kernel/errors.js';
import { buildHome, Home, type Env } from './home.js';
import { wipe } from '../kernel/crypto.js';
import { writePrivateFile } from '../kernel/files.js';
import { keyCheckValue, PURPOSE } from '../master/backend.js';
import { assertFragmentDirs, MASTER_KEY_BYTES, validatePassphrases, validateSplit, type Passphrase } from '../master/fragments.js';
import { makeKdfParams } from '../master/kdf.js';
import { unsealFromFragments, type UnsealInputs } from '../master/unseal.js';
import { writeSoftwareFragments } from './home.js';
import { SoftwareMasterKey } from '../master/software.js';
import { DEFAULT_KEY_LABEL, HSM_FORMAT, openTokenSession, Pkcs11MasterKey, readHsmFile, writeHsmFile, type HsmFile } from '../master/pkcs11/backend.js';

export interface HsmInitOptions {
  home: string;
  module: string;
  tokenLabel: string;
  keyLabel?: string;
  pin: () => Promise<Buffer>;
  recovery?: { shares: number; threshold: number; passphrases: Passphrase[]; fragmentDirs: string[]; kdf: string; kdfCost?: number };
  policy?: Partial<typeof DEFAULT_POLICY>;
  store?: StoreConfig; // a shared PostgreSQL store instead of the home's SQLite files
}

export interface HsmInitResult {
  home: string;
  home_id: string;
  backend: 'pkcs11';
  module: string;
  token_label: string;
  key_label: string;
  key_id: string;
  origin: 'generated' | 'imported';
  key_check_value: string;
  recovery: { threshold: number; shares: number; fragments: string[] } | null;
}

export function validateLabels(tokenLabel: string, keyLabel: string): void {
  if (!tokenLabel || Buffer.byteLength(tokenLabel) > 32) throw new UsageError('ERR_TOKEN_LABEL', `a token label must be 1 to 32 bytes (PKCS#11 CK_TOKEN_INFO.label)`);
  if (!/^[\x21-\x7e][\x20-\x7e]{0,63}$/.test(keyLabel)) throw new UsageError('ERR_KEY_LABEL', `a key label must be 1 to 64 printable ASCII characters`);
}

export async function initPkcs11Home(o: HsmInitOptions, env: Env): Promise<HsmInitResult> {
  const keyLabel = o.keyLabel ?? DEFAULT_KEY_LABEL;
  validateLabels(o.tokenLabel, keyLabel);
  const rec = o.recovery;
  let kdf: ReturnType<typeof makeKdfParams> | null = null;
  if (rec) {
    validateSplit(rec.shares, rec.threshold);
    validatePassphrases(rec.passphrases, rec.shares);
    kdf = makeKdfParams(rec.kdf, rec.kdfCost, env.random(16));
    assertFragmentDirs(rec.fragmentDirs, 'write');
  }
  const home = path.resolve(o.home);
  const { session, release } = await openTokenSession(o.module, o.tokenLabel, rec ? ['CKM_SHA256_HMAC'] : ['CKM_SHA256_HMAC', 'CKM_GENERIC_SECRET_KEY_GEN'], o.pin);
  let created: Buffer | null = null;
  try {
    if (session.findKeys(keyLabel).length)
      throw new ConflictError('ERR_KEY_EXISTS', `token '${o.tokenLabel}' already holds a key labelled '${keyLabel}'`, { hint: 'use another key label; dsk never reuses or overwrites a key object' });
    return await buildHome(home, env, 'pkcs11', o.policy, async (staging, homeId, written) => {
      const keyId = env.random(8);
      let fragments: string[] = [];
      let fragmentKcv: string | null = null;
      if (rec && kdf) {
        const key = env.random(MASTER_KEY_BYTES);
        try {
          const r = await writeSoftwareFragments({ dir: staging, storeId: homeId, key: Buffer.from(key), threshold: rec.threshold, passphrases: rec.passphrases, fragmentDirs: rec.fragmentDirs, kdf, written, clock: env.clock });
          await r.master.close();
          fragmentKcv = r.kcv;
          fragments = r.paths.map((p) => (p.startsWith(staging + path.sep) ? path.join(home, path.relative(staging, p)) : p));
          created = session.importKey(keyLabel, keyId, key);
        } finally {
          wipe(key);
        }
      } else {
        created = session.generateKey(keyLabel, keyId);
      }
      const origin = rec ? ('imported' as const) : ('generated' as const);
      const attrs = session.checkKey(created, origin);
      // The home's own close() must not end the session: this function still needs it to undo.
      const master = new Pkcs11MasterKey(session, created, () => {});
      const kcv = await keyCheckValue(master);
      if (fragmentKcv !== null && fragmentKcv !== kcv) throw new IntegrityError('ERR_KCV', 'the imported key does not match the key its recovery fragments hold', { hint: 'this is a token fault; try another token' });
      const tok = session.token;
      const file: HsmFile = {
        format: HSM_FORMAT,
        module: session.module.path,
        token_label: tok.label,
        token_serial: tok.serial,
        key_label: keyLabel,
        key_id: attrs.id,
        key_check_value: kcv,
        origin,
        mechanism: 'CKM_SHA256_HMAC',
        created_at: new Date(env.clock.now()).toISOString(),
        recovery: rec ? { threshold: rec.threshold, shares: rec.shares } : null,
      };
      writeHsmFile(staging, file);
      return {
        master,
        initDetails: { module: file.module, token_label: file.token_label, key_label: keyLabel, key_id: file.key_id, origin, recovery: file.recovery },
        result: {
          home,
          home_id: homeId,
          backend: 'pkcs11' as const,
          module: file.module,
          token_label: file.token_label,
          key_label: keyLabel,
          key_id: file.key_id,
          origin,
          key_check_value: kcv,
          recovery: rec ? { threshold: rec.threshold, shares: rec.shares, fragments } : null,
        },
      };
    }, o.store);
  } catch (e) {
    if (created) {
      try {
        session.destroy(created);
      } catch {
        // reported below with the original error; the object is labelled, so it can be removed by hand
      }
    }
    throw e;
  } finally {
    release();
  }
}

export interface HsmRecoverOptions {
  module?: string;
  tokenLabel?: string;
  keyLabel?: string;
  inputs: UnsealInputs;
  /**
   * Called with the home unsealed by the key the fragments rebuilt, before the token is touched:
   * the caller's chance to check what needs the master key (an operator's one-time code, whose
   * secret is sealed under it). The token cannot serve that check: it is the thing being replaced.
   */
  authorize: (unsealed: Home) => Promise<void>;
}

/** Runs `fn` on a view of `sealed` unsealed with `key`; wipes what it derived. The caller keeps `key`. */
async function withRebuiltKey(sealed: Home, key: Buffer, fn: (h: Home) => Promise<void>): Promise<void> {
  const master = new SoftwareMasterKey(key);
  const sealKey = await master.hmac(PURPOSE.SEAL);
  const auditKey = await master.hmac(PURPOSE.AUDIT_CHAIN);
  try {
    await fn(new Home(sealed.dir, sealed.config, sealed.store, sealed.env, master, sealKey, auditKey));
  } finally {
    wipe(sealKey, auditKey);
    await master.close();
  }
}

/**
 * Restores the master key of an existing pkcs11 home from its recovery fragments into a token
 * (the same one after a reset, or a new one: --pkcs11-module/--token-label), then points
 * master_key.hsm at it. `sealed` is the opened (not unsealed) home; keys.db and the audit log stay where they are and keep working, because
 * the key, and so every derived key and the audit MAC key, is the same.
 */
export async function recoverHsmHome(sealed: Home, o: HsmRecoverOptions) {
  const home = sealed.dir;
  const env = sealed.env;
  if (sealed.config.backend !== 'pkcs11') throw new UsageError('ERR_NOT_PKCS11_HOME', `${home} uses the ${sealed.config.backend} backend; hsm recover is for pkcs11 homes`);
  const old = readHsmFile(home);
  const fragDir = homePath(home, 'fragments');
  if (!fs.existsSync(path.join(fragDir, 'metadata.json')))
    throw new NotFoundError('ERR_NO_RECOVERY', `${home} has no recovery fragments (it was created without recovery shares)`, { hint: 'without fragments the key existed only in the token and cannot be rebuilt' });
  const module = o.module ?? old.module;
  const tokenLabel = o.tokenLabel ?? old.token_label;
  const keyLabel = o.keyLabel ?? old.key_label;
  validateLabels(tokenLabel, keyLabel);
  let key: Buffer | null = null;
  let session: Awaited<ReturnType<typeof openTokenSession>> | null = null;
  let created: Buffer | null = null;
  const oldText = fs.readFileSync(homePath(home, 'hsm'));
  let fileWritten = false;
  try {
    const u = await unsealFromFragments(fragDir, o.inputs);
    key = u.key;
    if (u.kcv !== old.key_check_value)
      throw new IntegrityError('ERR_KCV', 'the recovery fragments hold a different key than master_key.hsm records', { hint: 'these fragments belong to another home' });
    await withRebuiltKey(sealed, key, o.authorize);
    session = await openTokenSession(module, tokenLabel, ['CKM_SHA256_HMAC'], o.inputs.pin);
    const s = session.session;
    if (s.findKeys(keyLabel).length)
      throw new ConflictError('ERR_KEY_EXISTS', `token '${tokenLabel}' already holds a key labelled '${keyLabel}'`, { hint: 'if it is the right key nothing needs recovering; otherwise use another key label' });
    const keyId = env.random(8);
    created = s.importKey(keyLabel, keyId, key);
    wipe(key);
    key = null;
    const attrs = s.checkKey(created, 'imported');
    const master = new Pkcs11MasterKey(s, created, () => {});
    const kcv = await keyCheckValue(master);
    if (kcv !== old.key_check_value) throw new IntegrityError('ERR_KCV', 'the key imported into the token does not match its key check value', { hint: 'this is a token fault; try another token' });
    const file: HsmFile = { ...old, module: s.module.path, token_label: s.token.label, token_serial: s.token.serial, key_label: keyLabel, key_id: attrs.id, origin: 'imported' };
    const h = new Home(home, sealed.config, sealed.store, env, master, null, await master.hmac(PURPOSE.AUDIT_CHAIN));
    await h.tx(async (t) => {
      await t.audit({
        action: 'MASTER_RECOVER',
        details: { module: file.module, token_label: file.token_label, key_label: keyLabel, key_id: file.key_id, previous: { module: old.module, token_label: old.token_label, key_id: old.key_id } },
      });
      writeHsmFile(home, file);
      fileWritten = true;
    });
    const result = { home: path.resolve(home), module: file.module, token_label: file.token_label, key_label: keyLabel, key_id: file.key_id, origin: file.origin, key_check_value: kcv };
    created = null;
    return result;
  } catch (e) {
    if (fileWritten) writePrivateFile(homePath(home, 'hsm'), oldText);
    if (created && session) {
      try {
        session.session.destroy(created);
      } catch {
        // best effort; the original error matters more
      }
    }
    throw e;
  } finally {
    wipe(key);
    session?.release();
  }
}
