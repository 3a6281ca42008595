/**
 * The seed's generate_api_key(master_key, salt), checked against an independent implementation:
 * python3's hashlib.pbkdf2_hmac and hmac, exactly as the seed's Python code computes it.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateApiKey } from '../src/domain/derivation.js';
import { openUnsealed, defaultEnv } from '../src/app/home.js';
import { getKey, listKeys, recoverKeyText } from '../src/app/keys.js';
import { openFragments, readMetadata } from '../src/master/fragments.js';
import { parseApiKey } from '../src/domain/key-text.js';
import { DSK, dsk, json, makeHome, requireTool, tmpDir } from './helpers.js';

const PYTHON = `
import hashlib, hmac, json, sys
out = []
for c in json.load(sys.stdin):
    mk, salt = bytes.fromhex(c["mk"]), bytes.fromhex(c["salt"])
    k = hashlib.pbkdf2_hmac("sha256", mk, salt, 100000, 32)
    out.append(hmac.new(k, b"deepseek_api_key", hashlib.sha256).hexdigest())
json.dump(out, sys.stdout)
`;

/** The seed's formula computed by python3, one process for a batch of (master key, salt) pairs. */
function seedPython(cases: { mk: Buffer; salt: Buffer }[]): string[] {
  const r = spawnSync('python3', ['-c', PYTHON], { input: JSON.stringify(cases.map((c) => ({ mk: c.mk.toString('hex'), salt: c.salt.toString('hex') }))), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as string[];
  expect(out).toHaveLength(cases.length);
  return out;
}

const havePython = requireTool('python3', 'the cross-checks of dsk derive against the seed formula in Python');

describe.skipIf(!havePython)('dsk derive matches the seed formula computed by python3', () => {
  const dir = tmpDir();
  const cases: { name: string; mk: Buffer; salt: Buffer; hexFile?: boolean }[] = [
    { name: 'random 32-byte key, 16-byte salt', mk: crypto.randomBytes(32), salt: crypto.randomBytes(16) },
    { name: 'random 32-byte key, empty salt', mk: crypto.randomBytes(32), salt: Buffer.alloc(0) },
    { name: 'random 32-byte key, 1 KiB salt', mk: crypto.randomBytes(32), salt: crypto.randomBytes(1024) },
    { name: 'random 64-byte key (longer than a SHA-256 block), 16-byte salt', mk: crypto.randomBytes(64), salt: crypto.randomBytes(16) },
    // raw key files are taken byte for byte: a trailing 0x0a / 0x0d0a must not be stripped
    { name: 'key ending in \\n', mk: Buffer.concat([crypto.randomBytes(31), Buffer.from([0x0a])]), salt: crypto.randomBytes(16) },
    { name: 'key ending in \\r\\n', mk: Buffer.concat([crypto.randomBytes(30), Buffer.from([0x0d, 0x0a])]), salt: crypto.randomBytes(8) },
    { name: 'hex key file (--hex)', mk: crypto.randomBytes(32), salt: crypto.randomBytes(16), hexFile: true },
    { name: 'hex key file (--hex), upper-case salt', mk: crypto.randomBytes(32), salt: crypto.randomBytes(12), hexFile: true },
  ];
  let expected: string[] = [];
  beforeAll(() => {
    expected = seedPython(cases);
  });

  it.each(cases.map((c, i) => [c.name, i] as const))('%s', (_name, i) => {
    const c = cases[i];
    const f = path.join(dir, `mk${i}`);
    fs.writeFileSync(f, c.hexFile ? c.mk.toString('hex') + '\n' : c.mk, { mode: 0o600 });
    const saltHex = i === 7 ? c.salt.toString('hex').toUpperCase() : c.salt.toString('hex');
    const r = dsk(['derive', '--master-key-file', f, '--salt', saltHex, ...(c.hexFile ? ['--hex'] : [])]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(expected[i]);
    expect(expected[i]).toMatch(/^[0-9a-f]{64}$/);
  });

  it('--json gives the same value, and stdin (-) works as the key file', () => {
    const c = cases[0];
    // raw bytes on stdin (the shared dsk() helper only takes text input)
    const raw = spawnSync(process.execPath, [DSK, 'derive', '--master-key-file', '-', '--salt', c.salt.toString('hex'), '--json'], { input: c.mk, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
    expect(raw.status).toBe(0);
    expect(JSON.parse(raw.stdout)).toEqual({ salt: c.salt.toString('hex'), api_key: expected[0] });
    const viaHex = json(dsk(['derive', '--master-key-file', '-', '--hex', '--salt', c.salt.toString('hex'), '--json'], { input: c.mk.toString('hex') + '\n' }));
    expect(viaHex).toEqual({ salt: c.salt.toString('hex'), api_key: expected[0] });
  });

  it('core generateApiKey agrees with python on every case', async () => {
    for (let i = 0; i < cases.length; i++) expect(await generateApiKey(cases[i].mk, cases[i].salt)).toBe(expected[i]);
  });

  it.each([
    ['odd-length salt', ['--salt', 'abc'], /--salt must be hex/],
    ['non-hex salt', ['--salt', 'zz'], /--salt must be hex/],
  ])('refuses %s (exit 2)', (_n, args, msg) => {
    const f = path.join(dir, 'mk0');
    const r = dsk(['derive', '--master-key-file', f, ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(msg);
    expect(r.stdout).toBe('');
  });

  it('refuses a group-readable master key file (exit 5) and a non-hex file with --hex (exit 2)', () => {
    const loose = path.join(dir, 'loose.bin');
    fs.writeFileSync(loose, crypto.randomBytes(32), { mode: 0o644 });
    fs.chmodSync(loose, 0o644);
    let r = dsk(['derive', '--master-key-file', loose, '--salt', '00']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain(`${loose} is accessible by group or others`);
    const notHex = path.join(dir, 'nothex');
    fs.writeFileSync(notHex, 'not hex at all', { mode: 0o600 });
    r = dsk(['derive', '--master-key-file', notHex, '--salt', '00', '--hex']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--hex given but the master key file is not hex');
  });
});

describe.skipIf(!havePython)('issued keys are the seed formula applied to the home master key', () => {
  it('the secret part of keys issued by dsk keygen equals python(master, salt); recoverKeyText re-derives them', async () => {
    const { home, pass, env } = makeHome(tmpDir(), { shares: 3, threshold: 2 });
    const issued = [
      json(dsk(['keygen', '--name', 'a', '--role', 'developer', '--json'], { env })),
      json(dsk(['keygen', '--name', 'b', '--role', 'automation', '--json'], { env })),
    ];
    // Rebuild the master key the way unseal does (it is never exported by dsk itself).
    const fragmentsDir = path.join(home, 'key_fragments');
    const mk = await openFragments(
      readMetadata(fragmentsDir),
      fragmentsDir,
      pass.slice(1, 3).map((f) => ({ source: f, value: fs.readFileSync(f).subarray(0, -1) })),
    );
    const db = new Database(path.join(home, 'keys.db'), { readonly: true });
    const salts = issued.map((k) => (db.prepare('SELECT salt FROM keys WHERE id = ?').get(k.id) as { salt: string }).salt);
    db.close();
    const py = seedPython(salts.map((s) => ({ mk, salt: Buffer.from(s, 'hex') })));
    issued.forEach((k, i) => {
      const p = parseApiKey(k.api_key);
      expect(p.ok && p.secret).toBe(py[i]);
      expect(salts[i]).toMatch(/^[0-9a-f]{32}$/);
    });
    mk.fill(0);

    const h = await openUnsealed(home, defaultEnv('test'), {
      passphrases: async () => pass.slice(0, 2).map((f) => ({ source: f, value: fs.readFileSync(f).subarray(0, -1) })),
      pin: async () => Buffer.alloc(0),
    });
    try {
      expect(await listKeys(h)).toHaveLength(2);
      for (const k of issued) expect(await recoverKeyText(h, await getKey(h, k.id))).toBe(k.api_key);
    } finally {
      await h.close();
    }
  });
});
