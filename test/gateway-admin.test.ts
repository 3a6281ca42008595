/** The gateway's /dsk/ endpoints: the audit query shared with `dsk audit query`, and key status. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, gateway, keys, openTestHome, startStubUpstream, type Gateway, type StubUpstream } from './gwkit.js';
import type { Home } from '../src/app/home.js';
import type { IssuedKey } from '../src/app/keys.js';
import { startGateway } from '../src/gateway/server.js';
import { gatewayOptions } from '../src/gateway/options.js';

let h: Home;
let up: StubUpstream;
let gw: Gateway;
let k: Record<string, IssuedKey>;

beforeAll(async () => {
  h = (await openTestHome()).h;
  up = await startStubUpstream();
  k = await keys(h, { aud: { name: 'dash', role: 'auditor' }, dev: { name: 'chat', role: 'developer' } });
  gw = await gateway(h, up.url);
  // one refused request, from loopback, audited at the flush
  expect((await call(`${gw.url}/dsk/audit`, { headers: { Authorization: `Bearer ${k.dev.api_key}` } })).status).toBe(403);
  await gw.flush();
});

afterAll(async () => {
  await gw?.close();
  await up?.close();
  await h?.close();
});

const audit = (query: string) => call(`${gw.url}/dsk/audit${query}`, { headers: { Authorization: `Bearer ${k.aud.api_key}` } });

describe('GET /dsk/audit', () => {
  it('rows newest first, in the documented shape, details parsed', async () => {
    const r = await audit('');
    expect(r.status).toBe(200);
    expect(r.body.object).toBe('list');
    const rows = r.body.data;
    expect(rows.map((x: any) => x.seq)).toEqual([...rows.map((x: any) => x.seq)].sort((a, b) => b - a));
    for (const row of rows) expect(Object.keys(row).sort()).toEqual(['action', 'actor', 'details', 'key_id', 'seq', 'source_ip', 'ts']);
    expect(rows[0]).toMatchObject({ action: 'AUTH_FAILURE', key_id: k.dev.id, source_ip: '127.0.0.1', details: { reason: 'ROLE_DENIED', route: 'GET /dsk/audit', count: 1 } });
  });

  it('filters as dsk audit query does: action lists, key, address blocks, time', async () => {
    const creates = (await audit('?action=key_create,AUTH_FAILURE')).body.data;
    expect(new Set(creates.map((x: any) => x.action))).toEqual(new Set(['KEY_CREATE', 'AUTH_FAILURE']));
    expect((await audit(`?key_id=${k.aud.id}&action=KEY_CREATE`)).body.data).toHaveLength(1);
    expect((await audit('?source_ip=127.0.0.0/8')).body.data.map((x: any) => x.source_ip)).toEqual(['127.0.0.1']);
    expect((await audit('?source_ip=::ffff:127.0.0.1')).body.data).toHaveLength(1);
    expect((await audit('?source_ip=10.0.0.0/8')).body.data).toEqual([]);
    expect((await audit('?since=1h')).body.data.length).toBeGreaterThan(2);
    expect((await audit(`?since=${new Date(Date.now() + 3_600_000).toISOString()}`)).body.data).toEqual([]);
    expect((await audit('?limit=2')).body.data).toHaveLength(2);
    expect((await audit('?limit=0')).body.data.length).toBeGreaterThan(2);
  });

  it.each(['?since=yesterday', '?source_ip=10.0.0.0/33', '?action=no-such-action!'])('a malformed filter %s → 400 invalid_filter', async (q) => {
    const r = await audit(q);
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'invalid_filter' } });
    expect(r.body.error.message).not.toContain('--');
  });
});

describe('other /dsk/ routes', () => {
  it.each(['GET /dsk/secret', 'GET /dsk/*', '* /dsk/audit', 'POST /dsk/keys', 'GET /dsk'])('a route %s in dsk.json is refused at load, naming it', (r) => {
    let err: any;
    try {
      gatewayOptions({ routes: { [r]: 'model.invoke' } }, { upstream: up.url });
    } catch (e) {
      err = e;
    }
    expect(err?.code).toBe('ERR_ROUTE_RESERVED');
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe(`route '${r}' in gateway.routes in dsk.json is under /dsk/, which the gateway keeps for its own endpoints`);
  });

  it('a catch-all route never reaches /dsk/: 404, never the audit log, never proxied', async () => {
    const o = gatewayOptions({ routes: { '* /*': 'model.invoke' } }, { upstream: up.url, listen: '127.0.0.1:0' });
    const g = await startGateway(h, o);
    try {
      const before = up.seen.length;
      for (const p of ['/dsk/secret', '/dsk/audit/x', '/dsk//keys/..%2Faudit', '/dsk']) {
        const r = await call(`${g.url}${p}`, { headers: { Authorization: `Bearer ${k.dev.api_key}` } });
        expect([400, 404]).toContain(r.status);
        expect(['unknown_route', 'invalid_path']).toContain(r.body.error.code);
      }
      expect(up.seen.length).toBe(before);
      // the same route still proxies everything else
      expect((await call(`${g.url}/v1/anything`, { headers: { Authorization: `Bearer ${k.dev.api_key}` } })).status).toBe(200);
    } finally {
      await g.close();
    }
  });
});
