/**
 * Shamir fragments: the library's split/combine (GF(2^8)), and dsk's sealed fragments on disk
 * (src/master/fragments.ts): every K-subset unseals in any order, K-1 never does, and each
 * fragment is bound to its store, position and threshold.
 *
 * Cost: each passphrase costs one PBKDF2 run at the minimum 600,000 iterations (~150-200 ms), so
 * the on-disk tests keep the number of openings small; the pure Shamir properties run many times.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { combine, split } from 'shamir-secret-sharing';
import { beforeAll, describe, expect, it } from 'vitest';
import { AuthError, IntegrityError, UsageError } from '../src/kernel/errors.js';
import { writeSoftwareFragments } from '../src/app/home.js';
import { assertFragmentDirs, openFragments, readMetadata, validatePassphrases, validateSplit, type FragmentMetadata, type Passphrase } from '../src/master/fragments.js';
import { checkKdfParams, makeKdfParams, PBKDF2_MIN_ITERATIONS } from '../src/master/kdf.js';
import { tmpDir } from './helpers.js';

function subsets<T>(xs: T[], k: number): T[][] {
  if (k === 0) return [[]];
  if (xs.length < k) return [];
  const [first, ...rest] = xs;
  return [...subsets(rest, k - 1).map((s) => [first, ...s]), ...subsets(rest, k)];
}
function permutations<T>(xs: T[]): T[][] {
  if (xs.length <= 1) return [xs];
  return xs.flatMap((x, i) => permutations([...xs.slice(0, i), ...xs.slice(i + 1)]).map((p) => [x, ...p]));
}
function shuffled<T>(xs: T[]): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = crypto.randomInt(i + 1);
    [a[i], a[j]] = [a[j], a[i]];
  }
  return a;
}
const eq = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

describe('shamir-secret-sharing split/combine (the library dsk builds on)', () => {
  it('every ordered 3 of 5 shares reconstructs a 32-byte secret; no 2 of 5 does', async () => {
    const secret = crypto.randomBytes(32);
    const shares = await split(new Uint8Array(secret), 5, 3);
    expect(shares).toHaveLength(5);
    expect(new Set(shares.map((s) => s[s.length - 1])).size).toBe(5); // distinct x coordinates, layout {y1..yn, x}
    let n = 0;
    for (const s of subsets(shares, 3))
      for (const p of permutations(s)) {
        expect(eq(await combine(p), secret)).toBe(true);
        n++;
      }
    expect(n).toBe(60);
    for (const s of subsets(shares, 2)) expect(eq(await combine(s), secret)).toBe(false);
  });

  it('property: any K of N reconstructs, any K-1 does not (K-of-N up to 10, secrets 16-64 bytes)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 10 }).chain((n) => fc.record({ n: fc.constant(n), k: fc.integer({ min: 2, max: n }) })),
        fc.uint8Array({ minLength: 16, maxLength: 64 }),
        fc.infiniteStream(fc.nat()),
        async ({ n, k }, secret, rnd) => {
          const shares = await split(secret, n, k);
          const it = rnd[Symbol.iterator]();
          const order = [...shares].sort(() => (it.next().value % 3) - 1);
          expect(eq(await combine(order.slice(0, k)), secret)).toBe(true);
          // a single share is refused outright; 2+ shares below the threshold give an unrelated value
          if (k - 1 < 2) await expect(combine(order.slice(0, 1))).rejects.toThrow(RangeError);
          else expect(eq(await combine(order.slice(0, k - 1)), secret)).toBe(false);
        },
      ),
      { numRuns: 200 },
    );
  });

  it.each([
    ['shares < threshold', () => split(new Uint8Array(32), 2, 3)],
    ['threshold 1', () => split(new Uint8Array(32), 5, 1)],
    ['more than 255 shares', () => split(new Uint8Array(32), 256, 3)],
    ['empty secret', () => split(new Uint8Array(0), 5, 3)],
  ])('split refuses %s', async (_n, f) => {
    await expect(f()).rejects.toThrow();
  });

  it('combine refuses duplicate shares', async () => {
    const s = await split(new Uint8Array(crypto.randomBytes(32)), 3, 2);
    await expect(combine([s[0], s[0]])).rejects.toThrow();
  });
});

/** A 5-fragment, threshold-3 store written by the real code path, at the minimum KDF cost. */
async function makeStore(opts: { shares?: number; threshold?: number; dir?: string } = {}) {
  const shares = opts.shares ?? 5;
  const threshold = opts.threshold ?? 3;
  const dir = opts.dir ?? tmpDir();
  const key = crypto.randomBytes(32);
  const passphrases: Passphrase[] = Array.from({ length: shares }, (_, i) => ({ source: `file custodian${i + 1}.pass`, value: Buffer.from(`custodian-${i + 1}-${crypto.randomBytes(6).toString('hex')}`) }));
  const written: string[] = [];
  const storeId = crypto.randomBytes(16).toString('hex');
  const r = await writeSoftwareFragments({ dir, storeId, key: Buffer.from(key), threshold, passphrases, fragmentDirs: [], kdf: makeKdfParams('pbkdf2', undefined, crypto.randomBytes(16)), written });
  await r.master.close();
  const fragmentsDir = path.join(dir, 'key_fragments');
  return { dir, fragmentsDir, key, passphrases, storeId, meta: readMetadata(fragmentsDir), written };
}
const copy = (ps: Passphrase[]) => ps.map((p) => ({ source: p.source, value: Buffer.from(p.value) }));

describe('sealed fragments on disk (writeFragments / openFragments)', () => {
  let s: Awaited<ReturnType<typeof makeStore>>;
  beforeAll(async () => {
    s = await makeStore();
  });

  it('writes metadata as the brief describes, files 0600, KDF at the minimum 600,000 iterations', () => {
    expect(s.meta).toMatchObject({ format: 'dsk-fragments/1', store_id: s.storeId, threshold: 3, shares: 5, kdf: { name: 'pbkdf2-sha256', iterations: PBKDF2_MIN_ITERATIONS } });
    expect(s.meta.fragments.map((f) => f.file)).toEqual(['frag1.enc', 'frag2.enc', 'frag3.enc', 'frag4.enc', 'frag5.enc']);
    expect(s.meta.key_check_value).toMatch(/^[0-9a-f]{16}$/);
    for (const f of fs.readdirSync(s.fragmentsDir)) expect(fs.statSync(path.join(s.fragmentsDir, f)).mode & 0o777).toBe(0o600);
    const text = fs.readFileSync(path.join(s.fragmentsDir, 'frag1.enc'), 'utf8');
    for (const p of s.passphrases) expect(text).not.toContain(p.value.toString());
  });

  it('every 3 of the 5 custodians reconstruct the key, passphrases in any order', async () => {
    const all = subsets([0, 1, 2, 3, 4], 3);
    expect(all).toHaveLength(10);
    for (const subset of all) {
      const key = await openFragments(s.meta, s.fragmentsDir, copy(shuffled(subset).map((i) => s.passphrases[i])));
      expect(key.equals(s.key)).toBe(true);
    }
  });

  it('no 2 of the 5 custodians reconstruct it: AuthError, exit 3', async () => {
    const all = subsets([0, 1, 2, 3, 4], 2);
    expect(all).toHaveLength(10);
    for (const subset of all) {
      const e = await openFragments(s.meta, s.fragmentsDir, copy(subset.map((i) => s.passphrases[i]))).catch((x) => x);
      expect(e).toBeInstanceOf(AuthError);
      expect(e.code).toBe('ERR_UNSEAL');
      expect(e.exitCode).toBe(3);
      expect(e.message).toBe('cannot unseal: only 2 of the 3 needed fragments opened');
    }
  });

  it('a wrong passphrase is named by its source, never by its value', async () => {
    const wrong = { source: 'file mallory.pass', value: Buffer.from('not-a-custodian-passphrase') };
    const e = await openFragments(s.meta, s.fragmentsDir, [...copy(s.passphrases.slice(0, 2)), wrong]).catch((x) => x);
    expect(e).toBeInstanceOf(AuthError);
    expect(e.message).toBe('cannot unseal: wrong passphrase: #3 (file mallory.pass) opens none of the fragments');
    expect(e.message).not.toContain('not-a-custodian');
  });

  it('the same passphrase twice is refused as a duplicate', async () => {
    const e = await openFragments(s.meta, s.fragmentsDir, copy([s.passphrases[0], s.passphrases[1], s.passphrases[0]])).catch((x) => x);
    expect(e).toBeInstanceOf(AuthError);
    expect(e.code).toBe('ERR_DUPLICATE_FRAGMENT');
    expect(e.message).toContain('passphrases #1 and #3 (file custodian1.pass) both open fragment #1');
  });

  it('no passphrase at all is an AuthError, not a hang or a crash', async () => {
    const e = await openFragments(s.meta, s.fragmentsDir, []).catch((x) => x);
    expect(e).toBeInstanceOf(AuthError);
    expect(e.code).toBe('ERR_NO_PASSPHRASE');
    expect(e.hint).toBe('3 of 5 custodians must each give their passphrase');
  });

  it('fragment files missing: ERR_UNSEAL caused by ERR_FRAGMENT_MISSING, naming the files and no flag', async () => {
    const d = tmpDir();
    fs.cpSync(s.fragmentsDir, path.join(d, 'key_fragments'), { recursive: true });
    const gone = path.join(d, 'key_fragments', 'frag3.enc');
    fs.rmSync(gone);
    const e = await openFragments(s.meta, path.join(d, 'key_fragments'), copy(s.passphrases.slice(0, 3))).catch((x) => x);
    expect(e).toBeInstanceOf(AuthError);
    expect([e.code, e.cause?.code]).toEqual(['ERR_UNSEAL', 'ERR_FRAGMENT_MISSING']);
    expect(e.message).toBe(`cannot unseal: #3 (file custodian3.pass) opens none of the fragments present (a wrong passphrase, or its fragment is missing); missing fragment files: ${gone}`);
    expect(e.hint).not.toContain('--');
  });

  it('a fragment moved to another position (index and checksum edited to match) does not open: AAD binds the index', async () => {
    const d = tmpDir();
    fs.cpSync(s.fragmentsDir, path.join(d, 'key_fragments'), { recursive: true });
    const fdir = path.join(d, 'key_fragments');
    // Put fragment 1's sealed share in fragment 2's slot, relabelled as #2, metadata checksum fixed up.
    const f1 = JSON.parse(fs.readFileSync(path.join(fdir, 'frag1.enc'), 'utf8'));
    const text = JSON.stringify({ ...f1, index: 2 }, null, 2) + '\n';
    fs.writeFileSync(path.join(fdir, 'frag2.enc'), text);
    const meta: FragmentMetadata = JSON.parse(fs.readFileSync(path.join(fdir, 'metadata.json'), 'utf8'));
    meta.fragments[1].sha256 = crypto.createHash('sha256').update(text).digest('hex');
    fs.writeFileSync(path.join(fdir, 'metadata.json'), JSON.stringify(meta));
    const e = await openFragments(readMetadata(fdir), fdir, copy([s.passphrases[1], s.passphrases[2], s.passphrases[3]])).catch((x) => x);
    expect(e).toBeInstanceOf(AuthError);
    expect(e.message).toContain('#1 (file custodian2.pass) opens none of the fragments');
  });

  it('a threshold lowered in metadata (and in every fragment) does not open: AAD binds the threshold', async () => {
    const d = tmpDir();
    fs.cpSync(s.fragmentsDir, path.join(d, 'key_fragments'), { recursive: true });
    const fdir = path.join(d, 'key_fragments');
    const meta: FragmentMetadata = JSON.parse(fs.readFileSync(path.join(fdir, 'metadata.json'), 'utf8'));
    meta.threshold = 2;
    for (const entry of meta.fragments) {
      const p = path.join(fdir, entry.file);
      const text = JSON.stringify({ ...JSON.parse(fs.readFileSync(p, 'utf8')), threshold: 2 }, null, 2) + '\n';
      fs.writeFileSync(p, text);
      entry.sha256 = crypto.createHash('sha256').update(text).digest('hex');
    }
    fs.writeFileSync(path.join(fdir, 'metadata.json'), JSON.stringify(meta));
    const e = await openFragments(readMetadata(fdir), fdir, copy(s.passphrases.slice(0, 2))).catch((x) => x);
    expect(e).toBeInstanceOf(AuthError);
    expect(e.message).toMatch(/opens none of the fragments/);
  });

  it('a fragment file edited without fixing metadata is an IntegrityError naming the file', async () => {
    const d = tmpDir();
    fs.cpSync(s.fragmentsDir, path.join(d, 'key_fragments'), { recursive: true });
    const fdir = path.join(d, 'key_fragments');
    fs.appendFileSync(path.join(fdir, 'frag3.enc'), ' ');
    const e = await openFragments(readMetadata(fdir), fdir, copy([s.passphrases[0], s.passphrases[2], s.passphrases[4]])).catch((x) => x);
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.code).toBe('ERR_FRAGMENT_TAMPERED');
    expect(e.message).toContain(path.join(fdir, 'frag3.enc'));
    // ... but the other three custodians still unseal (the tampered fragment is simply not used)
    expect((await openFragments(readMetadata(fdir), fdir, copy([s.passphrases[0], s.passphrases[1], s.passphrases[4]]))).equals(s.key)).toBe(true);
  });

  it('a fragment missing from key_fragments is found in an extra directory', async () => {
    const d = tmpDir();
    fs.cpSync(s.fragmentsDir, path.join(d, 'key_fragments'), { recursive: true });
    const fdir = path.join(d, 'key_fragments');
    const elsewhere = tmpDir();
    fs.renameSync(path.join(fdir, 'frag4.enc'), path.join(elsewhere, 'frag4.enc'));
    const ps = copy([s.passphrases[3], s.passphrases[0], s.passphrases[1]]);
    const e = await openFragments(readMetadata(fdir), fdir, ps).catch((x) => x);
    expect(e).toBeInstanceOf(AuthError);
    expect(e.message).toContain(`missing fragment files: ${path.join(fdir, 'frag4.enc')}`);
    expect((await openFragments(readMetadata(fdir), fdir, copy([s.passphrases[3], s.passphrases[0], s.passphrases[1]]), [elsewhere])).equals(s.key)).toBe(true);
  });
});

describe('fragments from another store', () => {
  it('are refused as foreign (IntegrityError) even when metadata checksums are fixed up', async () => {
    const a = await makeStore({ shares: 2, threshold: 2 });
    const b = await makeStore({ shares: 2, threshold: 2 });
    const text = fs.readFileSync(path.join(b.fragmentsDir, 'frag2.enc'), 'utf8');
    fs.writeFileSync(path.join(a.fragmentsDir, 'frag2.enc'), text);
    const meta: FragmentMetadata = JSON.parse(fs.readFileSync(path.join(a.fragmentsDir, 'metadata.json'), 'utf8'));
    meta.fragments[1].sha256 = crypto.createHash('sha256').update(text).digest('hex');
    fs.writeFileSync(path.join(a.fragmentsDir, 'metadata.json'), JSON.stringify(meta));
    const e = await openFragments(readMetadata(a.fragmentsDir), a.fragmentsDir, copy([a.passphrases[0], b.passphrases[1]])).catch((x) => x);
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e.code).toBe('ERR_FRAGMENT_FOREIGN');
    expect(e.message).toContain(path.join(a.fragmentsDir, 'frag2.enc'));
  });
});

describe('property: random small K-of-N stores, written and opened through the real code', () => {
  it('any K custodians in any order unseal; K-1 do not', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 2, max: 4 }).chain((n) => fc.record({ n: fc.constant(n), k: fc.integer({ min: 2, max: n }) })),
        fc.infiniteStream(fc.nat()),
        async ({ n, k }, rnd) => {
          const s = await makeStore({ shares: n, threshold: k });
          const it = rnd[Symbol.iterator]();
          const order = [...s.passphrases].sort(() => (it.next().value % 3) - 1);
          expect((await openFragments(s.meta, s.fragmentsDir, copy(order.slice(0, k)))).equals(s.key)).toBe(true);
          await expect(openFragments(s.meta, s.fragmentsDir, copy(order.slice(0, k - 1)))).rejects.toBeInstanceOf(AuthError);
          fs.rmSync(s.dir, { recursive: true, force: true });
        },
      ),
      { numRuns: 4 },
    );
  });
});

describe('argument and metadata checks', () => {
  it.each([
    [5, 3, null],
    [2, 2, null],
    [255, 255, null],
    [1, 1, 'shares must be between 2 and 255, got 1'],
    [256, 3, 'shares must be between 2 and 255, got 256'],
    [5, 1, 'threshold must be between 2 and the number of shares (5), got 1'],
    [3, 4, 'threshold must be between 2 and the number of shares (3), got 4'],
    [5.5, 3, 'shares must be between 2 and 255, got 5.5'],
  ])('validateSplit(shares %s, threshold %s)', (n, k, msg) => {
    if (msg == null) expect(() => validateSplit(n, k)).not.toThrow();
    else expect(() => validateSplit(n, k)).toThrow(msg);
  });

  const p = (v: string, source = 'file x'): Passphrase => ({ source, value: Buffer.from(v) });
  it.each([
    ['too few', [p('aaaaaaaa')], 2, 'need 2 custodian passphrases (one per fragment), got 1'],
    ['too short', [p('aaaaaaaa'), p('short', 'file b.pass')], 2, 'passphrase #2 (file b.pass) is shorter than 8 characters'],
    ['duplicate', [p('aaaaaaaa'), p('bbbbbbbb'), p('aaaaaaaa')], 3, 'custodians #1 and #3 have the same passphrase; each custodian needs their own'],
  ])('validatePassphrases refuses %s', (_n, list, shares, msg) => {
    expect(() => validatePassphrases(list, shares)).toThrow(msg);
  });

  const salt = crypto.randomBytes(16).toString('base64');
  it.each([
    ['lowered iterations', { name: 'pbkdf2-sha256', iterations: 1000, salt }, 'iterations out of bounds'],
    ['absurd iterations', { name: 'pbkdf2-sha256', iterations: 1e9, salt }, 'iterations out of bounds'],
    ['iterations as a string', { name: 'pbkdf2-sha256', iterations: '600000', salt }, 'iterations out of bounds'],
    ['lowered scrypt N', { name: 'scrypt', log_n: 10, r: 8, p: 1, salt }, 'scrypt N out of bounds'],
    ['scrypt r changed', { name: 'scrypt', log_n: 15, r: 1, p: 1, salt }, 'scrypt r/p unsupported'],
    ['short salt', { name: 'pbkdf2-sha256', iterations: 600000, salt: 'AAAA' }, 'salt'],
    ['unknown kdf', { name: 'md5', salt }, 'unknown kdf'],
    ['missing', null, 'missing'],
  ])('checkKdfParams refuses %s (IntegrityError)', (_n, params, why) => {
    const e = (() => {
      try {
        checkKdfParams(params, 'metadata.json');
      } catch (x) {
        return x as IntegrityError;
      }
    })();
    expect(e).toBeInstanceOf(IntegrityError);
    expect(e?.message).toBe(`metadata.json: kdf parameters rejected (${why})`);
  });
});

describe('fragment directories', () => {
  it('assertFragmentDirs resolves existing directories and refuses anything else (2, ERR_FRAGMENT_DIR)', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, 'x');
    const rel = path.relative(process.cwd(), dir);
    expect(assertFragmentDirs([dir, rel], 'read')).toEqual([dir, dir]);
    expect(assertFragmentDirs([], 'write')).toEqual([]);
    for (const [bad, purpose, hint] of [
      [file, 'write', 'create it first (mode 0700)'],
      [path.join(dir, 'missing'), 'write', 'create it first (mode 0700)'],
      [path.join(dir, 'missing'), 'read', 'give the directory that now holds the fragments'],
    ] as const) {
      const e = (() => {
        try {
          assertFragmentDirs([dir, bad], purpose);
        } catch (x) {
          return x as UsageError;
        }
      })();
      expect(e).toBeInstanceOf(UsageError);
      expect([e?.code, e?.message, e?.hint]).toEqual(['ERR_FRAGMENT_DIR', `fragment directory ${bad} is not a directory`, hint]);
    }
  });
});
