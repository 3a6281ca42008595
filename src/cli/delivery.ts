/**
 * Hands newly rotated keys to their workloads: one 0600 JSON file per key in --out-dir, and/or a
 * command run per key (--exec) that gets the key JSON on stdin and its id in DSK_KEY_ID. The key
 * never goes in argv (visible in ps) and the unseal secrets are removed from the command's
 * environment: the hook needs the new key, not the power to unseal.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { UsageError } from '../kernel/errors.js';
import { writePrivateFile } from '../kernel/files.js';
import type { IssuedKey } from '../app/keys.js';
import type { DeliveryOutcome } from '../app/rotation.js';

export interface DeliveryFlags {
  outDir?: string;
  exec?: string;
}

export interface Delivered {
  key_id: string;
  old_key_id: string;
  file?: string;
  exec_status?: number | null;
  error?: string;
}

/** Checks delivery flags before any work (exit 2 on a bad directory). */
export function checkDelivery(f: DeliveryFlags): void {
  if (f.outDir !== undefined && !(fs.existsSync(f.outDir) && fs.statSync(f.outDir).isDirectory()))
    throw new UsageError('ERR_NOT_A_DIRECTORY', `--out-dir ${f.outDir} is not a directory`, { hint: 'create it first (mode 0700)' });
  if (f.exec !== undefined && !f.exec.trim()) throw new UsageError('ERR_FLAG_MISSING', '--exec needs a command');
}

export function hasDelivery(f: DeliveryFlags): boolean {
  return f.outDir !== undefined || f.exec !== undefined;
}

const HOOK_ENV_DROP = ['DSK_PASSPHRASE_FILES', 'DSK_HSM_PIN', 'DSK_OTP'];

/**
 * Delivers one key; the outcome is recorded per successor (app/rotation.ts), so a failed or
 * interrupted delivery is retried by the next `rotate --due`. At least once: a hook may get the
 * same key again after a crash, and an --out-dir file already holding this key counts as delivered.
 */
export function deliverer(f: DeliveryFlags, log: Delivered[]) {
  return (k: IssuedKey, oldId: string): DeliveryOutcome => {
    const d: Delivered = { key_id: k.id, old_key_id: oldId };
    const body = JSON.stringify(k, null, 2) + '\n';
    try {
      if (f.outDir !== undefined) {
        d.file = path.join(path.resolve(f.outDir), `${k.id}.json`);
        if (!holdsKey(d.file, k.id)) writePrivateFile(d.file, body, { exclusive: true });
      }
    } catch (e) {
      d.error = `writing ${d.file}: ${(e as Error).message}`;
    }
    if (f.exec !== undefined) {
      const env: NodeJS.ProcessEnv = { ...process.env, DSK_KEY_ID: k.id, DSK_OLD_KEY_ID: oldId, DSK_KEY_NAME: k.name, DSK_KEY_ROLE: k.role };
      for (const v of HOOK_ENV_DROP) delete env[v];
      const r = spawnSync('/bin/sh', ['-c', f.exec], { input: body, env, stdio: ['pipe', 2, 2], timeout: 120_000 });
      d.exec_status = r.status;
      if (r.status !== 0) d.error = `--exec exited ${r.status ?? r.signal ?? 'abnormally'}`;
    }
    log.push(d);
    return d.error ? { ok: false, error: d.error } : { ok: true };
  };
}

function holdsKey(file: string, id: string): boolean {
  try {
    return (JSON.parse(fs.readFileSync(file, 'utf8')) as { id?: unknown }).id === id;
  } catch {
    return false;
  }
}
