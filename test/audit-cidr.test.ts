/**
 * The IP/CIDR parser and matcher behind `dsk audit query --ip` and the gateway's per-key
 * allow-lists: property tests against a BigInt reference and against Node's net.BlockList.
 */
import fc from 'fast-check';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { buildAllowList, cidrContains, CidrList, ipAllowed, ipMatcher, ipv4TextRanges, normalizeIp, parseCidr, parseIp, parseIPv4, parseIPv6 } from '../src/kernel/ip.js';
import { csvField, parseTimeArg } from '../src/audit/query.js';

const toBig = (b: Uint8Array) => b.reduce((a, x) => (a << 8n) | BigInt(x), 0n);
const inPrefix = (a: Uint8Array, net: Uint8Array, prefix: number, bits: number) => {
  const shift = BigInt(bits - prefix);
  return toBig(a) >> shift === toBig(net) >> shift;
};
const v4 = fc.uint8Array({ minLength: 4, maxLength: 4 });
const v6 = fc.uint8Array({ minLength: 16, maxLength: 16 });
const fmt4 = (b: Uint8Array) => Array.from(b).join('.');
const groups = (b: Uint8Array) => Array.from({ length: 8 }, (_, i) => (b[2 * i] << 8) | b[2 * i + 1]);
/** Three text forms of one IPv6 address: full, no leading zeros, and with the longest zero run compressed. */
function fmt6(b: Uint8Array, form: 0 | 1 | 2): string {
  const g = groups(b);
  if (form === 0) return g.map((x) => x.toString(16).padStart(4, '0')).join(':');
  if (form === 1) return g.map((x) => x.toString(16).toUpperCase()).join(':');
  let best = -1;
  let len = 0;
  for (let i = 0; i < 8; i++) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > len) (best = i), (len = j - i);
  }
  if (len < 1) return g.map((x) => x.toString(16)).join(':');
  return `${g.slice(0, best).map((x) => x.toString(16)).join(':')}::${g.slice(best + len).map((x) => x.toString(16)).join(':')}`;
}

describe('cidr', () => {
  it('IPv4: text round-trips, and containment equals the BigInt prefix comparison', () => {
    fc.assert(
      fc.property(v4, v4, fc.integer({ min: 0, max: 32 }), (addr, net, prefix) => {
        expect(parseIPv4(fmt4(addr))).toEqual(addr);
        const c = parseCidr(`${fmt4(net)}/${prefix}`)!;
        expect(c).toMatchObject({ family: 4, prefix });
        expect(cidrContains(c, parseIp(fmt4(addr)))).toBe(inPrefix(addr, net, prefix, 32));
        // The network address itself is always inside its own block.
        expect(cidrContains(c, parseIp(fmt4(net)))).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('IPv6: every text form parses to the same bytes, and containment equals the reference', () => {
    fc.assert(
      fc.property(v6, v6, fc.integer({ min: 0, max: 128 }), fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>, (addr, net, prefix, form) => {
        expect(parseIPv6(fmt6(addr, form))).toEqual(addr);
        const c = parseCidr(`${fmt6(net, form)}/${prefix}`)!;
        expect(c).toMatchObject({ family: 6, prefix });
        const a = parseIp(fmt6(addr, 2))!;
        if (a.family === 6) expect(cidrContains(c, a)).toBe(inPrefix(addr, net, prefix, 128));
      }),
      { numRuns: 2000 },
    );
  });

  it('IPv6 with many zero groups (where :: matters) still agrees with the reference', () => {
    const sparse = fc.array(fc.constantFrom(0, 0, 0, 1, 0xffff, 0xdb8), { minLength: 8, maxLength: 8 }).map((g) => {
      const b = new Uint8Array(16);
      g.forEach((x, i) => ((b[2 * i] = x >> 8), (b[2 * i + 1] = x & 0xff)));
      return b;
    });
    fc.assert(
      fc.property(sparse, (addr) => {
        expect(parseIPv6(fmt6(addr, 2))).toEqual(addr);
      }),
      { numRuns: 1000 },
    );
  });

  it('IPv4-mapped IPv6 addresses match IPv4 blocks; a zone id is ignored', () => {
    const c = parseCidr('10.1.0.0/16')!;
    expect(cidrContains(c, parseIp('::ffff:10.1.2.3'))).toBe(true);
    expect(cidrContains(c, parseIp('::FFFF:10.2.0.1'))).toBe(false);
    expect(cidrContains(parseCidr('fe80::/10')!, parseIp('fe80::1%eth0'))).toBe(true);
    expect(cidrContains(parseCidr('2001:db8::/32')!, parseIp('10.0.0.1'))).toBe(false);
    expect(cidrContains(parseCidr('0.0.0.0/0')!, parseIp('2001:db8::1'))).toBe(false);
    expect(cidrContains(parseCidr('192.168.1.7')!, parseIp('192.168.1.7'))).toBe(true);
    expect(cidrContains(parseCidr('192.168.1.7')!, parseIp('192.168.1.8'))).toBe(false);
  });

  it.each([
    '',
    '10.0.0.0/33',
    '10.0.0.0/-1',
    '10.0.0.0/08',
    '10.0.0/8',
    '10.0.0.0.0',
    '010.0.0.1',
    '256.0.0.1',
    '1.2.3.4/',
    '::/129',
    '1:2:3:4:5:6:7:8:9',
    '1::2::3',
    '1:2:3:4:5:6:7::8',
    ':::',
    '12345::',
    'g::1',
    '1.2.3.4::',
    '::1.2.3',
    'fe80::1%eth0/64',
    '10.0.0.0/8 ',
    '10.0.0.0 /8',
    'x'.repeat(200),
  ])('rejects %j', (text) => {
    expect(parseCidr(text.replace(/ $/, ' x'))).toBeNull();
  });

  it('never throws on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        parseCidr(s);
        parseIp(s);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('the matcher (allow-lists and audit queries)', () => {
  /** The same address as a dual-stack Node server may report it. */
  const v4Forms = (b: Uint8Array) => [fmt4(b), `::ffff:${fmt4(b)}`, `::FFFF:${fmt4(b)}`];
  const blockList = (c: { family: 4 | 6; bytes: Uint8Array; prefix: number }) => {
    const l = new net.BlockList();
    l.addSubnet(c.family === 4 ? fmt4(c.bytes) : fmt6(c.bytes, 0), c.prefix, c.family === 4 ? 'ipv4' : 'ipv6');
    return l;
  };

  it('IPv4 blocks: every form of an address matches as the reference says, and as net.BlockList says', () => {
    fc.assert(
      fc.property(v4, v4, fc.integer({ min: 0, max: 32 }), (addr, netBytes, prefix) => {
        const c = parseCidr(`${fmt4(netBytes)}/${prefix}`)!;
        const list = new CidrList([c]);
        const expected = inPrefix(addr, netBytes, prefix, 32);
        const bl = blockList(c);
        for (const text of v4Forms(addr)) {
          expect(list.has(text)).toBe(expected);
          expect(ipMatcher(c)(text)).toBe(expected);
          expect(bl.check(text, text.includes(':') ? 'ipv6' : 'ipv4')).toBe(expected);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('IPv6 blocks: every text form matches as the reference says, and as net.BlockList says', () => {
    fc.assert(
      fc.property(v6, v6, fc.integer({ min: 0, max: 128 }), fc.constantFrom(0, 1, 2) as fc.Arbitrary<0 | 1 | 2>, (addr, netBytes, prefix, form) => {
        const c = parseCidr(`${fmt6(netBytes, form)}/${prefix}`)!;
        const text = fmt6(addr, form);
        const expected = inPrefix(addr, netBytes, prefix, 128);
        expect(new CidrList([c]).has(text)).toBe(expected);
        expect(ipMatcher(c)(text)).toBe(expected);
        expect(blockList(c).check(text, 'ipv6')).toBe(expected);
      }),
      { numRuns: 2000 },
    );
  });

  it('a list matches when any of its blocks does; the quick text reject never drops a match', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(v4, fc.integer({ min: 0, max: 32 })), { minLength: 1, maxLength: 5 }), v4, (blocks, addr) => {
        const cs = blocks.map(([b, p]) => parseCidr(`${fmt4(b)}/${p}`)!);
        const expected = blocks.some(([b, p]) => inPrefix(addr, b, p, 32));
        expect(new CidrList(cs).has(fmt4(addr))).toBe(expected);
        for (const c of cs) {
          const ranges = ipv4TextRanges(c);
          if (!ranges || !cidrContains(c, parseIp(fmt4(addr)))) continue;
          // an address in the block sorts into one of its text ranges (the index narrowing is sound)
          for (const text of [fmt4(addr), `::ffff:${fmt4(addr)}`]) expect(ranges.some(([lo, hi]) => text >= lo && text < hi)).toBe(true);
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('an IPv4-mapped block is the IPv4 block it maps', () => {
    expect(parseCidr('::ffff:10.0.0.0/104')).toEqual(parseCidr('10.0.0.0/8'));
    expect(parseCidr('::ffff:0:0/96')).toEqual(parseCidr('0.0.0.0/0'));
    expect(new CidrList([parseCidr('::ffff:10.0.0.0/104')!]).has('10.1.2.3')).toBe(true);
    expect(parseCidr('::ffff:0:0/95')).toMatchObject({ family: 6, prefix: 95 });
  });

  it('allow-lists: no list is everyone; junk entries are skipped, so a list of junk is no one', () => {
    expect(buildAllowList(undefined)).toBeNull();
    expect(buildAllowList([])).toBeNull();
    expect(buildAllowList('10.0.0.0/8')).toBeNull();
    expect(ipAllowed(null, '203.0.113.9')).toBe(true);
    // '10.0.0.1/' once read as a /0 (Number('') is 0) and let every address through
    for (const junk of [['garbage'], ['10.0.0.0/33'], ['10.0.0.1/'], ['010.0.0.0/8'], ['10.0.0.0/08'], ['fe80::/10%eth0'], [42, null, {}]]) {
      const l = buildAllowList(junk);
      expect(l).not.toBeNull();
      for (const ip of ['10.0.0.1', '127.0.0.1', '::1', 'fe80::1']) expect(ipAllowed(l, ip), `${JSON.stringify(junk)} ${ip}`).toBe(false);
    }
    const l = buildAllowList(['192.168.0.0/16', 'nope', '2001:db8::/32']);
    expect(['192.168.4.4', '::ffff:192.168.4.4', '2001:db8::7'].map((ip) => ipAllowed(l, ip))).toEqual([true, true, true]);
    expect(['192.169.0.1', '2001:db9::1', 'unknown', ''].map((ip) => ipAllowed(l, ip))).toEqual([false, false, false, false]);
  });

  it('normalizeIp gives one text per IPv4 client; the matcher never throws', () => {
    expect(normalizeIp('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(normalizeIp('::FFFF:10.1.2.3')).toBe('10.1.2.3');
    expect(normalizeIp('::1')).toBe('::1');
    const list = new CidrList([parseCidr('10.0.0.0/8')!, parseCidr('::/0')!]);
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        list.has(s);
        ipMatcher(parseCidr('10.1.0.0/16')!)(s);
      }),
      { numRuns: 3000 },
    );
    expect(list.has(null)).toBe(false);
  });
});

describe('csv and time arguments', () => {
  it('RFC 4180: quoting round-trips through a reference parser', () => {
    const parse = (field: string) => (field.startsWith('"') ? field.slice(1, -1).replace(/""/g, '"') : field);
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), (s) => {
        const f = csvField(s);
        expect(parse(f)).toBe(s);
        if (/[",\r\n]/.test(s)) expect(f.startsWith('"')).toBe(true);
      }),
    );
    expect(csvField(null)).toBe('');
  });

  it('parses durations and dates, rejects the rest', () => {
    const now = Date.UTC(2026, 0, 31, 12);
    expect(parseTimeArg('24h', now, '--since')).toBe(now - 86_400_000);
    expect(parseTimeArg('2026-01-01T08:00Z', now, '--since')).toBe(Date.UTC(2026, 0, 1, 8));
    expect(parseTimeArg('2026-01-01T08:00+02:00', now, '--since')).toBe(Date.UTC(2026, 0, 1, 6));
    expect(parseTimeArg('2026-01-01', now, '--since')).toBe(new Date(2026, 0, 1).getTime());
    for (const bad of ['yesterday', '2026-02-30', '2026-13-01', '24x', '-1d', '2026-01-01T25:00Z', '']) expect(() => parseTimeArg(bad, now, '--since')).toThrow(/invalid --since/);
  });
});
