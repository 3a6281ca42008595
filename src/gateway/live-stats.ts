/**
 * The last minute of traffic, second by second, for `dsk top` (GET /dsk/stats): requests and
 * tokens per key, status codes, and the busiest source addresses. Kept in a ring of 60 one-second
 * slots, so memory is bounded by the traffic of one minute, not by uptime.
 *
 * Where a source is labelled (site from the operator's network map, country from GeoIP) and which
 * alerts are active are answered by `labelSource` and `activeAlerts`; the gateway sets them when
 * those features are configured, and the view shows `site`/`country`/alerts when present.
 */
const SLOTS = 60;
const TOP_SOURCES = 10;
const MAX_SOURCES_PER_SLOT = 5_000;

interface Slot {
  second: number;
  keys: Map<string, { requests: number; tokens: number }>;
  status: Map<number, number>;
  sources: Map<string, number>;
}

export interface SourceLabel {
  site?: string;
  country?: string;
}

export interface LiveSnapshot {
  at: string;
  window_s: number;
  requests: number;
  tokens: number;
  keys: { key_id: string; name: string | null; requests: number; tokens: number; rps: number; tokens_per_s: number; series: number[] }[];
  status: Record<string, number>;
  sources: ({ ip: string; requests: number } & SourceLabel)[];
  alerts: unknown[];
}

export class LiveStats {
  #slots: Slot[] = Array.from({ length: SLOTS }, () => ({ second: -1, keys: new Map(), status: new Map(), sources: new Map() }));
  labelSource: (ip: string) => SourceLabel | null = () => null;
  nameOf: (keyId: string) => string | null = () => null;
  activeAlerts: () => unknown[] = () => [];

  #slot(now: number): Slot {
    const second = Math.floor(now / 1000);
    const s = this.#slots[second % SLOTS];
    if (s.second !== second) {
      s.second = second;
      s.keys.clear();
      s.status.clear();
      s.sources.clear();
    }
    return s;
  }

  /** A finished request. */
  record(keyId: string, status: number, tokens: number, ip: string, now: number): void {
    const s = this.#slot(now);
    const k = s.keys.get(keyId);
    if (k) (k.requests++, (k.tokens += tokens));
    else s.keys.set(keyId, { requests: 1, tokens });
    s.status.set(status, (s.status.get(status) ?? 0) + 1);
    if (s.sources.has(ip) || s.sources.size < MAX_SOURCES_PER_SLOT) s.sources.set(ip, (s.sources.get(ip) ?? 0) + 1);
  }

  /** The last `SLOTS` whole seconds before `now`; series oldest first. */
  snapshot(now: number): LiveSnapshot {
    const current = Math.floor(now / 1000);
    const keys = new Map<string, { requests: number; tokens: number; series: number[] }>();
    const status: Record<string, number> = {};
    const sources = new Map<string, number>();
    let requests = 0;
    let tokens = 0;
    for (let i = 0; i < SLOTS; i++) {
      const second = current - SLOTS + i;
      const s = this.#slots[((second % SLOTS) + SLOTS) % SLOTS];
      if (s.second !== second) continue;
      for (const [id, v] of s.keys) {
        let e = keys.get(id);
        if (!e) keys.set(id, (e = { requests: 0, tokens: 0, series: new Array(SLOTS).fill(0) }));
        e.requests += v.requests;
        e.tokens += v.tokens;
        e.series[i] = v.requests;
        requests += v.requests;
        tokens += v.tokens;
      }
      for (const [code, n] of s.status) status[code] = (status[code] ?? 0) + n;
      for (const [ip, n] of s.sources) sources.set(ip, (sources.get(ip) ?? 0) + n);
    }
    const last = (series: number[]) => series[SLOTS - 1];
    return {
      at: new Date(now).toISOString(),
      window_s: SLOTS,
      requests,
      tokens,
      keys: [...keys]
        .map(([key_id, v]) => ({ key_id, name: this.nameOf(key_id), requests: v.requests, tokens: v.tokens, rps: last(v.series), tokens_per_s: Math.round((v.tokens / SLOTS) * 10) / 10, series: v.series }))
        .sort((a, b) => b.requests - a.requests || a.key_id.localeCompare(b.key_id)),
      status,
      sources: [...sources]
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
        .slice(0, TOP_SOURCES)
        .map(([ip, n]) => ({ ip, requests: n, ...(this.labelSource(ip) ?? {}) })),
      alerts: this.activeAlerts(),
    };
  }
}
