/** The network map (CIDR → site) against a BigInt reference, and the learned-history rules of anomaly.ts. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { NetworkMap, UNMAPPED_SITE } from '../src/domain/network-map.js';
import { SourceHistory } from '../src/gateway/anomaly.js';
import { SideWrites } from '../src/gateway/side-writes.js';

const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((b) => b.join('.'));
const toInt = (ip: string) => ip.split('.').reduce((a, o) => (a << 8n) | BigInt(o), 0n);

/** Reference: every block holding the address, the longest prefix wins; ties go to the first listed. */
function reference(map: [string, string][], ip: string): string {
  let best: { prefix: number; site: string } | null = null;
  for (const [block, site] of map) {
    const [net, p] = block.split('/');
    const prefix = Number(p);
    const mask = prefix === 0 ? 0n : ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - prefix)) - 1n);
    if ((toInt(net) & mask) === (toInt(ip) & mask) && (!best || prefix > best.prefix)) best = { prefix, site };
  }
  return best?.site ?? UNMAPPED_SITE;
}

describe('NetworkMap', () => {
  it('the most specific block wins, as a brute-force reference says', () => {
    const block = fc.tuple(v4, fc.integer({ min: 0, max: 32 })).map(([a, p]) => `${a}/${p}`);
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(block, fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/)), { maxLength: 12, selector: ([b]) => b }), fc.array(v4, { minLength: 1, maxLength: 20 }), (entries, ips) => {
        // two blocks with the same network and prefix are one block; keep the map unambiguous
        const seen = new Set<string>();
        const unique = entries.filter(([b]) => {
          const [net, p] = b.split('/');
          const mask = Number(p) === 0 ? 0n : ((1n << 32n) - 1n) ^ ((1n << BigInt(32 - Number(p))) - 1n);
          const k = `${toInt(net) & mask}/${p}`;
          if (seen.has(k)) return false;
          seen.add(k);
          return true;
        });
        const m = new NetworkMap(Object.fromEntries(unique));
        for (const ip of [...ips, ...unique.map(([b]) => b.split('/')[0])]) expect(m.siteOf(ip)).toBe(reference(unique, ip));
      }),
      { numRuns: 300 },
    );
  });

  it('IPv6 blocks, IPv4-mapped addresses, and text that is no address', () => {
    const m = new NetworkMap({ '10.0.0.0/8': 'corp', 'fd00::/8': 'v6', '2001:db8:1::/48': 'lab6' });
    expect(m.siteOf('::ffff:10.2.3.4')).toBe('corp');
    expect(m.siteOf('fd12::1')).toBe('v6');
    expect(m.siteOf('2001:db8:1:ff::9')).toBe('lab6');
    expect(m.siteOf('2001:db8:2::9')).toBe(UNMAPPED_SITE);
    for (const junk of ['', 'localhost', '10.0.0', '999.1.1.1', '10.0.0.1/8']) expect(m.siteOf(junk)).toBe(UNMAPPED_SITE);
  });
});

describe('SourceHistory', () => {
  it('learns silently while learning, then one ANOMALY per new value; the first sighting starts the clock', () => {
    const out = new SideWrites();
    const h = new SourceHistory([{ key_id: 'k1', kind: 'country', value: 'GB', first_seen: 1000 }], 10_000, out);
    expect(h.observe('k1', '1.1.1.1', { country: 'SE' }, 5000)).toEqual([]); // k1 learns until 11 000
    expect(h.observe('k2', '1.1.1.1', { country: 'SE' }, 50_000)).toEqual([]); // k2's first source: starts its clock
    expect(h.observe('k2', '1.1.1.1', { country: 'US' }, 59_999)).toEqual([]);
    expect(h.observe('k2', '1.1.1.1', { country: 'CN', site: 'dc1' }, 60_000)).toEqual([
      { kind: 'site', value: 'dc1', known: [] },
      { kind: 'country', value: 'CN', known: ['SE', 'US'] },
    ]);
    expect(h.observe('k2', '1.1.1.1', { country: 'CN', site: 'dc1' }, 60_001)).toEqual([]);
    expect(h.observe('k1', '2.2.2.2', { country: 'JP' }, 11_000)).toEqual([{ kind: 'country', value: 'JP', known: ['GB', 'SE'] }]);
    const b = out.take()!;
    expect(b.rows.map((r) => [r.key_id, r.details.reason])).toEqual([
      ['k2', 'NEW_SITE'],
      ['k2', 'NEW_COUNTRY'],
      ['k1', 'NEW_COUNTRY'],
    ]);
    // every new value is written once, anomalous or not
    expect(b.sources.map((s) => `${s.key_id}:${s.kind}=${s.value}`)).toEqual(['k1:country=SE', 'k2:country=SE', 'k2:country=US', 'k2:site=dc1', 'k2:country=CN', 'k1:country=JP']);
    expect(h.history('k2')).toEqual({ country: ['SE', 'US', 'CN'], site: ['dc1'] });
  });
});
