/** Property tests and hostile-input tables for the gateway's header parsers and limiters. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import crypto from 'node:crypto';
import { clientIp, parseCredential } from '../src/gateway/credentials.js';
import { canonicalString, computeSignature, NonceCache, parseSignatureHeaders, signHeaders, timestampFresh } from '../src/gateway/signature.js';
import { buildAllowList, ipAllowed } from '../src/kernel/ip.js';
import { RateLimiter } from '../src/gateway/rate-limit.js';
import { BruteForceGuard } from '../src/gateway/brute-force.js';
import { tokenKid, looksLikeJwt } from '../src/gateway/jwt.js';
import { formatApiKey } from '../src/domain/key-text.js';

const headerValue = fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 }), fc.array(fc.string({ maxLength: 50 }), { maxLength: 3 }));
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
const validKey = fc.tuple(fc.stringMatching(/^[0-9a-f]{12}$/), fc.stringMatching(/^[0-9a-f]{64}$/)).map(([id, s]) => formatApiKey(id, s));

describe('parseCredential', () => {
  it('never throws on arbitrary headers', () => {
    fc.assert(
      fc.property(maybe(headerValue), maybe(headerValue), (a, x) => {
        const r = parseCredential({ authorization: a as any, 'x-api-key': x as any });
        expect(typeof r.ok).toBe('boolean');
        if (r.ok) expect(r.text.length).toBeLessThanOrEqual(8192);
      }),
      { numRuns: 2000 },
    );
  });

  it('round-trips any valid key through Bearer (any scheme case) and X-Api-Key', () => {
    fc.assert(
      fc.property(validKey, fc.constantFrom('Bearer', 'bearer', 'BEARER'), (key, scheme) => {
        expect(parseCredential({ authorization: `${scheme} ${key}` })).toEqual({ ok: true, kind: 'key', text: key });
        expect(parseCredential({ 'x-api-key': key })).toEqual({ ok: true, kind: 'key', text: key });
        expect(parseCredential({ authorization: `Bearer ${key}`, 'x-api-key': key })).toEqual({ ok: true, kind: 'key', text: key });
      }),
    );
  });

  it.each([
    [{}, 'MISSING_KEY'],
    [{ authorization: 'Basic dXNlcjpwYXNz' }, 'MALFORMED_AUTH'],
    [{ authorization: 'Bearer' }, 'MALFORMED_AUTH'],
    [{ authorization: 'Bearer a b' }, 'MALFORMED_AUTH'],
    [{ authorization: 'Bearer \u00e9' }, 'MALFORMED_AUTH'],
    [{ authorization: 'Bearer ' + 'a'.repeat(9000) }, 'MALFORMED_AUTH'],
    [{ authorization: ['Bearer a', 'Bearer b'] }, 'MALFORMED_AUTH'],
    [{ 'x-api-key': '' }, 'MALFORMED_AUTH'],
    [{ authorization: 'Bearer a', 'x-api-key': 'b' }, 'MALFORMED_AUTH'],
  ])('refuses %j as %s', (h, code) => {
    expect(parseCredential(h as any)).toEqual({ ok: false, code });
  });

  it('tells a JWT from a key by shape only', () => {
    expect(parseCredential({ authorization: 'Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln' })).toMatchObject({ ok: true, kind: 'jwt' });
    expect(looksLikeJwt('a.b')).toBe(false);
    fc.assert(fc.property(fc.string({ maxLength: 400 }), (s) => void tokenKid(s)));
  });
});

describe('parseSignatureHeaders', () => {
  it('never throws; accepted values always satisfy the documented grammar', () => {
    fc.assert(
      fc.property(maybe(headerValue), maybe(headerValue), maybe(headerValue), (ts, n, s) => {
        const r = parseSignatureHeaders({ 'x-timestamp': ts as any, 'x-nonce': n as any, 'x-signature': s as any });
        if (r.ok) {
          expect(r.value.timestamp).toMatch(/^\d{1,12}$/);
          expect(r.value.signature).toMatch(/^[0-9a-f]{64}$/);
          expect(r.value.nonce).toMatch(/^([A-Za-z0-9_-]{16,128})?$/);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('accepts what signHeaders produces', () => {
    fc.assert(
      fc.property(validKey, fc.string(), fc.string({ maxLength: 200 }), (key, secret, body) => {
        const h = signHeaders({ apiKey: key, apiSecret: secret, keyId: key.slice(4, 16), method: 'POST', path: '/v1/x?a=1', body });
        const lower = Object.fromEntries(Object.entries(h).map(([k, v]) => [k.toLowerCase(), v]));
        const r = parseSignatureHeaders(lower);
        expect(r.ok).toBe(true);
      }),
      { numRuns: 200 },
    );
  });

  it.each([
    [{}, 'SIGNATURE_MISSING'],
    [{ 'x-timestamp': '1' }, 'SIGNATURE_MALFORMED'],
    [{ 'x-timestamp': '-1', 'x-nonce': 'a'.repeat(16), 'x-signature': 'a'.repeat(64) }, 'SIGNATURE_MALFORMED'],
    [{ 'x-timestamp': '1e9', 'x-nonce': 'a'.repeat(16), 'x-signature': 'a'.repeat(64) }, 'SIGNATURE_MALFORMED'],
    [{ 'x-timestamp': '1', 'x-nonce': 'short', 'x-signature': 'a'.repeat(64) }, 'SIGNATURE_MALFORMED'],
    [{ 'x-timestamp': '1', 'x-nonce': 'a'.repeat(16), 'x-signature': 'g'.repeat(64) }, 'SIGNATURE_MALFORMED'],
    [{ 'x-timestamp': ['1', '2'], 'x-nonce': 'a'.repeat(16), 'x-signature': 'a'.repeat(64) }, 'SIGNATURE_MALFORMED'],
  ])('refuses %j as %s', (h, code) => {
    expect(parseSignatureHeaders(h as any)).toEqual({ ok: false, code });
  });

  it('the canonical string and signature match an independent computation (documented example)', () => {
    const p = { timestamp: '1764403200', nonce: 'n0nce-0123456789ab', method: 'post', path: '/v1/chat/completions?x=1', bodySha256: crypto.createHash('sha256').update('{}').digest('hex'), keyId: '0123456789ab' };
    expect(canonicalString(p)).toBe('1764403200\nn0nce-0123456789ab\nPOST\n/v1/chat/completions?x=1\n44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a\n0123456789ab');
    const expected = crypto.createHmac('sha256', 'dss_example').update(canonicalString(p)).digest('hex');
    expect(computeSignature('dss_example', p)).toBe(expected);
  });

  it('timestamps: inside the window only', () => {
    const now = 1_764_403_200_000;
    expect(timestampFresh('1764403200', now)).toBe(true);
    expect(timestampFresh('1764403500', now)).toBe(true);
    expect(timestampFresh('1764403501', now)).toBe(false);
    expect(timestampFresh('1764402899', now)).toBe(false);
    expect(timestampFresh('999999999999', now)).toBe(false);
  });
});

describe('clientIp (X-Forwarded-For)', () => {
  it('ignores X-Forwarded-For unless the proxy is trusted; never throws', () => {
    fc.assert(
      fc.property(maybe(headerValue), fc.boolean(), (xff, trust) => {
        const ip = clientIp('10.1.2.3', xff as any, trust);
        if (!trust) expect(ip).toBe('10.1.2.3');
        else expect(ip === '10.1.2.3' || ip.length > 0).toBe(true);
      }),
      { numRuns: 2000 },
    );
    expect(clientIp('10.1.2.3', '1.1.1.1, 192.168.0.7', true)).toBe('192.168.0.7');
    expect(clientIp('10.1.2.3', '1.1.1.1, not-an-ip', true)).toBe('10.1.2.3');
    expect(clientIp('10.1.2.3', '1.1.1.1', false)).toBe('10.1.2.3');
  });
});

describe('limits', () => {
  it('CIDR allow-lists, IPv4-mapped addresses, and junk entries deny', () => {
    const l = buildAllowList(['10.0.0.0/8', '::1/128', 'garbage', '192.168.1.1']);
    expect(ipAllowed(l, '10.9.8.7')).toBe(true);
    expect(ipAllowed(l, '::ffff:10.9.8.7')).toBe(true);
    expect(ipAllowed(l, '::1')).toBe(true);
    expect(ipAllowed(l, '192.168.1.1')).toBe(true);
    expect(ipAllowed(l, '192.168.1.2')).toBe(false);
    expect(ipAllowed(l, '127.0.0.1')).toBe(false);
    expect(ipAllowed(buildAllowList(['junk']), '127.0.0.1')).toBe(false);
    expect(ipAllowed(buildAllowList(undefined), '127.0.0.1')).toBe(true);
  });

  it('token bucket: burst then rps, never more', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 50 }), fc.array(fc.integer({ min: 0, max: 500 }), { maxLength: 200 }), (rps, burst, gaps) => {
        const rl = new RateLimiter();
        let t = 0;
        let allowed = 0;
        for (const g of gaps) {
          t += g;
          const w = rl.take('k', { rps, burst }, t);
          if (w === 0) allowed++;
          else expect(w).toBeGreaterThanOrEqual(1);
        }
        expect(allowed).toBeLessThanOrEqual(burst + Math.floor((t / 1000) * rps) + 1);
      }),
    );
  });

  it('nonce cache: a nonce is accepted once per window, again after it', () => {
    const c = new NonceCache(1000, 3);
    expect(c.checkAndAdd('k', 'n1', 0)).toBe(true);
    expect(c.checkAndAdd('k', 'n1', 500)).toBe(false);
    expect(c.checkAndAdd('j', 'n1', 500)).toBe(true);
    expect(c.checkAndAdd('k', 'n1', 1001)).toBe(true);
    for (let i = 0; i < 10; i++) c.checkAndAdd('k', `x${i}`, 1100);
    expect(c.size).toBeLessThanOrEqual(3);
  });

  it('failure tracker: blocks at N within the window, not across windows', () => {
    const g = new BruteForceGuard({ max: 3, windowMs: 1000, blockMs: 5000, ipv6Prefix: 64, keyMax: 100 });
    const f = { fail: (ip: string, t: number) => !!g.fail(ip, null, t).blocked, blockedFor: (ip: string, t: number) => g.blockedFor(ip, t) };
    expect(f.fail('a', 0)).toBe(false);
    expect(f.fail('a', 100)).toBe(false);
    expect(f.fail('a', 1200)).toBe(false); // the first two left the window
    expect(f.blockedFor('a', 1200)).toBe(0);
    expect(f.fail('a', 1300)).toBe(false);
    expect(f.fail('a', 1400)).toBe(true);
    expect(f.blockedFor('a', 1400)).toBe(5);
    expect(f.blockedFor('b', 1400)).toBe(0);
    expect(f.blockedFor('a', 6400)).toBe(0);
  });
});
