/**
 * The token-side PBKDF2 (HMAC via CKM_SHA256_HMAC in SoftHSM2) against published vectors and
 * against the software reference: a known key is imported into a real token and driven through
 * the same Pkcs11MasterKey the backend uses.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dsk, ROOT, tmpDir } from './helpers.js';
import { requireSoftHsm, softHsm, MODULE, USER_PIN } from './hsm-helpers.js';
import { Pkcs11Module } from '../src/master/pkcs11/module.js';
import type { Pkcs11Session } from '../src/master/pkcs11/session.js';
import { Pkcs11MasterKey } from '../src/master/pkcs11/backend.js';
import { deriveKeySecret } from '../src/app/keys.js';

const HSM = requireSoftHsm();

// Wycheproof pbkdf2_hmacsha256_test.json (../shared/vectors/wycheproof), the vectors whose password
// is at least 32 bytes (SoftHSM2 refuses shorter CKM_SHA256_HMAC keys). PBKDF2's first 32-byte
// block is the first 32 bytes of dk, which is all MasterKey.stretch computes.
const VECTOR_FILE = [path.join(ROOT, '..', 'shared'), path.join(ROOT, '..', '..', 'shared'), '/work/shared']
  .map((d) => path.join(d, 'vectors', 'wycheproof', 'pbkdf2_hmacsha256_test.json'))
  .find((f) => fs.existsSync(f));
if (!VECTOR_FILE) throw new Error('wycheproof vectors not found (expected ../shared/vectors/wycheproof beside the repository)');
const VECTORS = JSON.parse(fs.readFileSync(VECTOR_FILE, 'utf8'))
  .testGroups.flatMap((g: { tests: unknown[] }) => g.tests)
  .filter((t: { password: string; result: string }) => t.password.length / 2 >= 32 && t.result === 'valid') as Array<{
  tcId: number;
  password: string;
  salt: string;
  iterationCount: number;
  dk: string;
}>;

describe.skipIf(!HSM)('PBKDF2 with the PRF inside the token', () => {
  let mod: Pkcs11Module;
  let session: Pkcs11Session;
  const dir = tmpDir('dsk-prf-');
  const master = crypto.randomBytes(32);
  const keys = new Map<string, Pkcs11MasterKey>();
  const key = (hex: string) => {
    let k = keys.get(hex);
    if (!k) {
      const h = session.importKey(`k${keys.size}`, Buffer.from([keys.size]), Buffer.from(hex, 'hex'));
      k = new Pkcs11MasterKey(session, h, () => {});
      keys.set(hex, k);
    }
    return k;
  };
  beforeAll(() => {
    const hsm = softHsm(dir);
    hsm.initToken('prf');
    process.env.SOFTHSM2_CONF = hsm.conf;
    mod = Pkcs11Module.load(MODULE);
    session = mod.openSession('prf', ['CKM_SHA256_HMAC']);
    session.login(Buffer.from(USER_PIN));
  });
  afterAll(() => {
    session?.close();
    mod?.release();
    delete process.env.SOFTHSM2_CONF;
  });

  it('has vectors to run', () => {
    expect(VECTORS.length).toBeGreaterThanOrEqual(4);
  });

  it.each(VECTORS.map((v) => [v.tcId, v] as const))('wycheproof tcId %i', async (_id, v) => {
    const out = await key(v.password).stretch(Buffer.from(v.salt, 'hex'), v.iterationCount);
    const n = Math.min(32, v.dk.length / 2);
    expect(out.subarray(0, n).toString('hex')).toBe(v.dk.slice(0, n * 2));
  });

  it('hmac() and small iteration counts match node:crypto for a random key and salt', async () => {
    const k = key(master.toString('hex'));
    const data = crypto.randomBytes(77);
    expect((await k.hmac(data)).toString('hex')).toBe(crypto.createHmac('sha256', master).update(data).digest('hex'));
    for (const c of [1, 2, 3, 1000]) {
      const salt = crypto.randomBytes(16);
      expect((await k.stretch(salt, c)).toString('hex')).toBe(crypto.pbkdf2Sync(master, salt, c, 32, 'sha256').toString('hex'));
    }
  });

  it("the seed's derivation through the token equals `dsk derive` on the same key, bit for bit", async () => {
    const salt = crypto.randomBytes(16);
    const mk = path.join(dir, 'mk.bin');
    fs.writeFileSync(mk, master, { mode: 0o600 });
    const ref = dsk(['derive', '--master-key-file', mk, '--salt', salt.toString('hex')]);
    expect(ref.code).toBe(0);
    expect(await deriveKeySecret(key(master.toString('hex')), salt)).toBe(ref.stdout.trim());
  });

  it('a closed master key refuses to work', async () => {
    const k = new Pkcs11MasterKey(session, Buffer.alloc(8), () => {});
    await k.close();
    await expect(k.hmac(Buffer.from('x'))).rejects.toThrow(/closed/);
  });
});
