/**
 * IP addresses and CIDR blocks (RFC 4632 for IPv4, RFC 4291 section 2.2 text forms and 2.3 prefixes
 * for IPv6): the one parser and matcher behind the gateway's per-key allow-lists (`allowed_cidrs`)
 * and `dsk audit query --ip`.
 *
 * The parser is strict: dotted-quad IPv4 with no leading zeros (so "010.0.0.1" is not silently octal
 * or decimal), IPv6 with at most one "::" and an optional trailing dotted quad, a prefix without a
 * leading zero. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, which a dual-stack Node server reports
 * for IPv4 clients) match IPv4 blocks; a zone id is dropped.
 *
 * Matching compares bytes here rather than through net.BlockList: on Node 20 BlockList.check builds
 * a SocketAddress per call and measured about 3.5 times slower (about 2 µs against 0.6 µs per
 * address), which an audit query testing every row of a large log would feel, and an allow-list
 * gains nothing from it. The tests check this matcher against a BigInt reference and against
 * net.BlockList.
 */
export interface IpAddress {
  family: 4 | 6;
  bytes: Uint8Array;
}

export interface Cidr extends IpAddress {
  prefix: number;
}

export function parseIPv4(text: string): Uint8Array | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i];
    if (!/^(0|[1-9]\d{0,2})$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    out[i] = n;
  }
  return out;
}

export function parseIPv6(text: string): Uint8Array | null {
  if (text.length > 45 || !/^[0-9A-Fa-f:.]+$/.test(text)) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups = (s: string): number[] | null => {
    if (s === '') return [];
    const out: number[] = [];
    const parts = s.split(':');
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i];
      if (i === parts.length - 1 && p.includes('.')) {
        const v4 = parseIPv4(p);
        if (!v4) return null;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else {
        if (!/^[0-9A-Fa-f]{1,4}$/.test(p)) return null;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (!head || !tail) return null;
  // A dotted quad may only end the address.
  if (halves.length === 2 && halves[0].includes('.')) return null;
  let all: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    all = [...head, ...new Array(missing).fill(0), ...tail];
  } else {
    if (head.length !== 8) return null;
    all = head;
  }
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/** Parses an address as stored in source_ip; IPv4-mapped IPv6 becomes IPv4; a zone id is dropped. */
export function parseIp(text: string): IpAddress | null {
  const t = text.trim();
  const v4 = parseIPv4(t);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIPv6(t.replace(/%[\w.-]+$/, ''));
  if (!v6) return null;
  if (isV4Mapped(v6)) return { family: 4, bytes: v6.slice(12) };
  return { family: 6, bytes: v6 };
}

function isV4Mapped(v6: Uint8Array): boolean {
  return v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff;
}

/**
 * "10.0.0.0/8", "2001:db8::/32", or a single address (a /32 or /128). Null when malformed. A block
 * inside ::ffff:0:0/96 is the IPv4 block it maps (::ffff:10.0.0.0/104 is 10.0.0.0/8), as addresses are.
 */
export function parseCidr(text: string): Cidr | null {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) return null;
  const v4 = parseIPv4(m[1]);
  const bytes = v4 ?? parseIPv6(m[1]);
  if (!bytes) return null;
  const family: 4 | 6 = v4 ? 4 : 6;
  const max = family === 4 ? 32 : 128;
  if (m[2] !== undefined && m[2].length > 1 && m[2].startsWith('0')) return null;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return null;
  if (family === 6 && prefix >= 96 && isV4Mapped(bytes)) return { family: 4, bytes: bytes.slice(12), prefix: prefix - 96 };
  return { family, bytes, prefix };
}

export function cidrContains(c: Cidr, addr: IpAddress | null): boolean {
  if (!addr || addr.family !== c.family) return false;
  const full = c.prefix >> 3;
  for (let i = 0; i < full; i++) if (addr.bytes[i] !== c.bytes[i]) return false;
  const rest = c.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (addr.bytes[full] & mask) === (c.bytes[full] & mask);
}

/** Several blocks, as a key's allow-list: an address matches when any block holds it. */
export class CidrList {
  constructor(readonly blocks: readonly Cidr[]) {}

  /** Unparsable text and null never match. */
  has(ip: string | null): boolean {
    const a = ip === null ? null : parseIp(ip);
    if (!a) return false;
    for (const c of this.blocks) if (cidrContains(c, a)) return true;
    return false;
  }
}

/**
 * A key's stored allow-list (`allowed_cidrs`). No list, or an empty one, is null: every address.
 * An entry that does not parse is skipped, so a list with no valid entry denies every address
 * (fail closed: a typo must not open a key to the world).
 */
export function buildAllowList(entries: unknown): CidrList | null {
  if (!Array.isArray(entries) || entries.length === 0) return null;
  const blocks: Cidr[] = [];
  for (const e of entries) {
    const c = typeof e === 'string' ? parseCidr(e) : null;
    if (c) blocks.push(c);
  }
  return new CidrList(blocks);
}

export function ipAllowed(list: CidrList | null, ip: string): boolean {
  return list === null || list.has(ip);
}

/** IPv4-mapped IPv6 (`::ffff:10.0.0.1`) as IPv4, so one client has one address in counters and logs. */
export function normalizeIp(ip: string): string {
  const m = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  return m ? m[1] : ip;
}

/** A predicate for stored source_ip values (null and unparsable never match). */
export function ipMatcher(c: Cidr): (ip: string | null) => boolean {
  const exact = (ip: string | null) => ip !== null && cidrContains(c, parseIp(ip));
  if (c.family !== 4 || c.prefix < 8) return exact;
  // Quick reject for IPv4 blocks (a query may test millions of rows): a dotted address in the block
  // starts with the block's whole leading octets; an IPv6 text can only match as ::ffff:a.b.c.d.
  const octets = Math.min(c.prefix >> 3, 3);
  const lead = Array.from(c.bytes.slice(0, octets)).join('.') + '.';
  return (ip) => {
    if (ip === null) return false;
    if (ip.includes(':')) return ip.includes('.') && exact(ip);
    return ip.startsWith(lead) && exact(ip);
  };
}

/**
 * Text ranges of source_ip that hold every IPv4 address of the block (dotted, and IPv4-mapped
 * IPv6 as Node reports it): "10.1." for 10.1.0.0/16 → ['10.1.', '10.1/'] ('/' follows '.').
 * Null for IPv6 blocks and blocks shorter than /8 (their text forms do not share a prefix).
 */
export function ipv4TextRanges(c: Cidr): [string, string][] | null {
  if (c.family !== 4 || c.prefix < 8) return null;
  const lead = Array.from(c.bytes.slice(0, Math.min(c.prefix >> 3, 3))).join('.') + '.';
  const up = (s: string) => s.slice(0, -1) + '/';
  return [
    [lead, up(lead)],
    [`::ffff:${lead}`, up(`::ffff:${lead}`)],
  ];
}
