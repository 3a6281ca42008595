/**
 * The PostgreSQL address parser at the trust boundary (argv, dsk.json): generated addresses
 * round-trip, a parsed address never prints a password, and any text at all either parses or is
 * refused as a usage error (exit 2) — never another exception. Hostile inputs in a table.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parsePgUrl } from '../src/store/postgres/address.js';
import { UsageError } from '../src/kernel/errors.js';

const ident = fc.stringMatching(/^[a-z][a-z0-9_]{0,15}$/);
const host = fc.oneof(fc.constantFrom('127.0.0.1', 'localhost', 'db.internal', '::1'), fc.stringMatching(/^[a-z][a-z0-9-]{0,10}(\.[a-z]{2,5}){0,2}$/));

describe('postgres:// addresses', () => {
  it('generated addresses parse to their parts, and the redacted form parses back to the same', () => {
    fc.assert(
      fc.property(ident, host, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }), ident, fc.constantFrom('postgres', 'postgresql', 'POSTGRES'), (user, h, port, db, scheme) => {
        const hostText = h.includes(':') ? `[${h}]` : h;
        const a = parsePgUrl(`${scheme}://${user}@${hostText}${port ? `:${port}` : ''}/${db}`);
        expect(a).toMatchObject({ user, host: h, port: port ?? 5432, database: db, ssl: false });
        expect(parsePgUrl(a.redacted)).toEqual(a);
      }),
    );
  });

  it('any text parses or is a usage error, and no message repeats a password', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.webUrl().map((u) => u.replace(/^https?/, 'postgres')), fc.tuple(ident, fc.string({ minLength: 6 }), host, ident).map(([u, p, h, d]) => `postgres://${u}:${encodeURIComponent('Zq' + p)}@${h.includes(':') ? `[${h}]` : h}/${d}`)), (text) => {
        try {
          const a = parsePgUrl(text);
          expect(a.redacted).toMatch(/^postgres:\/\/[^:@/]*@/);
        } catch (e) {
          expect(e).toBeInstanceOf(UsageError);
          const pw = /^postgres:\/\/[^:]*:([^@]+)@/.exec(text)?.[1];
          if (pw?.startsWith('Zq')) expect((e as Error).message + (e as UsageError).hint).not.toContain(pw);
        }
      }),
      { numRuns: 500 },
    );
  });

  it.each([
    ['postgres://u:secret@h/db', 'ERR_STORE_URL_PASSWORD'],
    ['postgres://h', 'ERR_STORE_URL'],
    ['postgres://h/', 'ERR_STORE_URL'],
    ['postgres://h/a/b', 'ERR_STORE_URL'],
    ['postgres:///db', 'ERR_STORE_URL'],
    ['postgres://h/db?sslmode=allow', 'ERR_STORE_URL'],
    ['postgres://h/db?password=x', 'ERR_STORE_URL'],
    ['postgres://h:99999/db', 'ERR_STORE_URL'],
    ['mysql://h/db', 'ERR_STORE_URL'],
    ['/var/lib/dsk', 'ERR_STORE_URL'],
    ['', 'ERR_STORE_URL'],
  ])('refuses %j (%s, exit 2)', (text, code) => {
    expect(() => parsePgUrl(text)).toThrow(expect.objectContaining({ code, exitCode: 2 }));
  });

  it('keeps TLS settings and a user with escapes; the user defaults to PGUSER, then postgres', () => {
    expect(parsePgUrl('postgresql://a%40b@db.internal:6432/dsk?sslmode=verify-full')).toMatchObject({ user: 'a@b', port: 6432, ssl: true, redacted: 'postgres://a%40b@db.internal:6432/dsk' });
    const saved = process.env.PGUSER;
    delete process.env.PGUSER;
    expect(parsePgUrl('postgres://h/db').user).toBe('postgres');
    if (saved !== undefined) process.env.PGUSER = saved;
  });
});
