/**
 * Unusual sources. Each key has a learned history of the sites, countries and ASNs it was used
 * from (store table key_sources, loaded at startup). A request whose source carries a label the key
 * has never shown is learned; once the key's learning period has passed (`gateway.anomaly_learning`,
 * counted from the first source ever recorded for the key; default 7 days) it also raises an
 * ANOMALY audit row naming the key, the address and why. The new value then belongs to the
 * history, so one new country is one row, not one row per request; revoke the key if the use was
 * not legitimate.
 *
 * The check costs a map lookup per label per request (labels come from source-labels.ts, cached
 * per address). Several gateways on one store learn independently and each loads what the others
 * wrote at its next start; a duplicate row is ignored by the store.
 */
import type { KeySourceRow } from '../store/store.js';
import type { SourceLabels } from './source-labels.js';
import type { SideWrites } from './side-writes.js';

export const DEFAULT_LEARNING_MS = 7 * 86_400_000;
const KINDS = ['site', 'country', 'asn'] as const;
type Kind = (typeof KINDS)[number];

interface KeyHistory {
  since: number;
  seen: Map<Kind, Set<string>>;
}

export interface Anomaly {
  kind: Kind;
  value: string;
  known: string[];
}

export class SourceHistory {
  readonly #keys = new Map<string, KeyHistory>();
  anomalies = 0;

  constructor(
    rows: KeySourceRow[],
    private readonly learningMs: number,
    private readonly out: SideWrites,
  ) {
    for (const r of rows) this.#remember(r.key_id, r.kind, r.value, r.first_seen);
  }

  #remember(keyId: string, kind: Kind, value: string, at: number): KeyHistory {
    let h = this.#keys.get(keyId);
    if (!h) this.#keys.set(keyId, (h = { since: at, seen: new Map() }));
    h.since = Math.min(h.since, at);
    const set = h.seen.get(kind);
    if (set) set.add(value);
    else h.seen.set(kind, new Set([value]));
    return h;
  }

  /** Records the source of one accepted request of `keyId`; an ANOMALY row for each new label past learning. */
  observe(keyId: string, ip: string, labels: SourceLabels, now: number): Anomaly[] {
    const h = this.#keys.get(keyId);
    if (h && known(h, labels)) return NONE;
    const found: Anomaly[] = [];
    for (const kind of KINDS) {
      const value = labels[kind];
      if (value === undefined) continue;
      const set = h?.seen.get(kind);
      if (set?.has(value)) continue;
      const learning = !h || now < h.since + this.learningMs;
      if (!learning) found.push({ kind, value, known: set ? [...set].slice(0, 20) : [] });
      this.#remember(keyId, kind, value, now);
      this.out.learned({ key_id: keyId, kind, value, first_seen: now });
    }
    for (const a of found) {
      this.anomalies++;
      this.out.audit({
        action: 'ANOMALY',
        actor: `key:${keyId}`,
        source_ip: ip,
        key_id: keyId,
        details: { reason: `NEW_${a.kind.toUpperCase()}`, [a.kind]: a.value, ...(a.kind === 'asn' && labels.asnOrg ? { asn_org: labels.asnOrg } : {}), known: a.known, labels: plain(labels), via: 'dsk serve' },
      });
    }
    return found;
  }

  /** The learned values of one key (for tests and `dsk top`). */
  history(keyId: string): Partial<Record<Kind, string[]>> {
    return Object.fromEntries([...(this.#keys.get(keyId)?.seen ?? [])].map(([k, v]) => [k, [...v]]));
  }
}

const NONE: Anomaly[] = [];

/** The common case, checked without allocating: every label of the source is already known. */
function known(h: KeyHistory, l: SourceLabels): boolean {
  return (l.site === undefined || !!h.seen.get('site')?.has(l.site)) && (l.country === undefined || !!h.seen.get('country')?.has(l.country)) && (l.asn === undefined || !!h.seen.get('asn')?.has(l.asn));
}

function plain(l: SourceLabels): Record<string, string> {
  const o: Record<string, string> = {};
  for (const k of KINDS) if (l[k] !== undefined) o[k] = l[k]!;
  return o;
}
