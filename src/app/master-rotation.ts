/**
 * Emergency replacement of the master key (`dsk rotate --emergency --all --master`).
 *
 * Every API key is derived from the master key (the seed's generate_api_key(master_key, salt)), so
 * a new master key changes the text of every key: none of them can be re-derived, exported or kept.
 * Replacing the master key therefore revokes every active key and key in grace at once and issues a
 * successor for each active one under the new key. That is what the emergency means — the old
 * master key is presumed known to an attacker, and so is every key derived from it.
 *
 * In the same transaction every sealed signing secret is re-sealed under the new seal key and every
 * audit row's MAC is recomputed under the new audit key (after checking it under the old one, so a
 * tampered row is refused rather than laundered; the unkeyed hash chain is unchanged). The fragment
 * files are switched around that commit as described in src/master/replacement.ts.
 *
 * Only the software backend is supported; the PKCS#11 backend would generate a new token object
 * and is refused with exit 7 until that backend offers it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Home, writeSoftwareFragments } from './home.js';
import { IntegrityError, UnavailableError } from '../kernel/errors.js';
import { open, seal, constantTimeEqual, wipe } from '../kernel/crypto.js';
import { homePath } from '../kernel/home-layout.js';
import { keyCheckValue, PURPOSE } from '../master/backend.js';
import { MASTER_KEY_BYTES, readMetadata, validatePassphrases, validateSplit, type Passphrase } from '../master/fragments.js';
import { makeKdfParams } from '../master/kdf.js';
import { STAGING_DIR, swapFragments } from '../master/replacement.js';
import { rowMac } from '../audit/chain.js';
import { issueSuccessors, planDue, revokeForEmergency, type OnIssued, type RotationReport } from './rotation.js';
import { iso } from '../kernel/clock.js';
import { secretAad } from '../domain/key.js';

export async function replaceMasterKey(home: Home, o: { passphrases: Passphrase[]; threshold?: number; reason: string | null; onIssued?: OnIssued }): Promise<RotationReport> {
  const { master: oldMaster, sealKey: oldSeal, auditKey: oldAudit } = home.requireUnsealed();
  if (home.config.backend !== 'software')
    throw new UnavailableError('ERR_BACKEND', `master key replacement is not yet supported for ${home.config.backend}`, { hint: 'revoke and reissue keys with dsk rotate --emergency --all; replace the token key with the HSM vendor tools' });
  const oldMeta = readMetadata(homePath(home.dir, 'fragments'));
  const shares = o.passphrases.length;
  const threshold = o.threshold ?? Math.min(oldMeta.threshold, shares);
  validateSplit(shares, threshold);
  validatePassphrases(o.passphrases, shares);
  const now = home.env.clock.now();
  const oldKcv = await keyCheckValue(oldMaster);

  // 1. the new fragment set, staged (nothing live changes yet)
  const stagingRoot = path.join(home.dir, STAGING_DIR);
  fs.rmSync(stagingRoot, { recursive: true, force: true });
  fs.mkdirSync(stagingRoot, { mode: 0o700 });
  const cost = oldMeta.kdf.name === 'pbkdf2-sha256' ? oldMeta.kdf.iterations : oldMeta.kdf.log_n;
  const kdf = makeKdfParams(oldMeta.kdf.name, cost, home.env.random(16));
  const staged = await writeSoftwareFragments({ dir: stagingRoot, storeId: oldMeta.store_id, key: home.env.random(MASTER_KEY_BYTES), threshold, passphrases: o.passphrases, fragmentDirs: [], kdf, written: [], clock: home.env.clock });
  const newMaster = staged.master;
  const newSeal = await newMaster.hmac(PURPOSE.SEAL);
  const newAudit = await newMaster.hmac(PURPOSE.AUDIT_CHAIN);
  const next = new Home(home.dir, home.config, home.store, home.env, newMaster, newSeal, newAudit);
  let committed = false;
  try {
    // 2. the commit point
    const revoked = await next.tx(async (t) => {
      for (const k of await t.keys.sealedSecrets()) {
        const s = open(oldSeal, k.secret_sealed, secretAad(k.id));
        if (!s) throw new IntegrityError('ERR_SECRET_SEAL', `the signing secret of key ${k.id} does not open: the store was altered; nothing was changed`);
        await t.keys.reseal(k.id, seal(newSeal, s, secretAad(k.id)));
        wipe(s);
      }
      for (const r of await t.events.macs()) {
        if (!constantTimeEqual(rowMac(oldAudit, r.hash), r.mac))
          throw new IntegrityError('ERR_AUDIT_MAC', `audit row #${r.seq} fails its MAC under the current master key; refusing to re-key a tampered log (nothing was changed)`, { hint: 'run dsk audit verify' });
        await t.events.setMac(r.seq, rowMac(newAudit, r.hash));
      }
      await t.masterState.recordReplacement(staged.kcv, now);
      const ids = (await t.keys.list({ status: ['active', 'grace'] })).map((r) => r.id);
      const actions = await revokeForEmergency(t, next.env.clock.now(), ids, true, o.reason ?? 'master key replaced');
      await t.audit({ action: 'MASTER_ROTATION', details: { trigger: 'EMERGENCY', old_key_check_value: oldKcv, new_key_check_value: staged.kcv, threshold, shares, reason: o.reason, keys_revoked: actions.length } });
      return actions;
    });
    committed = true;
    // 3. the new fragments go live; the old ones are destroyed
    swapFragments(home.dir);
    // 4. successors under the new key; a crash here is finished by the next rotate --due
    const pending = (await planDue(next)).rotate.filter((k) => k.trigger === 'EMERGENCY');
    const r = await issueSuccessors(next, pending.map((k) => ({ id: k.id, trigger: 'EMERGENCY' as const })), 0, o.onIssued);
    const fragments = staged.paths.map((p) => path.join(homePath(home.dir, 'fragments'), path.basename(p)));
    return {
      now: iso(now)!,
      dry_run: false,
      actions: [...revoked, ...r.actions.filter((a) => a.action !== 'skip')],
      warnings: [],
      issued: r.issued,
      master: { old_key_check_value: oldKcv, new_key_check_value: staged.kcv, threshold, shares, fragments },
    };
  } catch (e) {
    // Before the commit the staged set is abandoned; after it, the next unseal finishes the swap.
    if (!committed) fs.rmSync(stagingRoot, { recursive: true, force: true });
    throw e;
  } finally {
    wipe(newSeal, newAudit);
    await newMaster.close();
  }
}
