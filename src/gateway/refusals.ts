/**
 * Refused requests: the response (OpenAI's error body, so OpenAI clients raise their usual
 * exceptions), the metric, the per-address failure count that blocks brute force, and the audit
 * row. Audit rows are aggregated in memory per (action, source address, key, details) and handed
 * to the usage sink once a second with a count, so a flood of bad requests costs one small
 * transaction a second rather than one per request.
 */
import type http from 'node:http';
import type { Clock } from '../kernel/clock.js';
import type { BruteForceGuard, FailureConfig } from './brute-force.js';
import type { Metrics } from './metrics.js';

export interface Refusal {
  status: number;
  type: string;
  code: string;
  message: string;
  /** the audit and metrics reason, upper-case */
  reason: string;
  retryAfter?: number;
  /** audit action: AUTH_FAILURE when absent, NONE for no audit row */
  action?: string;
  keyId?: string | null;
  /**
   * The existing key a failed credential named but did not prove (a wrong secret for its id):
   * counted per key for BRUTE_FORCE_SUSPECTED, never shown to the caller.
   */
  targetKeyId?: string;
}

/** OpenAI's error body: {"error":{"message","type","param","code"}}. */
export function errorBody(message: string, type: string, code: string): string {
  return JSON.stringify({ error: { message, type, param: null, code } });
}

/** A 401: the caller is not who it claims, or cannot show it. */
export function unauthorized(reason: string, message = 'invalid api key', code = 'invalid_api_key', keyId: string | null = null): Refusal {
  return { status: 401, type: 'invalid_request_error', code, message, reason, keyId };
}

/**
 * A 503: the gateway cannot check what this request needs (the store is unreachable, or the keys
 * in memory are older than the cache lifetime). No audit row: the outage is in the metrics, and
 * rows are what the gateway is struggling to write.
 */
export function storeUnavailable(message: string, keyId: string | null = null): Refusal {
  return { status: 503, type: 'server_error', code: 'store_unavailable', message, reason: 'STORE_UNAVAILABLE', action: 'NONE', retryAfter: 1, keyId };
}

export interface AggregatedRow {
  action: string;
  source_ip: string;
  key_id: string | null;
  details: Record<string, unknown>;
  count: number;
  first: string;
}

function canonical(o: Record<string, unknown>): string {
  return JSON.stringify(Object.keys(o).sort().map((k) => [k, o[k]]));
}

/** Refusal rows waiting for the next flush, aggregated. Bounded: past MAX distinct rows, the rest are counted in one overflow row per action. */
export class RefusalBatch {
  #rows = new Map<string, AggregatedRow>();
  static readonly MAX = 10_000;

  add(action: string, ip: string, keyId: string | null, details: Record<string, unknown>, nowMs: number): void {
    let k = `${action}|${ip}|${keyId ?? ''}|${canonical(details)}`;
    if (!this.#rows.has(k) && this.#rows.size >= RefusalBatch.MAX) {
      k = `${action}|overflow`;
      details = { reason: 'AGGREGATED_OVERFLOW' };
      ip = '*';
      keyId = null;
    }
    const r = this.#rows.get(k);
    if (r) r.count++;
    else this.#rows.set(k, { action, source_ip: ip, key_id: keyId, details, count: 1, first: new Date(nowMs).toISOString() });
  }

  take(): AggregatedRow[] {
    const rows = [...this.#rows.values()];
    this.#rows.clear();
    return rows;
  }

  /** Merges rows back after a failed write, so they are retried rather than lost. */
  restore(rows: AggregatedRow[]): void {
    for (const r of rows) {
      const k = `${r.action}|${r.source_ip}|${r.key_id ?? ''}|${canonical(r.details)}`;
      const e = this.#rows.get(k);
      if (e) e.count += r.count;
      else this.#rows.set(k, r);
    }
  }

  get size(): number {
    return this.#rows.size;
  }
}

/** The audit row of an aggregated refusal. The actor is the key when known: the caller is not an operator. */
export function auditRowOf(r: AggregatedRow) {
  return {
    action: r.action,
    actor: r.key_id ? `key:${r.key_id}` : 'anonymous',
    source_ip: r.source_ip,
    key_id: r.key_id,
    details: { ...r.details, count: r.count, first_at: r.first, via: 'dsk serve' },
  };
}

export class Refuser {
  constructor(
    private readonly metrics: Metrics,
    private readonly failures: BruteForceGuard,
    private readonly failureConfig: FailureConfig,
    private readonly batch: RefusalBatch,
    private readonly clock: Clock,
  ) {}

  /**
   * Answers `r` and records it. `route` is the matched route's name or `unknown`, never the raw
   * path: the path is the caller's text (it could even be shaped like a key, which the audit
   * writer refuses, poisoning the whole batch).
   */
  refuse(res: http.ServerResponse, ip: string, r: Refusal, route: string): void {
    const now = this.clock.now();
    this.metrics.authFailure(r.reason);
    if (r.status === 401) {
      const f = this.failureConfig;
      const o = this.failures.fail(ip, r.keyId ?? r.targetKeyId ?? null, now);
      if (o.blocked) this.batch.add('BRUTE_FORCE_BLOCK', ip, null, { failures: f.max, window_ms: f.windowMs, source: o.blocked.source, blocked_until: new Date(o.blocked.until).toISOString() }, now);
      if (o.suspected) {
        this.metrics.bruteForceSuspected(o.suspected.keyId);
        this.batch.add('BRUTE_FORCE_SUSPECTED', ip, o.suspected.keyId, { failures: o.suspected.failures, window_ms: f.windowMs, sources: o.suspected.sources }, now);
      }
    }
    if (r.action !== 'NONE') this.batch.add(r.action ?? 'AUTH_FAILURE', ip, r.keyId ?? null, { reason: r.reason, route, status: r.status }, now);
    const headers: http.OutgoingHttpHeaders = { 'content-type': 'application/json' };
    if (r.retryAfter) headers['retry-after'] = String(r.retryAfter);
    if (r.status === 401) headers['www-authenticate'] = 'Bearer realm="dsk"';
    if (!res.headersSent) {
      res.writeHead(r.status, headers);
      res.end(errorBody(r.message, r.type, r.code));
    } else res.destroy();
  }
}
