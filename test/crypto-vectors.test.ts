/**
 * src/kernel/crypto.ts against published vectors:
 *   - Wycheproof (C2SP/wycheproof testvectors_v1 @ dac1dd4, copied unchanged into
 *     test/vectors/wycheproof/): AES-GCM, HMAC-SHA256, PBKDF2-HMAC-SHA256
 *   - RFC 4231 section 4 (HMAC-SHA256 test cases 1-7)
 *   - RFC 7914 section 12 (scrypt)
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { constantTimeEqual, gcmDecrypt, gcmEncrypt, hmacSha256, open, pbkdf2Sha256, pbkdf2Sha256Sync, scrypt, seal } from '../src/kernel/crypto.js';
import { ROOT } from './helpers.js';

// Copied unchanged into the repository so the suite runs on a fresh checkout (see SOURCE.md there).
const VECTOR_DIR = path.join(ROOT, 'test', 'vectors', 'wycheproof');

interface Group<T> {
  tests: T[];
  [k: string]: unknown;
}
function load<T>(file: string): { numberOfTests: number; testGroups: Group<T>[] } {
  return JSON.parse(fs.readFileSync(path.join(VECTOR_DIR, file), 'utf8'));
}
const hex = (s: string) => Buffer.from(s, 'hex');

describe('AES-256-GCM (Wycheproof aes_gcm_test.json, 256-bit keys, 96-bit IVs)', () => {
  interface T {
    tcId: number;
    comment: string;
    key: string;
    iv: string;
    aad: string;
    msg: string;
    ct: string;
    tag: string;
    result: 'valid' | 'invalid' | 'acceptable';
  }
  const file = load<T>('aes_gcm_test.json');
  const groups = file.testGroups.filter((g) => g.keySize === 256 && g.ivSize === 96 && g.tagSize === 128);
  const cases = groups.flatMap((g) => g.tests);
  const valid = cases.filter((t) => t.result === 'valid');
  const invalid = cases.filter((t) => t.result === 'invalid');

  it('covers the whole 256/96 group, valid and invalid', () => {
    expect(groups).toHaveLength(1);
    expect(cases).toHaveLength(66);
    expect(invalid.length).toBe(27);
    expect(valid.length + invalid.length).toBe(cases.length); // no 'acceptable' left untested
  });

  it.each(valid.map((t) => [t.tcId, t] as const))('valid tc %i: encrypts to ct||tag and decrypts back', (_id, t) => {
    const { ciphertext, tag } = gcmEncrypt(hex(t.key), hex(t.iv), hex(t.msg), hex(t.aad));
    expect(ciphertext.toString('hex')).toBe(t.ct);
    expect(tag.toString('hex')).toBe(t.tag);
    expect(gcmDecrypt(hex(t.key), hex(t.iv), hex(t.ct), hex(t.tag), hex(t.aad))?.toString('hex')).toBe(t.msg);
    // the sealed-box layout iv||ct||tag opens with the same vector
    expect(open(hex(t.key), Buffer.concat([hex(t.iv), hex(t.ct), hex(t.tag)]), hex(t.aad))?.toString('hex')).toBe(t.msg);
  });

  it.each(invalid.map((t) => [t.tcId, t.comment, t] as const))('invalid tc %i (%s): decrypt returns null', (_id, _c, t) => {
    expect(gcmDecrypt(hex(t.key), hex(t.iv), hex(t.ct), hex(t.tag), hex(t.aad))).toBeNull();
    expect(open(hex(t.key), Buffer.concat([hex(t.iv), hex(t.ct), hex(t.tag)]), hex(t.aad))).toBeNull();
  });

  it('the zero-length-IV cases for 256-bit keys are refused too', () => {
    const zero = file.testGroups.filter((g) => g.keySize === 256 && g.ivSize === 0).flatMap((g) => g.tests);
    expect(zero.length).toBeGreaterThan(0);
    for (const t of zero) {
      expect(t.result).toBe('invalid');
      expect(gcmDecrypt(hex(t.key), hex(t.iv), hex(t.ct), hex(t.tag), hex(t.aad))).toBeNull();
    }
  });

  it('refuses wrong key sizes, truncated tags, changed AAD and short boxes without throwing', () => {
    const t = valid[0];
    const key = hex(t.key);
    expect(gcmDecrypt(key.subarray(0, 16), hex(t.iv), hex(t.ct), hex(t.tag), hex(t.aad))).toBeNull();
    expect(gcmDecrypt(key, hex(t.iv), hex(t.ct), hex(t.tag).subarray(0, 12), hex(t.aad))).toBeNull();
    expect(gcmDecrypt(key, hex(t.iv), hex(t.ct), hex(t.tag), Buffer.concat([hex(t.aad), Buffer.from([0])]))).toBeNull();
    expect(open(key, Buffer.alloc(27), Buffer.alloc(0))).toBeNull();
    const box = seal(key, Buffer.from('fragment'), Buffer.from('aad'));
    expect(open(key, box, Buffer.from('aad'))?.toString()).toBe('fragment');
    expect(open(key, box, Buffer.from('aae'))).toBeNull();
  });
});

describe('HMAC-SHA256 (Wycheproof hmac_sha256_test.json)', () => {
  interface T {
    tcId: number;
    comment: string;
    key: string;
    msg: string;
    tag: string;
    result: 'valid' | 'invalid';
  }
  const file = load<T>('hmac_sha256_test.json');
  const cases = file.testGroups.flatMap((g) => g.tests.map((t) => ({ ...t, tagBytes: (g.tagSize as number) / 8 })));

  it('covers every case in the file', () => {
    expect(cases).toHaveLength(file.numberOfTests);
    expect(new Set(cases.map((c) => c.tagBytes))).toEqual(new Set([16, 32]));
  });

  // A truncated tag (tagSize 128) is the leading bytes of the full HMAC output (RFC 2104 section 5).
  it.each(cases.map((t) => [t.tcId, t.tagBytes * 8, t.result, t] as const))('tc %i (tag %i bits) is %s', (_id, _bits, result, t) => {
    const full = hmacSha256(hex(t.key), hex(t.msg));
    const match = constantTimeEqual(full.subarray(0, t.tagBytes), hex(t.tag));
    expect(match).toBe(result === 'valid');
  });
});

describe('HMAC-SHA256 (RFC 4231 section 4, test cases 1-7)', () => {
  // Copied from RFC 4231 "Identifiers and Test Vectors for HMAC-SHA-224, -256, -384, and -512",
  // section 4.2 to 4.8, the HMAC-SHA-256 lines. Case 5 is truncated to 128 bits in the RFC.
  const ascii = (s: string) => Buffer.from(s, 'latin1');
  const rfc4231: [number, Buffer, Buffer, string][] = [
    [1, Buffer.alloc(20, 0x0b), ascii('Hi There'), 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7'],
    [2, ascii('Jefe'), ascii('what do ya want for nothing?'), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843'],
    [3, Buffer.alloc(20, 0xaa), Buffer.alloc(50, 0xdd), '773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe'],
    [4, hex('0102030405060708090a0b0c0d0e0f10111213141516171819'), Buffer.alloc(50, 0xcd), '82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b'],
    [5, Buffer.alloc(20, 0x0c), ascii('Test With Truncation'), 'a3b6167473100ee06e0c796c2955552b'],
    [6, Buffer.alloc(131, 0xaa), ascii('Test Using Larger Than Block-Size Key - Hash Key First'), '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54'],
    [
      7,
      Buffer.alloc(131, 0xaa),
      ascii('This is a test using a larger than block-size key and a larger than block-size data. The key needs to be hashed before being used by the HMAC algorithm.'),
      '9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2',
    ],
  ];
  it.each(rfc4231)('test case %i', (_n, key, data, expected) => {
    const out = hmacSha256(key, data).toString('hex');
    expect(out.slice(0, expected.length)).toBe(expected);
    // string input is hashed as UTF-8: the same bytes for these ASCII messages
    if (data.every((b) => b < 0x80)) expect(hmacSha256(key, data.toString('latin1')).toString('hex')).toBe(out);
  });
});

describe('PBKDF2-HMAC-SHA256 (Wycheproof pbkdf2_hmacsha256_test.json)', () => {
  interface T {
    tcId: number;
    comment: string;
    password: string;
    salt: string;
    iterationCount: number;
    dkLen: number;
    dk: string;
    result: 'valid' | 'invalid';
  }
  const file = load<T>('pbkdf2_hmacsha256_test.json');
  const cases = file.testGroups.flatMap((g) => g.tests);
  // The largest count in this file is 80,000 (RFC 7914's second case, ~25 ms), so nothing is
  // skipped. Should a future copy add absurd counts (e.g. 16,777,216), they would be skipped here.
  const ABSURD_ITERATIONS = 1_000_000;
  const runnable = cases.filter((t) => t.iterationCount <= ABSURD_ITERATIONS);

  it('runs every case in the file (none has an absurd iteration count)', () => {
    expect(cases).toHaveLength(file.numberOfTests);
    expect(runnable).toHaveLength(cases.length);
    expect(cases.every((t) => t.result === 'valid')).toBe(true);
  });

  it.each(runnable.map((t) => [t.tcId, t.iterationCount, t.dkLen, t] as const))('tc %i (c=%i, dkLen=%i)', async (_id, _c, _l, t) => {
    const dk = await pbkdf2Sha256(hex(t.password), hex(t.salt), t.iterationCount, t.dkLen);
    expect(dk.toString('hex')).toBe(t.dk);
    if (t.iterationCount <= 4096) expect(pbkdf2Sha256Sync(hex(t.password), hex(t.salt), t.iterationCount, t.dkLen).toString('hex')).toBe(t.dk);
  });
});

describe('scrypt (RFC 7914 section 12)', () => {
  // RFC 7914 "The scrypt Password-Based Key Derivation Function", section 12, first two vectors.
  // These use r=1 / p=16, outside the bounds src/master/kdf.ts enforces on *stored* parameters;
  // the raw wrapper must accept them.
  it('scrypt(P="", S="", N=16, r=1, p=1, dkLen=64)', async () => {
    const dk = await scrypt(Buffer.alloc(0), Buffer.alloc(0), 16, 1, 1, 64);
    expect(dk.toString('hex')).toBe(
      '77d6576238657b203b19ca42c18a0497f16b4844e3074ae8dfdffa3fede21442' + 'fcd0069ded0948f8326a753a0fc81f17e8d3e0fb2e0d3628cf35e20c38d18906',
    );
  });
  it('scrypt(P="password", S="NaCl", N=1024, r=8, p=16, dkLen=64)', async () => {
    const dk = await scrypt(Buffer.from('password'), Buffer.from('NaCl'), 1024, 8, 16, 64);
    expect(dk.toString('hex')).toBe(
      'fdbabe1c9d3472007856e7190d01e9fe7c6ad7cbc8237830e77376634b373162' + '2eaf30d92e22a3886ff109279d9830dac727afb94a83ee6d8360cbdfa2cc0640',
    );
  });
  it('rejects an N that is not a power of two', async () => {
    await expect(scrypt(Buffer.from('p'), Buffer.from('s'), 1000, 8, 1, 32)).rejects.toThrow();
  });
});

describe('constantTimeEqual', () => {
  it.each([
    ['', '', true],
    ['a', 'a', true],
    ['a', 'b', false],
    ['abc', 'ab', false],
    ['ab', 'abc', false],
    ['', 'x', false],
  ])('%j vs %j → %s', (a, b, eq) => {
    expect(constantTimeEqual(a, b)).toBe(eq);
    expect(constantTimeEqual(Buffer.from(a), Buffer.from(b))).toBe(eq);
  });
});
