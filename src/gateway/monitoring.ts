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
import { parseDuration } from '../kernel/duration.js';
import { DEFAULT_LEARNING_MS, SourceHistory } from './anomaly.js';
import { SourceLabeler } from './source-labels.js';
import { SideWrites } from './side-writes.js';

export class Monitoring {
  private constructor(
    readonly labeler: SourceLabeler,
    readonly history: SourceHistory | null,
    readonly side: SideWrites,
  ) {}

  static async open(home: Home): Promise<Monitoring> {
    const c = home.config;
    const g = (c.gateway ?? {}) as { geoip_db?: string; asn_db?: string; anomaly_learning?: string };
    const labeler = new SourceLabeler({ network: c.network as Record<string, string> | undefined, geoipDb: g.geoip_db, asnDb: g.asn_db });
    const side = new SideWrites();
    const learningMs = g.anomaly_learning ? parseDuration(g.anomaly_learning, 'gateway.anomaly_learning in dsk.json', true) : DEFAULT_LEARNING_MS;
    const history = labeler.enabled ? new SourceHistory(await home.store.keySources.all(), learningMs, side) : null;
    return new Monitoring(labeler, history, side);
  }

  /** The source of an accepted request of `keyId`. */
  observe(keyId: string, ip: string, now: number): void {
    if (this.history) this.history.observe(keyId, ip, this.labeler.labels(ip), now);
  }

  renderMetrics(): string {
    const out: string[] = [];
    if (this.history) out.push('# HELP dsk_gateway_anomalies_total Requests from a site, country or ASN new to their key (after learning).', '# TYPE dsk_gateway_anomalies_total counter', `dsk_gateway_anomalies_total ${this.history.anomalies}`);
    out.push('# HELP dsk_gateway_side_writes_dropped_total Anomaly/alert rows or learned sources dropped while the store could not take them.', '# TYPE dsk_gateway_side_writes_dropped_total counter', `dsk_gateway_side_writes_dropped_total ${this.side.dropped}`);
    return out.join('\n') + '\n';
  }

  stop(): void {}
}
