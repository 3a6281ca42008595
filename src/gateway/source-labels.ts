/**
 * Where a request comes from, in words: the site of the operator's network map, and, when
 * `gateway.geoip_db` (a GeoLite2/GeoIP2 City or Country database) and `gateway.asn_db` (GeoLite2
 * ASN) are set, the country and the autonomous system, read with the `maxmind` package.
 *
 * The databases are read whole into memory and checked at startup: a missing file is exit 4, a
 * file that is not a MaxMind database of the expected kind is exit 5, before the gateway listens.
 * Labels are cached per address (bounded; the oldest half is dropped when full), so the trie walk
 * happens once per client rather than once per request.
 */
import fs from 'node:fs';
import { Reader, type AsnResponse, type CountryResponse } from 'maxmind';
import { IntegrityError, NotFoundError, UnavailableError } from '../kernel/errors.js';
import { NetworkMap } from '../domain/network-map.js';

export interface SourceLabels {
  /** network map site (`unmapped` outside it); absent without a network map */
  site?: string;
  /** ISO 3166 country code */
  country?: string;
  /** `AS1221` */
  asn?: string;
  asnOrg?: string;
}

export interface SourceLabelConfig {
  network?: Record<string, string>;
  geoipDb?: string;
  asnDb?: string;
}

const CACHE_MAX = 50_000;

/** Opens a MaxMind database file, refusing one whose type is not `kind` (City/Country, or ASN). */
export function openGeoDb<T extends CountryResponse | AsnResponse>(file: string, kind: 'country' | 'asn', setting: string): Reader<T> {
  let data: Buffer;
  try {
    data = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NotFoundError('ERR_GEOIP_MISSING', `${setting} '${file}' does not exist`, { hint: 'download the GeoLite2/GeoIP2 .mmdb file there, or remove the setting from dsk.json', cause: e });
    throw new UnavailableError('ERR_GEOIP_UNREADABLE', `cannot read ${setting} '${file}' (${code ?? 'error'})`, { hint: 'check the path and its permissions', cause: e });
  }
  let reader: Reader<T>;
  try {
    reader = new Reader<T>(data);
    reader.get('1.1.1.1'); // walks the tree once: a truncated file fails here, not on a request
  } catch (e) {
    throw new IntegrityError('ERR_GEOIP_CORRUPT', `${setting} '${file}' is not a readable MaxMind database (${(e as Error).message})`, { hint: 'download the database file again', cause: e });
  }
  const type = reader.metadata.databaseType;
  const ok = kind === 'asn' ? /ASN/i.test(type) : /City|Country|Enterprise/i.test(type);
  if (!ok)
    throw new IntegrityError('ERR_GEOIP_KIND', `${setting} '${file}' is a ${type} database; expected ${kind === 'asn' ? 'an ASN' : 'a City or Country'} database`, {
      hint: 'gateway.geoip_db takes GeoLite2-City or GeoLite2-Country, gateway.asn_db takes GeoLite2-ASN',
    });
  return reader;
}

export class SourceLabeler {
  readonly #map: NetworkMap | null;
  readonly #geo: Reader<CountryResponse> | null;
  readonly #asn: Reader<AsnResponse> | null;
  readonly #cache = new Map<string, SourceLabels>();
  lookups = 0;

  constructor(c: SourceLabelConfig) {
    this.#map = c.network && Object.keys(c.network).length ? new NetworkMap(c.network) : null;
    this.#geo = c.geoipDb ? openGeoDb<CountryResponse>(c.geoipDb, 'country', 'gateway.geoip_db') : null;
    this.#asn = c.asnDb ? openGeoDb<AsnResponse>(c.asnDb, 'asn', 'gateway.asn_db') : null;
  }

  /** True when there is something to label with. */
  get enabled(): boolean {
    return !!(this.#map || this.#geo || this.#asn);
  }

  /** The labels of `ip`, from the cache when it was seen before. */
  labels(ip: string): SourceLabels {
    const hit = this.#cache.get(ip);
    if (hit) return hit;
    const l = this.lookup(ip);
    if (this.#cache.size >= CACHE_MAX) {
      let drop = CACHE_MAX >> 1;
      for (const k of this.#cache.keys()) {
        this.#cache.delete(k);
        if (--drop === 0) break;
      }
    }
    this.#cache.set(ip, l);
    return l;
  }

  /** The uncached lookup (the benchmark compares both). */
  lookup(ip: string): SourceLabels {
    this.lookups++;
    const l: SourceLabels = {};
    if (this.#map) l.site = this.#map.siteOf(ip);
    const valid = (this.#geo || this.#asn) && isLookupable(ip);
    if (valid && this.#geo) {
      const c = safeGet(this.#geo, ip);
      const code = c?.country?.iso_code ?? c?.registered_country?.iso_code;
      if (code) l.country = code;
    }
    if (valid && this.#asn) {
      const a = safeGet(this.#asn, ip);
      if (a?.autonomous_system_number) {
        l.asn = `AS${a.autonomous_system_number}`;
        if (a.autonomous_system_organization) l.asnOrg = a.autonomous_system_organization;
      }
    }
    return l;
  }
}

function isLookupable(ip: string): boolean {
  return /^[0-9a-fA-F:.]+$/.test(ip) && ip.length <= 45;
}

/** A lookup that never throws: an address the database cannot answer has no label. */
function safeGet<T extends CountryResponse | AsnResponse>(r: Reader<T>, ip: string): T | null {
  try {
    return r.get(ip);
  } catch {
    return null;
  }
}
