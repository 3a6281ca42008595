/** master_key.hsm is read back from disk a user (or attacker) can edit: every hostile shape is refused. */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tmpDir } from './helpers.js';
import { readHsmFile, writeHsmFile, HSM_FORMAT, type HsmFile } from '../src/master/pkcs11/backend.js';

const GOOD: HsmFile = {
  format: HSM_FORMAT,
  module: '/usr/lib/softhsm/libsofthsm2.so',
  token_label: 'dsk',
  token_serial: 'abc',
  key_label: 'dsk-master',
  key_id: '0011223344556677',
  key_check_value: '0123456789abcdef',
  origin: 'generated',
  mechanism: 'CKM_SHA256_HMAC',
  created_at: '2026-01-01T00:00:00.000Z',
  recovery: null,
};

function withFile(text: string) {
  const dir = tmpDir();
  fs.writeFileSync(path.join(dir, 'master_key.hsm'), text, { mode: 0o600 });
  return dir;
}

describe('master_key.hsm', () => {
  it('round-trips, written 0600', () => {
    const dir = tmpDir();
    writeHsmFile(dir, GOOD);
    expect(fs.statSync(path.join(dir, 'master_key.hsm')).mode & 0o777).toBe(0o600);
    expect(readHsmFile(dir)).toEqual(GOOD);
  });

  it('missing: 4', () => {
    expect(() => readHsmFile(tmpDir())).toThrow(expect.objectContaining({ code: 'ERR_NO_HSM_FILE', exitCode: 4 }));
  });

  it.each([
    ['not JSON', '{'],
    ['null', 'null'],
    ['an array', '[]'],
    ['another format', JSON.stringify({ ...GOOD, format: 'dsk-hsm/9' })],
    ['no module', JSON.stringify({ ...GOOD, module: undefined })],
    ['module not a string', JSON.stringify({ ...GOOD, module: 42 })],
    ['empty token label', JSON.stringify({ ...GOOD, token_label: '' })],
    ['token label over 32', JSON.stringify({ ...GOOD, token_label: 'x'.repeat(33) })],
    ['key id not hex', JSON.stringify({ ...GOOD, key_id: 'zz' })],
    ['key id too long', JSON.stringify({ ...GOOD, key_id: 'ab'.repeat(40) })],
    ['short key check value', JSON.stringify({ ...GOOD, key_check_value: '0123' })],
    ['unknown origin', JSON.stringify({ ...GOOD, origin: 'cloned' })],
  ])('%s: 5 (ERR_HSM_FILE)', (_n, text) => {
    expect(() => readHsmFile(withFile(text))).toThrow(expect.objectContaining({ code: 'ERR_HSM_FILE', exitCode: 5 }));
  });
});
