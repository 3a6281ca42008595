/**
 * The gateway's monitoring parts, built from dsk.json at startup and hooked into the request
 * pipeline in three places (server.ts): every accepted request's source (`observe`), the /metrics
 * text (`renderMetrics`), and close (`stop`). Source labels and anomalies are here; alert rules
 * are evaluated by alerts.ts.
 *
 * Everything that can fail on bad configuration (a missing or corrupt GeoIP database, an unreadable
 * webhook secret) fails in `open`, before the gateway listens.
 */
import type { Home } from '../app/home.js';
import type { Clock } from '../kernel/clock.js';
import { parseDuration } from '../kernel/duration.js';
import { alertRules, webhookConfig, type AlertsConfig } from '../domain/alert-rules.js';
import { AlertEngine } from './alerts.js';
import { DEFAULT_LEARNING_MS, SourceHistory } from './anomaly.js';
import type { Metrics } from './metrics.js';
import { SourceLabeler } from './source-labels.js';
import { SideWrites } from './side-writes.js';
import { readWebhookSecret, WebhookSender } from './webhook.js';

function esc(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

/**
 * Checks the files the monitoring settings of `config` name (GeoIP databases, webhook secret)
 * without keeping anything, so `dsk serve` can refuse them before anyone types a passphrase.
 */
export function checkMonitoringFiles(config: Home['config']): void {
  const g = (config.gateway ?? {}) as { geoip_db?: string; asn_db?: string };
  new SourceLabeler({ geoipDb: g.geoip_db, asnDb: g.asn_db });
  const w = webhookConfig(config.alerts as AlertsConfig | undefined);
  if (w) readWebhookSecret(w.secretFile).fill(0);
}

export class Monitoring {
  private constructor(
    readonly labeler: SourceLabeler,
    readonly history: SourceHistory | null,
    readonly side: SideWrites,
    readonly alerts: AlertEngine | null,
    readonly webhook: WebhookSender | null,
  ) {}

  /** Builds everything and checks every file it needs; `tickMs` 0 leaves alert evaluation to the caller (tests). */
  static async open(home: Home, metrics: Metrics, clock: Clock, tickMs = 1000): Promise<Monitoring> {
    const c = home.config;
    const g = (c.gateway ?? {}) as { geoip_db?: string; asn_db?: string; anomaly_learning?: string };
    const labeler = new SourceLabeler({ network: c.network as Record<string, string> | undefined, geoipDb: g.geoip_db, asnDb: g.asn_db });
    const side = new SideWrites();
    const learningMs = g.anomaly_learning ? parseDuration(g.anomaly_learning, 'gateway.anomaly_learning in dsk.json', true) : DEFAULT_LEARNING_MS;
    const history = labeler.enabled ? new SourceHistory(await home.store.keySources.all(), learningMs, side) : null;
    const a = c.alerts as AlertsConfig | undefined;
    const w = webhookConfig(a);
    const webhook = w ? new WebhookSender(w, readWebhookSecret(w.secretFile)) : null;
    const rules = alertRules(a);
    const alerts = rules.length ? new AlertEngine(rules, { metrics, events: home.store.events, side, webhook, clock }) : null;
    await alerts?.start(tickMs);
    return new Monitoring(labeler, history, side, alerts, webhook);
  }

  /** The source of an accepted request of `keyId`. */
  observe(keyId: string, ip: string, now: number): void {
    if (this.history) this.history.observe(keyId, ip, this.labeler.labels(ip), now);
  }

  renderMetrics(): string {
    const out: string[] = [];
    if (this.history) out.push('# HELP dsk_gateway_anomalies_total Requests from a site, country or ASN new to their key (after learning).', '# TYPE dsk_gateway_anomalies_total counter', `dsk_gateway_anomalies_total ${this.history.anomalies}`);
    out.push('# HELP dsk_gateway_side_writes_dropped_total Anomaly/alert rows or learned sources dropped while the store could not take them.', '# TYPE dsk_gateway_side_writes_dropped_total counter', `dsk_gateway_side_writes_dropped_total ${this.side.dropped}`);
    if (this.alerts) {
      out.push('# HELP dsk_gateway_alert_firing Alerts of dsk.json: 1 while an episode fires (per key for per-key rules).', '# TYPE dsk_gateway_alert_firing gauge');
      const firing = this.alerts.firing();
      for (const r of this.alerts.rules) {
        const mine = firing.filter((f) => f.alert === r.name);
        if (!mine.length && !(r.kind === 'qps' && r.scope === 'per_key')) out.push(`dsk_gateway_alert_firing{alert="${r.name}"} 0`);
        for (const f of mine) out.push(`dsk_gateway_alert_firing{alert="${r.name}"${f.key ? `,key="${esc(f.key)}"` : ''}} 1`);
      }
      out.push('# HELP dsk_gateway_alert_episodes_total Alert episodes fired since start.', '# TYPE dsk_gateway_alert_episodes_total counter');
      for (const r of this.alerts.rules) out.push(`dsk_gateway_alert_episodes_total{alert="${r.name}"} ${this.alerts.episodes.get(r.name) ?? 0}`);
      out.push('# HELP dsk_gateway_audit_events_total Audit rows with an action an alert watches (quota, anomaly), seen since start.', '# TYPE dsk_gateway_audit_events_total counter');
      for (const r of this.alerts.rules) if (r.kind === 'audit') for (const a of r.actions) out.push(`dsk_gateway_audit_events_total{action="${a}"} ${this.alerts.auditCounts.get(a) ?? 0}`);
    }
    if (this.webhook) {
      out.push('# HELP dsk_gateway_webhook_messages_total Alert webhook messages by outcome (failed: after every retry).', '# TYPE dsk_gateway_webhook_messages_total counter');
      for (const [k, n] of Object.entries(this.webhook.counts)) out.push(`dsk_gateway_webhook_messages_total{result="${k}"} ${n}`);
      out.push('# HELP dsk_gateway_webhook_queue Alert webhook messages waiting.', '# TYPE dsk_gateway_webhook_queue gauge', `dsk_gateway_webhook_queue ${this.webhook.pending}`);
    }
    return out.join('\n') + '\n';
  }

  /** Stops evaluating; the last transitions are committed by the final usage flush. */
  stop(): void {
    this.alerts?.stop();
    this.webhook?.close();
  }
}
