import { describe, expect, it } from 'vitest';
import { URI } from 'otpauth';
import { secretFromUri, totpCode, totpStep, totpUri, verifyTotp } from '../src/domain/totp.js';

// RFC 6238 Appendix B: test vectors, 8 digits, 30 s steps. The seeds are the ASCII strings the
// RFC's reference code uses: 20 bytes for SHA-1, 32 for SHA-256, 64 for SHA-512.
const SEEDS = {
  SHA1: Buffer.from('12345678901234567890'),
  SHA256: Buffer.from('12345678901234567890123456789012'),
  SHA512: Buffer.from('1234567890123456789012345678901234567890123456789012345678901234'),
};
const VECTORS: [number, string, keyof typeof SEEDS, string][] = [
  [59, '0000000000000001', 'SHA1', '94287082'],
  [59, '0000000000000001', 'SHA256', '46119246'],
  [59, '0000000000000001', 'SHA512', '90693936'],
  [1111111109, '00000000023523EC', 'SHA1', '07081804'],
  [1111111109, '00000000023523EC', 'SHA256', '68084774'],
  [1111111109, '00000000023523EC', 'SHA512', '25091201'],
  [1111111111, '00000000023523ED', 'SHA1', '14050471'],
  [1111111111, '00000000023523ED', 'SHA256', '67062674'],
  [1111111111, '00000000023523ED', 'SHA512', '99943326'],
  [1234567890, '000000000273EF07', 'SHA1', '89005924'],
  [1234567890, '000000000273EF07', 'SHA256', '91819424'],
  [1234567890, '000000000273EF07', 'SHA512', '93441116'],
  [2000000000, '0000000003F940AA', 'SHA1', '69279037'],
  [2000000000, '0000000003F940AA', 'SHA256', '90698825'],
  [2000000000, '0000000003F940AA', 'SHA512', '38618901'],
  [20000000000, '0000000027BC86AA', 'SHA1', '65353130'],
  [20000000000, '0000000027BC86AA', 'SHA256', '77737706'],
  [20000000000, '0000000027BC86AA', 'SHA512', '47863826'],
];

describe('TOTP (RFC 6238) through src/domain/totp.ts', () => {
  it.each(VECTORS)('T=%i (step %s) %s → %s', (t, stepHex, alg, code) => {
    expect(totpStep(t * 1000)).toBe(parseInt(stepHex, 16));
    expect(totpCode(SEEDS[alg], t * 1000, { algorithm: alg, digits: 8 })).toBe(code);
  });

  it('uses SHA-1, 6 digits, 30 s by default (the last 6 digits of the 8-digit vectors)', () => {
    expect(totpCode(SEEDS.SHA1, 59_000)).toBe('287082');
    expect(totpCode(SEEDS.SHA1, 1111111109_000)).toBe('081804');
  });

  it('accepts a code within ±1 step, returns its step, and refuses anything further or malformed', () => {
    const s = SEEDS.SHA1;
    const t = 1111111111_000;
    const step = totpStep(t);
    expect(verifyTotp(s, totpCode(s, t), t)).toBe(step);
    expect(verifyTotp(s, totpCode(s, t - 30_000), t)).toBe(step - 1);
    expect(verifyTotp(s, totpCode(s, t + 30_000), t)).toBe(step + 1);
    expect(verifyTotp(s, totpCode(s, t - 60_000), t)).toBeNull();
    expect(verifyTotp(s, totpCode(s, t + 60_000), t)).toBeNull();
    for (const bad of ['', '12345', '1234567', 'abcdef', ' 12345', '12345\n'])
      expect(verifyTotp(s, bad, t)).toBeNull();
    const wrong = String((Number(totpCode(s, t)) + 1) % 1_000_000).padStart(6, '0');
    expect(verifyTotp(s, wrong, t)).toBeNull();
  });

  it('writes an otpauth:// URI authenticator apps read back to the same secret and parameters', () => {
    const secret = Buffer.from('00112233445566778899aabbccddeeff00112233', 'hex');
    const uri = totpUri(secret, 'alice');
    expect(uri).toMatch(/^otpauth:\/\/totp\/dsk:alice\?/);
    const parsed = URI.parse(uri) as unknown as { algorithm: string; digits: number; period: number; issuer: string };
    expect([parsed.algorithm, parsed.digits, parsed.period, parsed.issuer]).toEqual(['SHA1', 6, 30, 'dsk']);
    expect(secretFromUri(uri).equals(secret)).toBe(true);
  });
});
