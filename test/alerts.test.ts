/**
 * Alert rules: the engine against real counters and a real store (ticks driven by hand with a fixed
 * clock), then the gateway end to end with a webhook receiver on loopback that checks the
 * signature, and a receiver that is down or slow (requests are not delayed; the alert stays in the
 * audit). The /metrics text is linted by the real `promtool check metrics`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHmac, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { spawnSync } from 'node:child_process';
import { call, gateway, keys, openTestHome, startStubUpstream, type Gateway, type StubUpstream } from './gwkit.js';
import { dsk, requireTool, tmpDir } from './helpers.js';
import type { Home } from '../src/app/home.js';
import type { IssuedKey } from '../src/app/keys.js';
import { fixedClock } from '../src/kernel/clock.js';
import { alertRules, ALERTS_SCHEMA } from '../src/domain/alert-rules.js';
import { checkConfig } from '../src/domain/config-schema.js';
import { AlertEngine } from '../src/gateway/alerts.js';
import { Metrics } from '../src/gateway/metrics.js';
import { SideWrites } from '../src/gateway/side-writes.js';
import { webhookSignature } from '../src/gateway/webhook.js';

const PROMTOOL = requireTool('promtool', 'the /metrics lint in the alert tests', { install: 'apt-get install prometheus' });
const SECRET = 'a-webhook-secret-of-some-length-0123456789';

let h: Home;
let env: NodeJS.ProcessEnv;
let homeDir: string;
let up: StubUpstream;
let k: Record<string, IssuedKey>;

beforeAll(async () => {
  const t = await openTestHome();
  h = t.h;
  env = t.env;
  homeDir = t.home;
  up = await startStubUpstream();
  k = await keys(h, { a: { name: 'a', role: 'developer' }, b: { name: 'b', role: 'developer' } });
});
afterAll(async () => {
  await up?.close();
  await h?.close();
});

const alertRows = async () =>
  (await h.store.events.query({ actions: ['ALERT'], limit: 1000 }))
    .sort((x, y) => x.seq - y.seq)
    .map((r) => ({ key: r.key_id, actor: r.actor, ...JSON.parse(r.details) }));

describe('the alert engine', () => {
  it('fires once per episode and resolves: QPS overall and per key, auth failures, upstream error rate, audit actions', async () => {
    const clock = fixedClock(Date.now());
    const metrics = new Metrics();
    const side = new SideWrites();
    const rules = alertRules(
      ALERTS_SCHEMA.parse({
        rules: [
          { name: 'Busy', kind: 'qps', above: 5, for: '2s' },
          { name: 'BusyKey', kind: 'qps', above: 3, for: '1s', per_key: true },
          { name: 'BruteForce', kind: 'auth_failures', above: 4, window: '3s' },
          { name: 'Upstream', kind: 'upstream_error_rate', above: 0.5, window: '2s', min_requests: 4 },
          { name: 'Quota', kind: 'quota', clear_after: '3s' },
        ],
      }),
    );
    const engine = new AlertEngine(rules, { metrics, events: h.store.events, side, webhook: null, clock });
    metrics.request(k.a.id, 'POST /v1/chat/completions', 200, 0.01); // before start: not counted
    await engine.start(0);
    const transitions: string[] = [];
    const second = async (load: [string, string, number, number][]) => {
      for (const [key, route, status, n] of load) for (let i = 0; i < n; i++) metrics.request(key, route, status, 0.01);
      clock.advance(1000);
      await engine.tick();
      const b = side.take();
      for (const r of b?.rows ?? []) transitions.push(`${r.details.alert}${r.key_id ? `[${r.key_id === k.a.id ? 'a' : 'b'}]` : ''} ${r.details.state}`);
      return b;
    };
    const CHAT = 'POST /v1/chat/completions';
    await second([[k.a.id, CHAT, 200, 4]]); // a: 4/s (> 3, fires after 1 s); total 4/s (not > 5)
    expect(transitions).toEqual(['BusyKey[a] firing']);
    await second([[k.a.id, CHAT, 200, 4], [k.b.id, CHAT, 200, 3], ['-', '/metrics', 200, 50]]); // total 7/s; scrapes do not count
    await second([[k.a.id, CHAT, 200, 4], [k.b.id, CHAT, 200, 3]]); // 2 s above 5: Busy fires once
    await second([[k.a.id, CHAT, 200, 1], [k.b.id, CHAT, 200, 1]]);
    expect(transitions).toEqual(['BusyKey[a] firing', 'Busy firing', 'Busy resolved', 'BusyKey[a] resolved']);
    transitions.length = 0;

    // brute force: 3 + 3 failures within 3 s → fires; it resolves once the window has slid past them
    await second([['-', 'unknown', 401, 3]]);
    await second([['-', 'unknown', 401, 3]]);
    await second([['-', 'unknown', 401, 1]]);
    await second([]);
    await second([]);
    expect(transitions).toEqual(['BruteForce firing', 'BruteForce resolved']);
    transitions.length = 0;

    // upstream: 3 errors of 3 requests is under min_requests; 4 of 5 is above 50 %, then 4 of 10 is not
    // (the load stays under both QPS thresholds)
    await second([[k.a.id, CHAT, 502, 3]]);
    await second([]);
    await second([]);
    expect(transitions).toEqual([]);
    await second([[k.a.id, CHAT, 502, 2], [k.b.id, CHAT, 502, 2], [k.b.id, CHAT, 200, 1]]);
    await second([[k.a.id, CHAT, 200, 2], [k.b.id, CHAT, 200, 3]]);
    expect(transitions).toEqual(['Upstream firing', 'Upstream resolved']);
    transitions.length = 0;

    // quota crossings: audit rows written by any part of dsk, matched by action name
    const quota = (action: string, key: string) => h.tx((t) => t.audit({ action, key_id: key, details: { quota: 'tokens', used: 0.8 } }));
    await quota('QUOTA_WARNING', k.a.id);
    await second([]);
    await quota('QUOTA_EXCEEDED', k.b.id);
    await quota('KEY_SOMETHING_ELSE', k.b.id);
    await second([]);
    await second([]);
    await second([]);
    expect(transitions).toEqual(['Quota firing']);
    await second([]);
    expect(transitions).toEqual(['Quota firing', 'Quota resolved']);
    expect(engine.auditCounts).toEqual(new Map([['QUOTA_WARNING', 1], ['QUOTA_EXCEEDED', 1]]));
    expect(engine.episodes.get('Quota')).toBe(1);
  });

  it('dsk.json: malformed alerts are refused naming the field', () => {
    const base = { format: 'dsk-config/1', home_id: 'abcdef0123456789', backend: 'software', created_at: 'x' };
    const bad: [unknown, string][] = [
      [{ rules: [{ name: 'x y', kind: 'qps', above: 1 }] }, 'alerts.rules.0.name'],
      [{ rules: [{ name: 'A', kind: 'qps', above: -1 }] }, 'alerts.rules.0.above'],
      [{ rules: [{ name: 'A', kind: 'qps', above: 1, for: 'soon' }] }, 'alerts.rules.0.for'],
      [{ rules: [{ name: 'A', kind: 'nope' }] }, 'alerts.rules.0.kind'],
      [{ rules: [{ name: 'A', kind: 'upstream_error_rate', above: 2 }] }, 'alerts.rules.0.above'],
      [{ rules: [{ name: 'A', kind: 'quota' }, { name: 'A', kind: 'anomaly' }] }, 'alerts'],
      [{ rules: [], webhook: { url: 'ftp://x', secret_file: '/s' } }, 'alerts.webhook.url'],
      [{ rules: [], webhook: { url: 'http://x', secret_file: '/s', secret: 'in-clear' } }, 'alerts.webhook'], // never the secret itself
    ];
    for (const [alerts, field] of bad) expect({ alerts, r: checkConfig({ ...base, alerts }) }).toMatchObject({ alerts, r: { ok: false, field } });
    expect(checkConfig({ ...base, alerts: { rules: [{ name: 'A', kind: 'anomaly' }], webhook: { url: 'https://hooks.example/x', secret_file: '/etc/dsk/hook' } } }).ok).toBe(true);
  });
});

/** A webhook receiver on loopback: checks each signature; `mode` decides how it answers. */
async function receiver(mode: { fail?: number; hang?: boolean }) {
  const got: { body: any; valid: boolean; delivery: string }[] = [];
  let failures = mode.fail ?? 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const ts = String(req.headers['x-dsk-timestamp']);
      const want = Buffer.from(`sha256=${createHmac('sha256', SECRET).update(`${ts}.${body}`).digest('hex')}`);
      const sig = Buffer.from(String(req.headers['x-dsk-signature']));
      const fresh = Math.abs(Date.now() / 1000 - Number(ts)) < 300;
      got.push({ body: JSON.parse(body), valid: fresh && sig.length === want.length && timingSafeEqual(sig, want), delivery: String(req.headers['x-dsk-delivery']) });
      if (mode.hang) return; // never answers
      if (failures-- > 0) return void res.writeHead(500).end();
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  return { url, got, close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))) };
}

describe('the gateway raises alerts', () => {
  let gw: Gateway | undefined;
  const secretFile = path.join(tmpDir(), 'hook-secret');
  fs.writeFileSync(secretFile, `${SECRET}\n`, { mode: 0o600 });

  afterAll(async () => gw?.close());

  async function start(url: string, timeout = '2s') {
    await gw?.close();
    h.config.alerts = { rules: [{ name: 'BruteForce', kind: 'auth_failures', above: 3, window: '1m' }], webhook: { url, secret_file: secretFile, timeout, retries: 3 } };
    gw = await gateway(h, up.url, { maxFailures: 1000 });
    return gw;
  }
  const badKey = () => call(`${gw!.url}/v1/models`, { headers: { Authorization: 'Bearer sk-not-a-key' } });
  const until = async (what: () => boolean | Promise<boolean>, ms = 8000) => {
    const end = Date.now() + ms;
    while (!(await what())) {
      if (Date.now() > end) throw new Error('timed out');
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it('brute force: one ALERT row, the gauge, and a signed webhook the receiver verifies (after a failed first delivery)', async () => {
    const rx = await receiver({ fail: 1 });
    await start(rx.url);
    const before = (await alertRows()).length;
    for (let i = 0; i < 6; i++) expect((await badKey()).status).toBe(401);
    await until(() => rx.got.length >= 2);
    expect(rx.got.map((g) => g.valid)).toEqual([true, true]);
    expect(rx.got[0].delivery).toBe(rx.got[1].delivery); // a retry of the same message
    expect(rx.got[1].body).toMatchObject({ alert: 'BruteForce', kind: 'auth_failures', state: 'firing', threshold: 3, key_id: null });
    expect(rx.got[1].body.value).toBeGreaterThan(3);
    const m = await (await fetch(`${gw!.url}/metrics`)).text();
    expect(m).toMatch(/^dsk_gateway_alert_firing\{alert="BruteForce"\} 1$/m);
    expect(m).toMatch(/^dsk_gateway_webhook_messages_total\{result="delivered"\} 1$/m);
    expect(m).toMatch(/^dsk_gateway_webhook_messages_total\{result="retried"\} 1$/m);
    if (PROMTOOL) {
      const lint = spawnSync('promtool', ['check', 'metrics'], { input: m, encoding: 'utf8' });
      expect(lint.stdout + lint.stderr).not.toMatch(/error|not a valid|unexpected/i);
      expect(lint.status).toBe(0);
    }
    // more failures in the same episode: no second alert
    for (let i = 0; i < 4; i++) await badKey();
    await new Promise((r) => setTimeout(r, 1500));
    await gw!.flush();
    const rows = (await alertRows()).slice(before);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ actor: 'dsk serve', alert: 'BruteForce', state: 'firing' });
    expect(rx.got).toHaveLength(2);
    expect(JSON.parse(dsk(['audit', 'verify', '--json'], { env }).stdout)).toMatchObject({ ok: true });
    expect(webhookSignature(Buffer.from(SECRET), 1, '{}')).toBe(`sha256=${createHmac('sha256', SECRET).update('1.{}').digest('hex')}`);
    await rx.close();
  });

  it('a receiver that is down or hangs never delays requests, and the alert is in the audit', async () => {
    for (const mode of ['down', 'hang'] as const) {
      const rx = await receiver({ hang: mode === 'hang' });
      if (mode === 'down') await rx.close();
      await start(rx.url, '3s');
      const before = (await alertRows()).length;
      for (let i = 0; i < 5; i++) await badKey();
      await until(async () => (await gw!.flush(), (await alertRows()).length > before));
      // the webhook is failing or hanging now; requests go through at their usual speed
      const times: number[] = [];
      for (let i = 0; i < 20; i++) {
        const t0 = performance.now();
        expect((await call(`${gw!.url}/v1/models`, { headers: { Authorization: `Bearer ${k.a.api_key}` } })).status).toBe(200);
        times.push(performance.now() - t0);
      }
      // a gateway that waited for the webhook would take its 3 s timeout; a loaded machine stays well under 1.5 s
      expect({ mode, slowest: Math.max(...times) < 1500 }).toEqual({ mode, slowest: true });
      const m = await (await fetch(`${gw!.url}/metrics`)).text();
      expect(m).toMatch(/^dsk_gateway_alert_firing\{alert="BruteForce"\} 1$/m);
      if (mode === 'hang') expect(rx.got.length).toBeGreaterThanOrEqual(1);
      const t0 = performance.now();
      await gw!.close(); // close does not wait for the hanging receiver
      expect(performance.now() - t0).toBeLessThan(2000);
      gw = undefined;
      if (mode === 'hang') await rx.close();
    }
  });

  it('a missing or readable-by-others webhook secret file stops dsk serve before it listens', async () => {
    h.config.alerts = { rules: [], webhook: { url: 'http://127.0.0.1:9/x', secret_file: path.join(tmpDir(), 'none') } };
    await expect(gateway(h, up.url)).rejects.toMatchObject({ code: 'ERR_WEBHOOK_SECRET_MISSING', exitCode: 4 });
    const open = path.join(tmpDir(), 'open');
    fs.writeFileSync(open, SECRET, { mode: 0o644 });
    h.config.alerts = { rules: [], webhook: { url: 'http://127.0.0.1:9/x', secret_file: open } };
    await expect(gateway(h, up.url)).rejects.toMatchObject({ code: 'ERR_UNSAFE_PERMISSIONS', exitCode: 5 });
    delete h.config.alerts;
  });
});
