/**
 * The operator's network map (`network` in dsk.json): CIDR block → site name, for the private
 * networks on-premises gateways actually see ("10.20.0.0/16": "dc-east"). The most specific block
 * wins, so a lab /24 inside a data-centre /16 is its own site. An address in no block is the site
 * `unmapped`, so a key that only ever came from known sites raises an anomaly the first time it
 * comes from anywhere else.
 */
import { z } from 'zod';
import { cidrContains, parseCidr, parseIp, type Cidr } from '../kernel/ip.js';

export const UNMAPPED_SITE = 'unmapped';

const siteName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'a site name is letters, digits, _ . and - (at most 64)');

export const NETWORK_SCHEMA = z
  .record(z.string(), siteName.refine((s) => s !== UNMAPPED_SITE, { message: `'${UNMAPPED_SITE}' is the name of addresses outside the map` }))
  .superRefine((m, ctx) => {
    for (const block of Object.keys(m))
      if (parseCidr(block) === null) ctx.addIssue({ code: 'custom', path: [block], message: 'expected a CIDR block such as 10.20.0.0/16 or 2001:db8::/32' });
  });

export class NetworkMap {
  /** longest prefix first */
  readonly #blocks: { cidr: Cidr; site: string }[];

  constructor(map: Record<string, string>) {
    this.#blocks = Object.entries(map)
      .map(([c, site]) => ({ cidr: parseCidr(c)!, site }))
      .filter((b) => b.cidr !== null)
      .sort((a, b) => b.cidr.prefix - a.cidr.prefix);
  }

  get size(): number {
    return this.#blocks.length;
  }

  /** The site of an address; `unmapped` when no block holds it (or it does not parse). */
  siteOf(ip: string): string {
    const a = parseIp(ip);
    if (a) for (const b of this.#blocks) if (cidrContains(b.cidr, a)) return b.site;
    return UNMAPPED_SITE;
  }
}
