/** Demo step: the network map labels sources, a new site raises ANOMALY, a brute-force burst an ALERT. */
import { gatewayOptions, startGateway } from '../../gateway/server.js';
import { startStubUpstream } from '../../gateway/stub-upstream.js';
import { alertRules } from '../../domain/alert-rules.js';
import { prometheusRules } from '../../domain/prometheus-rules.js';
import type { DemoStep } from './context.js';

export const monitoringStep: DemoStep = {
  title: 'Where calls come from, and alerts: a key used from a new site is an ANOMALY, a burst of bad keys an ALERT',
  command: `dsk.json: "network": {"10.1.0.0/16": "dc-east", …}, "alerts": {"rules": [{"name": "BruteForce", "kind": "auth_failures", "above": 2}]}`,
  async run(d) {
    const saved = { network: d.h.config.network, gateway: d.h.config.gateway, alerts: d.h.config.alerts };
    d.h.config.network = { '10.1.0.0/16': 'dc-east', '10.2.0.0/16': 'dc-west' };
    d.h.config.gateway = { anomaly_learning: '0s' };
    d.h.config.alerts = { rules: [{ name: 'BruteForce', kind: 'auth_failures', above: 2, window: '1m' }] };
    const up = await startStubUpstream();
    const gw = await startGateway(d.h, { ...gatewayOptions(undefined, { upstream: up.url, listen: '127.0.0.1:0', trustProxy: true }), drainMs: 1000 });
    try {
      const get = (key: string, from: string) => fetch(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}`, 'x-forwarded-for': from, connection: 'close' } }).then((r) => r.status);
      await get(d.keys.chat.api_key, '10.1.2.3');
      await get(d.keys.chat.api_key, '10.1.8.8');
      await get(d.keys.chat.api_key, '10.2.0.7');
      for (let i = 0; i < 3; i++) await get('sk-guessing', '203.0.113.9');
      await new Promise((r) => setTimeout(r, 1100)); // one alert tick
      await gw.flush();
      const rows = await d.h.store.events.query({ actions: ['ANOMALY', 'ALERT'], limit: 10 });
      const anomaly = rows.find((r) => r.action === 'ANOMALY');
      const alert = rows.find((r) => r.action === 'ALERT');
      d.say(`   chat-frontend's key from 10.1.2.3 and 10.1.8.8 (dc-east), then from 10.2.0.7 (dc-west):`);
      d.say(`   ANOMALY ${anomaly?.details ?? '(none)'}`);
      d.say(`   3 requests with a guessed key from 203.0.113.9: ALERT ${alert?.details ?? '(none)'}`);
      const rulesText = prometheusRules(alertRules(d.h.config.alerts as never));
      d.say(`   dsk export prometheus-rules → ${rulesText.split('\n').find((l) => l.includes('expr:'))?.trim()}`);
      d.summary.monitoring = { anomaly: anomaly ? JSON.parse(anomaly.details) : null, alert: alert ? JSON.parse(alert.details) : null };
    } finally {
      await gw.close();
      await up.close();
      Object.assign(d.h.config, saved);
    }
  },
};
