/** `dsk export prometheus-rules`: the alerts of dsk.json as a rules file, checked and unit-tested by the real promtool. */
import { describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { dsk, makeHome, requireTool, tmpDir } from './helpers.js';

const PROMTOOL = requireTool('promtool', 'the Prometheus rules tests', { install: 'apt-get install prometheus' });

describe.skipIf(!PROMTOOL)('dsk export prometheus-rules', () => {
  it('prints the alerts of dsk.json as a rules file that promtool accepts, and its rules fire on the gateway metrics', () => {
    const m = makeHome();
    const cfgPath = path.join(m.home, 'dsk.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    cfg.alerts = {
      rules: [
        { name: 'HighQps', kind: 'qps', above: 1, for: '1m' },
        { name: 'KeyQps', kind: 'qps', above: 20, per_key: true },
        { name: 'BruteForce', kind: 'auth_failures', above: 20, window: '1m' },
        { name: 'UpstreamErrors', kind: 'upstream_error_rate', above: 0.05, window: '5m', min_requests: 20 },
        { name: 'Quota', kind: 'quota' },
        { name: 'Anomaly', kind: 'anomaly', clear_after: '1h' },
      ],
    };
    fs.writeFileSync(cfgPath, JSON.stringify(cfg));
    const r = dsk(['export', 'prometheus-rules'], { env: m.env });
    expect(r.code).toBe(0);
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'dsk.yml'), r.stdout);
    const check = spawnSync('promtool', ['check', 'rules', path.join(dir, 'dsk.yml')], { encoding: 'utf8' });
    expect(check.stdout + check.stderr).toContain('SUCCESS: 6 rules found');
    expect(check.status).toBe(0);
    // promtool's rule unit test: 2 requests a second for 3 minutes fire HighQps; a quota row fires Quota
    fs.writeFileSync(
      path.join(dir, 'test.yml'),
      [
        'rule_files: [dsk.yml]',
        'evaluation_interval: 15s',
        'tests:',
        '  - interval: 15s',
        '    input_series:',
        '      - series: \'dsk_gateway_requests_total{key="abc",route="POST /v1/chat/completions",status="200"}\'',
        "        values: '0+30x12'",
        '      - series: \'dsk_gateway_audit_events_total{action="QUOTA_WARNING"}\'',
        "        values: '0 0 1 1 1'",
        '    alert_rule_test:',
        '      - eval_time: 3m',
        '        alertname: HighQps',
        '        exp_alerts: [{ exp_labels: { source: dsk, dsk_kind: qps }, exp_annotations: { summary: "Gateway above 1 requests per second for 1m" } }]',
        '      - eval_time: 3m',
        '        alertname: BruteForce',
        '        exp_alerts: []',
        '      - eval_time: 1m',
        '        alertname: Quota',
        '        exp_alerts: [{ exp_labels: { source: dsk, dsk_kind: quota }, exp_annotations: { summary: "A key crossed a quota threshold" } }]',
      ].join('\n') + '\n',
    );
    const t = spawnSync('promtool', ['test', 'rules', path.join(dir, 'test.yml')], { encoding: 'utf8', cwd: dir });
    expect(t.stdout + t.stderr).toContain('SUCCESS');
    const j = JSON.parse(dsk(['export', 'prometheus-rules', '--json'], { env: m.env }).stdout);
    expect(j).toMatchObject({ format: 'prometheus-rules', alerts: 6, names: ['HighQps', 'KeyQps', 'BruteForce', 'UpstreamErrors', 'Quota', 'Anomaly'] });
  });
});
