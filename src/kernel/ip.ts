/**
 * IP addresses and CIDR blocks (RFC 4632 for IPv4, RFC 4291 section 2.2 text forms and 2.3 prefixes
 * for IPv6), for `dsk audit query --ip`. A small strict parser: dotted-quad IPv4 with no leading
 * zeros (so "010.0.0.1" is not silently octal or decimal), IPv6 with at most one "::" and an
 * optional trailing dotted quad. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, which a dual-stack
 * Node server reports for IPv4 clients) match IPv4 blocks.
 */
export interface Cidr {
  family: 4 | 6;
  bytes: Uint8Array;
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
export function parseIp(text: string): { family: 4 | 6; bytes: Uint8Array } | null {
  const t = text.trim();
  const v4 = parseIPv4(t);
  if (v4) return { family: 4, bytes: v4 };
  const v6 = parseIPv6(t.replace(/%[\w.-]+$/, ''));
  if (!v6) return null;
  if (v6.slice(0, 10).every((b) => b === 0) && v6[10] === 0xff && v6[11] === 0xff) return { family: 4, bytes: v6.slice(12) };
  return { family: 6, bytes: v6 };
}

/** "10.0.0.0/8", "2001:db8::/32", or a single address (a /32 or /128). Null when malformed. */
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
  return { family, bytes, prefix };
}

export function cidrContains(c: Cidr, addr: { family: 4 | 6; bytes: Uint8Array } | null): boolean {
  if (!addr || addr.family !== c.family) return false;
  const full = c.prefix >> 3;
  for (let i = 0; i < full; i++) if (addr.bytes[i] !== c.bytes[i]) return false;
  const rest = c.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (addr.bytes[full] & mask) === (c.bytes[full] & mask);
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
