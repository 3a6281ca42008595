/**
 * The alerts of dsk.json as a Prometheus rules file (`dsk export prometheus-rules`), for operators
 * who alert from Prometheus rather than from the gateway. Each rule is the PromQL form of what the
 * gateway evaluates itself (gateway/alerts.ts), over the metrics its /metrics endpoint exposes:
 *
 *   qps                  sum [by (key)] (rate(dsk_gateway_requests_total{…}[1m])) > above, for: `for`
 *   auth_failures        sum(increase(dsk_gateway_requests_total{status="401"}[window])) > above
 *   upstream_error_rate  5xx share of requests over `window`, with at least min_requests of them
 *   quota/anomaly/audit  sum(increase(dsk_gateway_audit_events_total{action=~"…"}[clear_after])) > 0
 *
 * One difference: Prometheus computes QPS as a rate over the last minute of scrapes, the gateway
 * over its last one-second tick, so a short burst can fire in the gateway and not in Prometheus.
 */
import { stringify } from 'yaml';
import { formatDuration } from '../kernel/duration.js';
import type { AlertRule } from './alert-rules.js';

const TRAFFIC = 'route!~"/metrics|/healthz"';

function expr(r: AlertRule): string {
  switch (r.kind) {
    case 'qps': {
      const sel = r.scope === 'all' ? `{${TRAFFIC}}` : r.scope === 'per_key' ? `{${TRAFFIC},key!="-"}` : `{${TRAFFIC},key="${r.scope.key}"}`;
      const by = r.scope === 'all' ? '' : ' by (key)';
      return `sum${by} (rate(dsk_gateway_requests_total${sel}[1m])) > ${r.above}`;
    }
    case 'auth_failures':
      return `sum(increase(dsk_gateway_requests_total{status="401"}[${formatDuration(r.windowMs)}])) > ${r.above}`;
    case 'upstream_error_rate': {
      const w = formatDuration(r.windowMs);
      const total = `sum(increase(dsk_gateway_requests_total{${TRAFFIC}}[${w}]))`;
      return `(sum(increase(dsk_gateway_requests_total{${TRAFFIC},status=~"5.."}[${w}])) / ${total} > ${r.above}) and ${total} >= ${r.minRequests}`;
    }
    case 'audit':
      return `sum(increase(dsk_gateway_audit_events_total{action=~"${r.actions.join('|')}"}[${formatDuration(r.clearAfterMs)}])) > 0`;
  }
}

function summary(r: AlertRule): string {
  switch (r.kind) {
    case 'qps':
      return `${r.scope === 'all' ? 'Gateway' : r.scope === 'per_key' ? 'Key {{ $labels.key }}' : `Key ${r.scope.key}`} above ${r.above} requests per second for ${formatDuration(r.forMs)}`;
    case 'auth_failures':
      return `More than ${r.above} failed authentications within ${formatDuration(r.windowMs)} (brute force?)`;
    case 'upstream_error_rate':
      return `Upstream errors above ${Math.round(r.above * 1000) / 10}% of requests over ${formatDuration(r.windowMs)}`;
    case 'audit':
      return r.source === 'quota' ? 'A key crossed a quota threshold' : r.source === 'anomaly' ? 'A key was used from a site, country or ASN new to it' : `Audit rows ${r.actions.join(', ')}`;
  }
}

/** The rules file text (YAML), one group `dsk`. */
export function prometheusRules(rules: AlertRule[]): string {
  const group = {
    name: 'dsk',
    rules: rules.map((r) => ({
      alert: r.name,
      expr: expr(r),
      ...(r.kind === 'qps' && r.forMs > 0 ? { for: formatDuration(r.forMs) } : {}),
      labels: { source: 'dsk', dsk_kind: r.kind === 'audit' ? r.source : r.kind },
      annotations: { summary: summary(r) },
    })),
  };
  return stringify({ groups: [group] }, { lineWidth: 0 });
}
