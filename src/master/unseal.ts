/** Loads the master key of a home from whichever backend it uses. */
import path from 'node:path';
import { homePath } from '../kernel/home-layout.js';
import { type DskConfig } from '../domain/config.js';
import { IntegrityError, UsageError } from '../kernel/errors.js';
import { keyCheckValue, type MasterKey } from './backend.js';
import { assertFragmentDirs, openFragments, readMetadata, type Passphrase } from './fragments.js';
import { SoftwareMasterKey } from './software.js';
import { wipe } from '../kernel/crypto.js';

/** Secret inputs, asked for lazily so nothing prompts unless that backend needs it. */
export interface UnsealInputs {
  passphrases(threshold: number, shares: number): Promise<Passphrase[]>;
  pin(): Promise<Buffer>;
  fragmentDirs?: string[];
}

export async function unsealFromFragments(fragmentsDir: string, inputs: UnsealInputs): Promise<{ key: Buffer; kcv: string; storeId: string }> {
  const meta = readMetadata(fragmentsDir);
  const extraDirs = assertFragmentDirs(inputs.fragmentDirs ?? [], 'read');
  const passphrases = await inputs.passphrases(meta.threshold, meta.shares);
  try {
    const key = await openFragments(meta, fragmentsDir, passphrases, extraDirs);
    return { key, kcv: meta.key_check_value, storeId: meta.store_id };
  } finally {
    for (const p of passphrases) wipe(p.value);
  }
}

export async function unsealMaster(home: string, config: DskConfig, inputs: UnsealInputs): Promise<MasterKey> {
  if (config.backend === 'software') {
    const { key, kcv } = await unsealFromFragments(homePath(home, 'fragments'), inputs);
    const master = new SoftwareMasterKey(key);
    wipe(key);
    if ((await keyCheckValue(master)) !== kcv) {
      await master.close();
      throw new IntegrityError('ERR_KCV', 'the rebuilt master key does not match its key check value: fragments or metadata.json were altered', { hint: 'restore key_fragments/ from a backup' });
    }
    return master;
  }
  if (config.backend === 'pkcs11') {
    const { openPkcs11Master } = await import('./pkcs11/backend.js');
    return openPkcs11Master(path.resolve(home), inputs);
  }
  throw new UsageError('ERR_BACKEND_UNKNOWN', `unknown backend '${String(config.backend)}' in dsk.json`);
}
