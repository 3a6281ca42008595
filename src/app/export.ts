/**
 * Handing a key to a workload (`dsk export k8s|env`). The key text is re-derived from the master
 * key and the stored salt (dsk never stores it) and checked against the stored hash; the signing
 * secret is unsealed. Every export is audited, with the format and never the material. The
 * manifest and env text are domain/export.ts.
 */
import { getKey, recoverKeyText } from './keys.js';
import { assertExportable, openSigningSecret } from '../domain/key.js';
import type { ExportFormat, Exported } from '../domain/export.js';
import type { Home } from './home.js';

export { assertExportable };
export { checkK8sName, envLines, k8sSecret, type ExportFormat, type Exported } from '../domain/export.js';

/** Recovers a key's text and secret (active or grace keys only) and audits KEY_EXPORT. */
export async function exportKey(home: Home, id: string, format: ExportFormat): Promise<Exported> {
  const { sealKey } = home.requireUnsealed();
  const row = await getKey(home, id);
  assertExportable(row);
  const apiKey = await recoverKeyText(home, row);
  const apiSecret = openSigningSecret(sealKey, row);
  await home.tx(async (t) => {
    await t.audit({ action: 'KEY_EXPORT', key_id: id, details: { key_id: id, name: row.name, format } });
    // A rotated key's successor handed over by export has been delivered (app/rotation.ts).
    await t.deliveries.delivered(id, home.env.clock.now());
  });
  return { row, apiKey, apiSecret };
}
