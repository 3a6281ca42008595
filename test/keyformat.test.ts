/** Key text format (src/domain/key-text.ts): round trip, error detection, hostile inputs. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checksum, formatApiKey, isKeyId, parseApiKey } from '../src/domain/key-text.js';
import { verifyKeyText, type KeyRow } from '../src/app/keys.js';
import { sha256Hex } from '../src/kernel/crypto.js';

const HEX = '0123456789abcdef'.split('');
const BASE62 = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const hexString = (n: number) => fc.string({ unit: fc.constantFrom(...HEX), minLength: n, maxLength: n });
const keyParts = fc.record({ id: hexString(12), secret: hexString(64) });
const anyKey = keyParts.map(({ id, secret }) => formatApiKey(id, secret));

describe('formatApiKey / parseApiKey', () => {
  it('known vectors: CRC-32 (zlib) of the body in 6 base62 digits, computed independently with python zlib.crc32', () => {
    // python3: zlib.crc32(b"dsk_000000000000_" + b"0"*64) = 4109914205 → base62 "4U8mQn"
    expect(formatApiKey('000000000000', '0'.repeat(64))).toBe(`dsk_000000000000_${'0'.repeat(64)}_4U8mQn`);
    // zlib.crc32(b"dsk_0123456789ab_" + b"0123456789abcdef"*4) = 2349074660 → "2YyTcy"
    expect(checksum(`dsk_0123456789ab_${'0123456789abcdef'.repeat(4)}`)).toBe('2YyTcy');
  });

  it('round trip: any id and secret parse back to themselves', () => {
    fc.assert(
      fc.property(keyParts, ({ id, secret }) => {
        const text = formatApiKey(id, secret);
        expect(text).toHaveLength(88);
        expect(text).toMatch(/^dsk_[0-9a-f]{12}_[0-9a-f]{64}_[0-9A-Za-z]{6}$/);
        expect(parseApiKey(text)).toEqual({ ok: true, id, secret });
      }),
      { numRuns: 500 },
    );
  });

  it('any single-character change is rejected (bad checksum or malformed)', () => {
    const replacement = fc.oneof(
      fc.constantFrom(...HEX, ...BASE62, '_', '-', ' ', 'G', 'é', '\u0000', '😀', '\n'),
      fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }),
    );
    fc.assert(
      fc.property(anyKey, fc.nat(87), replacement, (text, pos, ch) => {
        fc.pre(text[pos] !== ch);
        const mutated = text.slice(0, pos) + ch + text.slice(pos + 1);
        const r = parseApiKey(mutated);
        expect(r.ok).toBe(false);
        if (!r.ok) expect(['MALFORMED', 'BAD_CHECKSUM']).toContain(r.reason);
      }),
      { numRuns: 3000 },
    );
  });

  it('a changed secret or id character with a valid shape is caught by the checksum, not the pattern', () => {
    fc.assert(
      fc.property(anyKey, fc.integer({ min: 4, max: 80 }), fc.constantFrom(...HEX), (text, pos, ch) => {
        fc.pre(pos !== 16 && text[pos] !== ch);
        const mutated = text.slice(0, pos) + ch + text.slice(pos + 1);
        expect(parseApiKey(mutated)).toEqual({ ok: false, reason: 'BAD_CHECKSUM' });
      }),
      { numRuns: 1000 },
    );
  });

  it('dropping, duplicating or swapping characters is rejected', () => {
    fc.assert(
      fc.property(anyKey, fc.nat(86), (text, pos) => {
        expect(parseApiKey(text.slice(0, pos) + text.slice(pos + 1)).ok).toBe(false);
        expect(parseApiKey(text.slice(0, pos) + text[pos] + text.slice(pos)).ok).toBe(false);
        const swapped = text.slice(0, pos) + text[pos + 1] + text[pos] + text.slice(pos + 2);
        if (swapped !== text) expect(parseApiKey(swapped).ok).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });

  const valid = formatApiKey('0123456789ab', 'f'.repeat(64));
  const hostile: [string, unknown][] = [
    ['empty', ''],
    ['prefix only', 'dsk_'],
    ['wrong prefix', 'sk_' + valid.slice(3)],
    ['upper-case prefix', 'DSK' + valid.slice(3)],
    ['OpenAI-style key', 'sk-proj-' + 'a'.repeat(80)],
    ['upper-case hex', valid.slice(0, 4) + valid.slice(4, 81).toUpperCase() + valid.slice(81)],
    ['leading space', ' ' + valid.slice(1)],
    ['trailing newline', valid.slice(0, 87) + '\n'],
    ['surrounding whitespace', ` ${valid} `],
    ['Bearer prefix kept', `Bearer ${valid}`],
    ['NUL byte', valid.slice(0, 40) + '\u0000' + valid.slice(41)],
    ['unicode look-alike (fullwidth digit)', valid.slice(0, 20) + '\uff10' + valid.slice(21)],
    ['emoji', '😀'.repeat(44)],
    ['right-to-left override', '\u202e' + valid.slice(1)],
    ['10k characters', 'a'.repeat(10_000)],
    ['10k characters starting with a valid key', valid + 'a'.repeat(10_000)],
    ['88 underscores', '_'.repeat(88)],
    ['separators moved', valid.replace(/_/g, '-')],
    ['SQL injection', "dsk_' OR 1=1 --"],
    ['regex bomb shaped', 'dsk_' + '0'.repeat(5000) + '_'],
    ['null', null],
    ['undefined', undefined],
    ['number', 42],
    ['object', { toString: () => valid }],
  ];
  it.each(hostile)('hostile input never throws and is refused: %s', (_n, input) => {
    let r: ReturnType<typeof parseApiKey> | undefined;
    expect(() => {
      r = parseApiKey(input as string);
    }).not.toThrow();
    expect(r?.ok).toBe(false);
    const lookups: string[] = [];
    const v = verifyKeyText(input as string, (id) => (lookups.push(id), undefined), Date.now());
    expect(v.ok).toBe(false);
    expect(lookups).toEqual([]); // refused before any store lookup
  });

  it('arbitrary strings never throw, and are accepted only if they are exactly a well-formed key', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary', maxLength: 200 }), fc.string({ maxLength: 100 }).map((s) => 'dsk_' + s)), (s) => {
        const r = parseApiKey(s);
        if (r.ok) expect(formatApiKey(r.id, r.secret)).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('verifyKeyText', () => {
  const id = 'a1b2c3d4e5f6';
  const text = formatApiKey(id, 'ab'.repeat(32));
  const row = (over: Partial<KeyRow> = {}): KeyRow =>
    ({ id, key_hash: sha256Hex(text), status: 'active', expires_at: null, grace_until: null, ...over }) as KeyRow;
  const now = 1_700_000_000_000;

  it.each([
    ['the right key', text, row(), 'OK'],
    ['a key whose id is unknown', text, undefined, 'NOT_FOUND'],
    ['a well-formed key with the right id but another secret', formatApiKey(id, 'cd'.repeat(32)), row(), 'NOT_FOUND'],
    ['a revoked key', text, row({ status: 'revoked' }), 'REVOKED'],
    ['a retired key', text, row({ status: 'retired' }), 'RETIRED'],
    ['a key in grace, before grace_until', text, row({ status: 'grace', grace_until: now + 1 }), 'OK'],
    ['a key in grace, at grace_until', text, row({ status: 'grace', grace_until: now }), 'RETIRED'],
    ['an expired key', text, row({ expires_at: now }), 'EXPIRED'],
    ['a key expiring later', text, row({ expires_at: now + 1 }), 'OK'],
    ['a mistyped key', text.slice(0, 87) + (text[87] === 'a' ? 'b' : 'a'), row(), 'BAD_CHECKSUM'],
  ] as const)('%s → %s', (_n, presented, r, code) => {
    const v = verifyKeyText(presented, (x) => (x === id ? r : undefined), now);
    expect(v.ok ? 'OK' : v.code).toBe(code);
  });
});

describe('isKeyId', () => {
  it.each([
    ['0123456789ab', true],
    ['0123456789AB', false],
    ['0123456789a', false],
    ['0123456789abc', false],
    ['', false],
    ['../../etc/pa', false],
    ['0123456789ab\n', false],
  ])('%j → %s', (s, ok) => expect(isKeyId(s)).toBe(ok));
});
