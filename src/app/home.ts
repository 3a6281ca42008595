/**
 * A dsk home: creating it (all or nothing) and opening it for a command; and the one transaction
 * boundary of the use cases (Home.tx): a change and its audit rows commit together, then
 * audit_log/HEAD moves.
 */
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { CONFIG_FORMAT, type DskConfig, type StoreConfig } from '../domain/config.js';
import { DEFAULT_POLICY } from '../domain/policy.js';
import { DEFAULT_ROLES } from '../domain/roles.js';
import { applySharedConfig, loadConfig, saveConfig } from '../store/config-file.js';
import { AuthError, ConflictError, UsageError } from '../kernel/errors.js';
import { ioError, makeHomeParent, writePrivateFile } from '../kernel/files.js';
import { systemClock, systemRandom, type Clock, type RandomSource } from '../kernel/clock.js';
import { openStore, redactedStore } from '../store/open.js';
import type { AuditRow, Store, StoreTx } from '../store/store.js';
import { appendAudit, type AuditEvent } from '../audit/writer.js';
import { publishHead } from '../audit/head.js';
import { keyCheckValue, PURPOSE, type MasterKey } from '../master/backend.js';
import { unsealMaster, type UnsealInputs } from '../master/unseal.js';
import { assertFragmentDirs, MASTER_KEY_BYTES, validatePassphrases, validateSplit, writeFragments, METADATA_FORMAT, type FragmentMetadata, type Passphrase } from '../master/fragments.js';
import { makeKdfParams } from '../master/kdf.js';
import { SoftwareMasterKey } from '../master/software.js';
import { wipe } from '../kernel/crypto.js';
import { completePendingReplacement } from '../master/replacement.js';
import { cleanLeftovers } from './leftovers.js';

export interface Env {
  clock: Clock;
  random: RandomSource;
  actor: string;
  sourceIp?: string | null;
}

export const defaultEnv = (actor: string): Env => ({ clock: systemClock, random: systemRandom, actor, sourceIp: null });

/** An audit event as a use case records it: actor and source address default to the home's. */
export type HomeEvent = Omit<AuditEvent, 'actor'> & { actor?: string };

/** One transaction of a use case: the store's tables, and the audit log's append in the same commit. */
export interface Tx extends StoreTx {
  audit(e: HomeEvent): Promise<AuditRow>;
}

/** An opened home: its config, its store and, once unsealed, the master key and the keys derived from it. */
export class Home {
  constructor(
    readonly dir: string,
    readonly config: DskConfig,
    readonly store: Store,
    readonly env: Env,
    readonly master: MasterKey | null = null,
    readonly sealKey: Buffer | null = null,
    readonly auditKey: Buffer | null = null,
  ) {}

  /**
   * Runs `fn` in one store transaction: every change it makes through `t` and every audit row it
   * appends with `t.audit` commit together or not at all (fail closed: an audit row that cannot be
   * written undoes the change). After a commit that appended rows, audit_log/HEAD is moved to the
   * new head (see audit/head.ts). A failure to write HEAD does not undo the committed change: HEAD
   * then lags, which verify accepts and reports. Transactions do not nest: pass `t` down.
   */
  async tx<T>(fn: (t: Tx) => Promise<T> | T): Promise<T> {
    let appended = 0;
    const result = await this.store.transaction(async (s) => {
      const t: Tx = {
        ...s,
        audit: (e) => {
          appended++;
          return appendAudit(s, { actor: this.env.actor, source_ip: this.env.sourceIp ?? null, ...e }, this.env.clock, this.auditKey);
        },
      };
      return fn(t);
    });
    if (appended) {
      try {
        await publishHead(this.store, this.dir, this.auditKey, this.env.clock.now());
      } catch {
        // HEAD lags behind the database until the next commit; nothing is lost.
      }
    }
    return result;
  }

  requireUnsealed(): { master: MasterKey; sealKey: Buffer; auditKey: Buffer } {
    if (!this.master || !this.sealKey || !this.auditKey) throw new Error('internal: home is not unsealed');
    return { master: this.master, sealKey: this.sealKey, auditKey: this.auditKey };
  }

  async close(): Promise<void> {
    wipe(this.sealKey, this.auditKey);
    await this.master?.close();
    await this.store.close();
  }
}

export async function openHome(dir: string, env: Env, opts: { readonly?: boolean } = {}): Promise<Home> {
  const config = loadConfig(dir);
  const store = await openStore(dir, { readonly: opts.readonly });
  try {
    applySharedConfig(config, await store.sharedConfig?.()); // a shared store's policy and roles win
  } catch (e) {
    await store.close();
    throw e;
  }
  try {
    await cleanLeftovers(dir, store);
  } catch {
    // best effort: leftovers never stop a command
  }
  return new Home(dir, config, store, env);
}

/** Opens the home and unseals the master key. A failed unseal is audited (without a MAC). */
export async function openUnsealed(dir: string, env: Env, inputs: UnsealInputs): Promise<Home> {
  const sealed = await openHome(dir, env);
  let master: MasterKey;
  try {
    completePendingReplacement(dir, await sealed.store.masterState.keyCheckValue());
    master = await unsealMaster(dir, sealed.config, inputs);
  } catch (e) {
    if (e instanceof AuthError || (e as { exitCode?: number }).exitCode === 5) {
      try {
        await sealed.tx((t) => t.audit({ action: 'UNSEAL_FAILURE', details: { reason: (e as AuthError).code } }));
      } catch {
        // the refusal stands even if it cannot be recorded
      }
    }
    await sealed.close();
    throw e;
  }
  const sealKey = await master.hmac(PURPOSE.SEAL);
  const auditKey = await master.hmac(PURPOSE.AUDIT_CHAIN);
  return new Home(dir, sealed.config, sealed.store, env, master, sealKey, auditKey);
}

export interface InitOptions {
  home: string;
  shares: number;
  threshold: number;
  passphrases: Passphrase[];
  fragmentDirs: string[];
  kdf: string;
  kdfCost?: number;
  policy?: Partial<typeof DEFAULT_POLICY>;
  store?: StoreConfig; // a shared PostgreSQL store instead of the home's SQLite files
}

export interface InitResult {
  home: string;
  home_id: string;
  backend: 'software';
  threshold: number;
  shares: number;
  fragments: string[];
  key_check_value: string;
  store: string; // 'sqlite', or the PostgreSQL address without a password
}

/** Refuses an existing home (exit 6) before any work. */
export function assertNoHome(home: string): void {
  if (fs.existsSync(home) && (!fs.statSync(home).isDirectory() || fs.readdirSync(home).length > 0))
    throw new ConflictError('ERR_HOME_EXISTS', `${home} already exists and is not empty`, { hint: 'choose another home directory, or remove it if you really mean to start over' });
}

/**
 * Builds a home in a staging directory beside the target and renames it into place, so a failure
 * at any step leaves nothing behind; fragments written to other directories are removed too.
 * `populate` runs before the rename to write backend-specific files and returns the master key.
 */
export async function buildHome<T>(
  home: string,
  env: Env,
  backend: DskConfig['backend'],
  policy: Partial<typeof DEFAULT_POLICY> | undefined,
  populate: (staging: string, homeId: string, written: string[]) => Promise<{ master: MasterKey; initDetails: Record<string, unknown>; result: T }>,
  storeConfig?: StoreConfig,
): Promise<T> {
  home = path.resolve(home);
  assertNoHome(home);
  const parent = path.dirname(home);
  const createdParent = makeHomeParent(home);
  const staging = path.join(parent, `.${path.basename(home)}.init-${crypto.randomBytes(4).toString('hex')}`);
  const written: string[] = [];
  let master: MasterKey | null = null;
  try {
    fs.mkdirSync(staging, { mode: 0o700 });
    const homeId = env.random(16).toString('hex');
    const config: DskConfig = {
      format: CONFIG_FORMAT,
      home_id: homeId,
      backend,
      created_at: new Date(env.clock.now()).toISOString(),
      policy: { ...DEFAULT_POLICY, ...(policy ?? {}) },
      roles: DEFAULT_ROLES,
      ...(storeConfig ? { store: storeConfig } : {}),
    };
    saveConfig(staging, config);
    const populated = await populate(staging, homeId, written);
    master = populated.master;
    const identity = { keyCheckValue: await keyCheckValue(master), sharedConfig: JSON.stringify({ policy: config.policy, roles: config.roles }), now: env.clock.now() };
    const store = await openStore(staging, { create: true, identity });
    try {
      const h = new Home(staging, config, store, env, master, null, await master.hmac(PURPOSE.AUDIT_CHAIN));
      await h.tx((t) => t.audit({ action: 'MASTER_INIT', details: { backend, home_id: homeId, ...populated.initDetails } }));
    } finally {
      await store.close();
    }
    if (fs.existsSync(home)) {
      assertNoHome(home);
      fs.rmdirSync(home);
    }
    fs.renameSync(staging, home);
    return populated.result;
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    for (const f of written) fs.rmSync(f, { force: true });
    // parent directories this call created (mkdir -p) go too: a failed init leaves nothing behind
    if (createdParent) fs.rmSync(createdParent, { recursive: true, force: true });
    throw e;
  } finally {
    await master?.close();
  }
}

/** dsk init for the software backend: a fresh key split into sealed fragments. */
export async function initSoftwareHome(opts: InitOptions, env: Env): Promise<InitResult> {
  validateSplit(opts.shares, opts.threshold);
  validatePassphrases(opts.passphrases, opts.shares);
  const kdf = makeKdfParams(opts.kdf, opts.kdfCost, env.random(16));
  assertFragmentDirs(opts.fragmentDirs, 'write');
  return buildHome(opts.home, env, 'software', opts.policy, async (staging, homeId, written) => {
    const r = await writeSoftwareFragments({ dir: staging, storeId: homeId, key: env.random(MASTER_KEY_BYTES), ...opts, kdf, written });
    return {
      master: r.master,
      initDetails: { threshold: opts.threshold, shares: opts.shares, kdf: kdf.name, store: opts.store ? 'postgres' : 'sqlite' },
      result: {
        home: path.resolve(opts.home),
        home_id: homeId,
        backend: 'software' as const,
        threshold: opts.threshold,
        shares: opts.shares,
        fragments: r.paths.map((p) => (p.startsWith(staging + path.sep) ? path.join(path.resolve(opts.home), path.relative(staging, p)) : p)),
        key_check_value: r.kcv,
        store: opts.store ? redactedStore(opts.store.url) : 'sqlite',
      },
    };
  }, opts.store);
}

/**
 * Splits `key` into sealed fragments under dir/key_fragments (or fragmentDirs) and writes
 * metadata.json. Shared by the software backend and HSM recovery fragments. Takes ownership of `key`.
 */
export async function writeSoftwareFragments(o: {
  dir: string;
  storeId: string;
  key: Buffer;
  threshold: number;
  passphrases: Passphrase[];
  fragmentDirs: string[];
  kdf: ReturnType<typeof makeKdfParams>;
  written: string[];
  clock?: Clock;
}): Promise<{ master: SoftwareMasterKey; paths: string[]; kcv: string }> {
  const fragmentsDir = path.join(o.dir, 'key_fragments');
  fs.mkdirSync(fragmentsDir, { recursive: true, mode: 0o700 });
  const master = new SoftwareMasterKey(o.key);
  try {
    const kcv = await keyCheckValue(master);
    const dirs = o.fragmentDirs.length ? o.fragmentDirs.map((d) => path.resolve(d)) : [fragmentsDir];
    const entries = await writeFragments({ masterKey: o.key, storeId: o.storeId, threshold: o.threshold, passphrases: o.passphrases, kdf: o.kdf, fragmentsDir, dirs, written: o.written });
    const meta: FragmentMetadata = {
      format: METADATA_FORMAT,
      store_id: o.storeId,
      threshold: o.threshold,
      shares: o.passphrases.length,
      kdf: o.kdf,
      key_check_value: kcv,
      created_at: new Date((o.clock ?? systemClock).now()).toISOString(),
      fragments: entries,
    };
    writePrivateFile(path.join(fragmentsDir, 'metadata.json'), JSON.stringify(meta, null, 2) + '\n');
    const paths = entries.map((e) => (path.isAbsolute(e.file) ? e.file : path.join(fragmentsDir, e.file)));
    return { master, paths, kcv };
  } catch (e) {
    await master.close();
    throw e;
  } finally {
    wipe(o.key);
  }
}
