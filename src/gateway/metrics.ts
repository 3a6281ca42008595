/** Prometheus text exposition format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/). */

const BUCKETS_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function labels(o: Record<string, string>): string {
  const parts = Object.entries(o).map(([k, v]) => `${k}="${esc(v)}"`);
  return parts.length ? `{${parts.join(',')}}` : '';
}

export class Metrics {
  #requests = new Map<string, number>();
  #authFailures = new Map<string, number>();
  #upstreamErrors = 0;
  #bruteForceSuspected = new Map<string, number>();
  #connectionsRefused = new Map<string, number>();
  #buckets = new Array<number>(BUCKETS_S.length).fill(0);
  #sum = 0;
  #count = 0;
  inFlight = 0;

  request(key: string, route: string, status: number, seconds: number): void {
    const k = `${key}\u0000${route}\u0000${status}`;
    this.#requests.set(k, (this.#requests.get(k) ?? 0) + 1);
    for (let i = 0; i < BUCKETS_S.length; i++) if (seconds <= BUCKETS_S[i]) this.#buckets[i]++;
    this.#sum += seconds;
    this.#count++;
  }

  authFailure(reason: string): void {
    this.#authFailures.set(reason, (this.#authFailures.get(reason) ?? 0) + 1);
  }

  /** Every request counter as (key, route, status, total), for the alert rules (alerts.ts). */
  *requestCounters(): IterableIterator<[string, string, number, number]> {
    for (const [k, n] of this.#requests) {
      const [key, route, status] = k.split('\u0000');
      yield [key, route, Number(status), n];
    }
  }

  upstreamError(): void {
    this.#upstreamErrors++;
  }

  bruteForceSuspected(key: string): void {
    this.#bruteForceSuspected.set(key, (this.#bruteForceSuspected.get(key) ?? 0) + 1);
  }

  connectionRefused(reason: string): void {
    this.#connectionsRefused.set(reason, (this.#connectionsRefused.get(reason) ?? 0) + 1);
  }

  render(extra: { keys: number; reloads: number }): string {
    const out: string[] = [];
    out.push('# HELP dsk_gateway_requests_total Requests by key id, route and status.', '# TYPE dsk_gateway_requests_total counter');
    for (const [k, n] of this.#requests) {
      const [key, route, status] = k.split('\u0000');
      out.push(`dsk_gateway_requests_total${labels({ key, route, status })} ${n}`);
    }
    out.push('# HELP dsk_gateway_auth_failures_total Refused requests by reason.', '# TYPE dsk_gateway_auth_failures_total counter');
    for (const [reason, n] of this.#authFailures) out.push(`dsk_gateway_auth_failures_total${labels({ reason })} ${n}`);
    out.push('# HELP dsk_gateway_upstream_errors_total Upstream connection failures.', '# TYPE dsk_gateway_upstream_errors_total counter');
    out.push(`dsk_gateway_upstream_errors_total ${this.#upstreamErrors}`);
    out.push('# HELP dsk_gateway_brute_force_suspected_total Keys reported as under attack (failures naming one key, from any address).', '# TYPE dsk_gateway_brute_force_suspected_total counter');
    for (const [key, n] of this.#bruteForceSuspected) out.push(`dsk_gateway_brute_force_suspected_total${labels({ key })} ${n}`);
    out.push('# HELP dsk_gateway_connections_refused_total Connections closed at once by a connection cap.', '# TYPE dsk_gateway_connections_refused_total counter');
    for (const [cap, n] of this.#connectionsRefused) out.push(`dsk_gateway_connections_refused_total${labels({ cap })} ${n}`);
    out.push('# HELP dsk_gateway_request_duration_seconds Time to the end of the response.', '# TYPE dsk_gateway_request_duration_seconds histogram');
    BUCKETS_S.forEach((b, i) => out.push(`dsk_gateway_request_duration_seconds_bucket{le="${b}"} ${this.#buckets[i]}`));
    out.push(`dsk_gateway_request_duration_seconds_bucket{le="+Inf"} ${this.#count}`);
    out.push(`dsk_gateway_request_duration_seconds_sum ${this.#sum}`);
    out.push(`dsk_gateway_request_duration_seconds_count ${this.#count}`);
    out.push('# HELP dsk_gateway_in_flight Requests being served.', '# TYPE dsk_gateway_in_flight gauge', `dsk_gateway_in_flight ${this.inFlight}`);
    out.push('# HELP dsk_gateway_keys Keys in the in-memory index.', '# TYPE dsk_gateway_keys gauge', `dsk_gateway_keys ${extra.keys}`);
    out.push('# HELP dsk_gateway_index_reloads_total Reloads of the key index.', '# TYPE dsk_gateway_index_reloads_total counter', `dsk_gateway_index_reloads_total ${extra.reloads}`);
    return out.join('\n') + '\n';
  }
}
