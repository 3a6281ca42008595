/**
 * `dsk init --join`: a second node of a home whose store is PostgreSQL. The store is shared; the
 * master key is not: it stays on each node, so the new node brings a copy of the home's sealed
 * fragments and its custodians unseal them here. The node is accepted only when the key it rebuilt
 * has the key check value the store records (set at init, moved by every master key replacement):
 * fragments of another home, or of a replaced master key, are refused before anything is written.
 *
 * Like init, the node's directory is built beside the target and renamed into place; the store
 * gets one NODE_JOIN audit row (keyed), and the node's audit_log/HEAD starts at that row.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { CONFIG_FORMAT, type DskConfig, type StoreConfig } from '../domain/config.js';
import { DEFAULT_POLICY } from '../domain/policy.js';
import { DEFAULT_ROLES } from '../domain/roles.js';
import { AuthError } from '../kernel/errors.js';
import { homePath } from '../kernel/home-layout.js';
import { saveConfig } from '../store/config-file.js';
import { openPgStore, openStore } from '../store/open.js';
import { readMetadata } from '../master/fragments.js';
import { unsealMaster, type UnsealInputs } from '../master/unseal.js';
import { keyCheckValue, PURPOSE, type MasterKey } from '../master/backend.js';
import { assertNoHome, Home, type Env } from './home.js';

export interface JoinResult {
  home: string;
  home_id: string;
  store: string;
  key_check_value: string;
}

export async function joinHome(o: { home: string; store: StoreConfig; fragmentsFrom: string; inputs: UnsealInputs }, env: Env): Promise<JoinResult> {
  const home = path.resolve(o.home);
  assertNoHome(home);
  const probe = await openPgStore({ store: o.store });
  let id, expected: string;
  try {
    id = await probe.identity();
    expected = (await probe.masterState.keyCheckValue()) ?? id.key_check_value;
  } finally {
    await probe.close();
  }
  const meta = readMetadata(o.fragmentsFrom);
  if (meta.key_check_value !== expected) throw mismatch(probe.address, meta.key_check_value, expected);
  const shared = parseShared(id.shared_config);
  const staging = path.join(path.dirname(home), `.${path.basename(home)}.join-${crypto.randomBytes(4).toString('hex')}`);
  let master: MasterKey | null = null;
  try {
    fs.mkdirSync(path.dirname(home), { recursive: true, mode: 0o700 });
    fs.mkdirSync(homePath(staging, 'fragments'), { recursive: true, mode: 0o700 });
    fs.mkdirSync(homePath(staging, 'auditDir'), { mode: 0o700 });
    for (const e of fs.readdirSync(o.fragmentsFrom, { withFileTypes: true }))
      if (e.isFile()) fs.copyFileSync(path.join(o.fragmentsFrom, e.name), path.join(homePath(staging, 'fragments'), e.name), fs.constants.COPYFILE_EXCL);
    for (const f of fs.readdirSync(homePath(staging, 'fragments'))) fs.chmodSync(path.join(homePath(staging, 'fragments'), f), 0o600);
    const config: DskConfig = {
      format: CONFIG_FORMAT,
      home_id: id.home_id,
      backend: 'software',
      created_at: new Date(env.clock.now()).toISOString(),
      policy: { ...DEFAULT_POLICY, ...(shared.policy ?? {}) },
      roles: shared.roles ?? DEFAULT_ROLES,
      store: o.store,
    };
    saveConfig(staging, config);
    master = await unsealMaster(staging, config, o.inputs);
    const kcv = await keyCheckValue(master);
    if (kcv !== expected) throw mismatch(probe.address, kcv, expected);
    const store = await openStore(staging);
    try {
      const h = new Home(staging, config, store, env, master, null, await master.hmac(PURPOSE.AUDIT_CHAIN));
      await h.tx((t) => t.audit({ action: 'NODE_JOIN', details: { node: os.hostname(), key_check_value: kcv } }));
    } finally {
      await store.close();
    }
    assertNoHome(home);
    if (fs.existsSync(home)) fs.rmdirSync(home);
    fs.renameSync(staging, home);
    return { home, home_id: id.home_id, store: probe.address, key_check_value: kcv };
  } catch (e) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw e;
  } finally {
    await master?.close();
  }
}

function mismatch(address: string, got: string, want: string): AuthError {
  return new AuthError('ERR_JOIN_KEY_MISMATCH', `these fragments hold a master key with check value ${got}, but the store at ${address} was sealed under ${want}; nothing was written`, {
    hint: "copy this home's current key_fragments/ (after a master key replacement, the new set) from a node of the home",
  });
}

function parseShared(text: string): { policy?: DskConfig['policy']; roles?: DskConfig['roles'] } {
  try {
    return JSON.parse(text);
  } catch {
    return {};
  }
}
