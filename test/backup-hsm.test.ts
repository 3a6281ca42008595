/**
 * Backup and restore of a PKCS#11 home (SoftHSM2): master_key.hsm travels in the archive, the key
 * stays in the token, and the restored home unseals with the same token and PIN: old keys verify.
 */
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { dsk, json, tmpDir } from './helpers.js';
import { pkcs11Home, rederive, requireSoftHsm, softHsm } from './hsm-helpers.js';

const HSM = requireSoftHsm();

describe.skipIf(!HSM)('backup of an HSM home', () => {
  it('holds master_key.hsm and no fragment; the restored home unseals with the same token', async () => {
    const s = pkcs11Home(softHsm(), 'dsk-backup');
    const k = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env: s.env }));
    const out = path.join(tmpDir(), 'hsm.tar');
    const b = json(dsk(['backup', '--out', out, '--json'], { env: s.env }));
    expect(b.backend).toBe('pkcs11');
    expect(b.files.map((f: { path: string }) => f.path)).toEqual(['dsk.json', 'master_key.hsm', 'audit_log/HEAD', 'keys.db', 'audit_log/audit.db']);
    const restored = path.join(tmpDir(), 'restored');
    json(dsk(['restore', out, '--home', restored, '--json'], { env: s.env }));
    expect(fs.readFileSync(path.join(restored, 'master_key.hsm'), 'utf8')).toBe(fs.readFileSync(path.join(s.home, 'master_key.hsm'), 'utf8'));
    const env = { ...s.env, DSK_HOME: restored };
    expect(json(dsk(['audit', 'verify', '--json'], { env }))).toMatchObject({ ok: true, mode: 'structure+mac', head_file: { mac: 'valid' } });
    // the token still derives the same key text from the restored row's salt
    expect(await rederive({ home: restored, env, hsm: s.hsm }, k.id)).toBe(k.api_key);
    expect(json(dsk(['keys', 'show', k.id, '--json'], { env })).status).toBe('active');
    expect(dsk(['keys', 'revoke', k.id, '--reason', 'drill'], { env }).code).toBe(0);
  });
});
