/**
 * What a killed process leaves behind, cleaned when a home is opened.
 *
 * Temporary files: writePrivateFile writes `.<name>.<pid>-<random>.tmp` and renames it into place;
 * a kill -9 in between leaves it (audit_log/.HEAD.*.tmp after every commit, dsk.json, fragments).
 *
 * Key files written before their key commits: `dsk keygen --out FILE` writes FILE inside the
 * issuing transaction, so that a file that cannot be written leaves no key. A kill -9 after the
 * file is written but before the commit would leave a file holding a key that does not exist. So a
 * marker in the home (`.pending-file-<id>.<pid>.json`: the key id, the file, the writer's pid; no
 * secret) lives from before the file is written until the commit is decided; the next run that
 * opens the home, finding the writer dead, removes the file if its key never committed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pidAlive, removeLeftoverTempFiles, writePrivateFile } from '../kernel/files.js';
import { homePath } from '../kernel/home-layout.js';
import type { Store } from '../store/store.js';

const MARKER = /^\.pending-file-([0-9a-f]{12})\.(\d+)\.json$/;

/** Records that `file` is about to hold key `keyId`, not yet committed. Returns the function that clears it. */
export function markPendingFile(home: string, keyId: string, file: string): () => void {
  const marker = path.join(home, `.pending-file-${keyId}.${process.pid}.json`);
  writePrivateFile(marker, JSON.stringify({ format: 'dsk-pending-file/1', key_id: keyId, file: path.resolve(file), pid: process.pid }) + '\n');
  return () => fs.rmSync(marker, { force: true });
}

/** Removes leftovers of dead processes; best effort, never fails the command that opens the home. */
export async function cleanLeftovers(home: string, store: Store): Promise<void> {
  for (const d of [home, homePath(home, 'auditDir'), homePath(home, 'fragments')]) removeLeftoverTempFiles(d);
  let names: string[];
  try {
    names = fs.readdirSync(home);
  } catch {
    return;
  }
  for (const n of names) {
    const m = MARKER.exec(n);
    if (!m || pidAlive(Number(m[2]))) continue;
    const marker = path.join(home, n);
    try {
      const { key_id, file } = JSON.parse(fs.readFileSync(marker, 'utf8')) as { key_id: string; file: string };
      if (key_id !== m[1]) continue;
      if (!(await store.keys.get(key_id)) && typeof file === 'string') removeFileOfKey(file, key_id);
      fs.rmSync(marker, { force: true });
    } catch {
      // unreadable marker or read-only home: left for a later run
    }
  }
}

/** Removes `file` if it still holds key `keyId` (never something written there since). */
export function removeFileOfKey(file: string, keyId: string): void {
  try {
    if ((JSON.parse(fs.readFileSync(file, 'utf8')) as { id?: unknown }).id === keyId) fs.rmSync(file, { force: true });
  } catch {
    // gone already, or not a key file: nothing of ours to remove
  }
}
