/**
 * One frame of `dsk top`, from a running gateway (GET /dsk/stats) or from the store (deltas of the
 * hourly counters between two looks, so only requests, errors and tokens per key are known there).
 */
import type { LiveSnapshot } from '../../gateway/live-stats.js';
import type { Home } from '../../app/home.js';
import { UnavailableError, AuthError } from '../../kernel/errors.js';

export interface TopFrame {
  source: string;
  at: string;
  window_s: number;
  requests: number;
  tokens: number;
  keys: { key_id: string; name: string | null; rps: number; tokens_per_s: number; requests: number; tokens: number; series: number[] }[];
  status: Record<string, number>;
  /** site and country appear when the gateway labels sources */
  sources: { ip: string; requests: number; site?: string; country?: string }[];
  /** active alerts, when the gateway has alerting configured */
  alerts: unknown[];
}

const SERIES = 60;

/** Reads frames from a gateway with an auditor or admin key. */
export function gatewayFrames(url: string, apiKey: string): () => Promise<TopFrame> {
  const base = url.replace(/\/$/, '');
  return async () => {
    let r: Response;
    try {
      r = await fetch(`${base}/dsk/stats`, { headers: { authorization: `Bearer ${apiKey}` }, signal: AbortSignal.timeout(5000) });
    } catch (e) {
      throw new UnavailableError('ERR_GATEWAY_UNREACHABLE', `cannot reach the gateway at ${base} (${(e as Error).message})`, { hint: 'check the URL and that dsk serve runs there', cause: e });
    }
    if (r.status === 401 || r.status === 403) throw new AuthError('ERR_GATEWAY_REFUSED', `the gateway refused the key (${r.status}): dsk top needs an auditor or admin key`);
    if (!r.ok) throw new UnavailableError('ERR_GATEWAY_STATS', `the gateway answered ${r.status} to GET /dsk/stats`, { hint: 'a gateway older than dsk top has no /dsk/stats' });
    const s = (await r.json()) as LiveSnapshot & { keys: (LiveSnapshot['keys'][number] & { name?: string | null })[] };
    return { source: base, ...s, keys: s.keys.map((k) => ({ ...k, name: k.name ?? null })) };
  };
}

/** Frames from the store: per key, what the hourly counters grew by since the last look. */
export function storeFrames(home: Home, now: () => number): () => Promise<TopFrame> {
  const since = now() - (now() % 3_600_000);
  let prev: Map<string, { requests: number; errors: number; tokens: number }> | null = null;
  let prevAt = now();
  const series = new Map<string, number[]>();
  const names = new Map<string, string>();
  return async () => {
    const at = now();
    const totals = await home.store.usage.totalsSince(since);
    const cur = new Map(totals.map((t) => [t.key_id, { requests: t.requests, errors: t.errors, tokens: t.prompt_tokens + t.completion_tokens }]));
    const dt = Math.max(0.001, (at - prevAt) / 1000);
    const keys: TopFrame['keys'] = [];
    let ok = 0;
    let errors = 0;
    for (const [id, c] of cur) {
      const p = prev?.get(id) ?? (prev ? { requests: 0, errors: 0, tokens: 0 } : c);
      const d = { requests: c.requests - p.requests, errors: c.errors - p.errors, tokens: c.tokens - p.tokens };
      const s = series.get(id) ?? new Array(SERIES).fill(0);
      s.push(d.requests / dt);
      s.splice(0, s.length - SERIES);
      series.set(id, s);
      if (!names.has(id)) names.set(id, (await home.store.keys.get(id))?.name ?? '');
      ok += d.requests - d.errors;
      errors += d.errors;
      keys.push({ key_id: id, name: names.get(id) || null, rps: Math.round((d.requests / dt) * 10) / 10, tokens_per_s: Math.round((d.tokens / dt) * 10) / 10, requests: d.requests, tokens: d.tokens, series: s.map((v) => Math.round(v * 10) / 10) });
    }
    prev = cur;
    prevAt = at;
    keys.sort((a, b) => b.rps - a.rps || a.key_id.localeCompare(b.key_id));
    return {
      source: `store ${home.dir}`,
      at: new Date(at).toISOString(),
      window_s: Math.round(dt),
      requests: ok + errors,
      tokens: keys.reduce((a, k) => a + k.tokens, 0),
      keys,
      status: { ok, error: errors },
      sources: [],
      alerts: [],
    };
  };
}
