/**
 * What reaches the upstream: the request target (dot segments and encoded dots or slashes refused
 * before route matching, the normalised path forwarded), and the headers (Forwarded, X-Real-IP,
 * Connection-named headers stripped; a repeated Authorization refused). Raw node:http requests,
 * because fetch and the openai client resolve `..` themselves before sending.
 */
import net from 'node:net';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gateway, keys, openTestHome, startStubUpstream, type Gateway, type StubUpstream } from './gwkit.js';
import type { Home } from '../src/app/home.js';
import type { IssuedKey } from '../src/app/keys.js';
import { normaliseTarget } from '../src/gateway/path.js';
import { RouteTable, DEFAULT_ROUTES } from '../src/gateway/routes.js';
import { signHeaders } from '../src/gateway/signature.js';

let h: Home;
let up: StubUpstream;
let gw: Gateway;
let k: Record<string, IssuedKey>;

beforeAll(async () => {
  h = (await openTestHome()).h;
  up = await startStubUpstream();
  k = await keys(h, { bot: { name: 'batch', role: 'automation' }, dev: { name: 'chat', role: 'developer' } });
  gw = await gateway(h, up.url, { maxFailures: 10_000 });
});

afterAll(async () => {
  await gw?.close();
  await up?.close();
  await h?.close();
});

/** One request written byte for byte on a socket: the target and headers exactly as given, repeats allowed. */
function raw(method: string, target: string, headers: [string, string][] = []): Promise<{ status: number; body: any }> {
  const u = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const sock = net.connect(Number(u.port), u.hostname, () => {
      sock.write(`${method} ${target} HTTP/1.0\r\nHost: ${u.host}\r\nConnection: close\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`);
    });
    let text = '';
    sock.on('data', (c) => (text += c));
    sock.on('error', reject);
    sock.on('end', () => {
      const [head, ...rest] = text.split('\r\n\r\n');
      let body: any = rest.join('\r\n\r\n');
      try {
        body = JSON.parse(body);
      } catch {
        // not JSON: keep the text
      }
      resolve({ status: Number(head.split(' ')[1]), body });
    });
  });
}

const bearer = (key: string): [string, string] => ['Authorization', `Bearer ${key}`];

describe('request targets', () => {
  it.each([
    '/v1/models/../../metrics',
    '/v1/models/../../api/ps',
    '/v1/models/%2e%2e/%2e%2e/metrics',
    '/v1/models/%2E%2E/%2E%2E/metrics',
    '/v1/models/.%2e/.%2E/metrics',
    '/v1/models/..%2f..%2fmetrics',
    '/v1/models/x%2F..%2F..%2Fapi%2Fps',
    '/v1/models/%252e%252e/%252e%252e/metrics',
    '/v1/models/..\\..\\metrics',
    '/v1/models/./x',
    '/v1/models/x/..',
    '/v1/models/..;/..;/metrics',
    '/v1/models/%zz',
    'http://127.0.0.1/v1/models',
  ])('%s → 400 invalid_path, before any route and never proxied', async (target) => {
    const before = up.seen.length;
    const r = await raw('GET', target, [bearer(k.bot.api_key)]);
    expect(r.status).toBe(400);
    expect(r.body).toEqual({ error: { message: expect.any(String), type: 'invalid_request_error', param: null, code: 'invalid_path' } });
    expect(up.seen.length).toBe(before);
  });

  it('forwards exactly the normalised path, the query untouched', async () => {
    const r = await raw('GET', '//v1///models/deepseek-stub?q=%2e%2e/x&b=1', [bearer(k.bot.api_key)]);
    expect(r.status).toBe(200);
    expect(up.seen.at(-1)!.url).toBe('/v1/models/deepseek-stub?q=%2e%2e/x&b=1');
  });

  it('a signed request is signed over the target as sent, and forwarded normalised', async () => {
    const target = '/v1//models';
    const r = await raw('GET', target, Object.entries(signHeaders({ apiKey: k.dev.api_key, apiSecret: k.dev.api_secret, keyId: k.dev.id, method: 'GET', path: target })));
    expect(r.status).toBe(200);
    expect(up.seen.at(-1)!.url).toBe('/v1/models');
  });
});

describe('the normaliser (property)', () => {
  const segment = fc.oneof(
    fc.constantFrom('.', '..', '%2e', '%2E%2e', '.%2e', '%2f', '%2F', '%5c', '%25', '%252e', '\\', '', 'v1', 'models', 'api', 'metrics', '%41', '%', '%g1'),
    fc.stringMatching(/^[A-Za-z0-9._~%-]{0,8}$/),
  );
  const target = fc.tuple(fc.array(segment, { maxLength: 8 }), fc.option(fc.string({ maxLength: 12 }))).map(([s, q]) => '/' + s.join('/') + (q === null ? '' : '?' + q));
  const routes = new RouteTable(DEFAULT_ROUTES);

  it('never throws; an accepted path is canonical, idempotent and means the same to an upstream that decodes and resolves it', () => {
    fc.assert(
      fc.property(target, (t) => {
        const n = normaliseTarget(t);
        if (!n.ok) return;
        expect(n.path.startsWith('/')).toBe(true);
        expect(n.path).not.toMatch(/\/\/|%2[ef5]|%5c|\\/i);
        expect(normaliseTarget(n.path + n.query)).toEqual(n);
        // what an upstream that percent-decodes and then removes dot segments would serve
        const decoded = n.path.replace(/%([0-9a-f]{2})/gi, (_, hex) => String.fromCharCode(parseInt(hex, 16)));
        expect(path.posix.normalize(decoded)).toBe(decoded);
        const route = routes.match('GET', n.path);
        if (route?.name === 'GET /v1/models/*') expect(path.posix.normalize(decoded).startsWith('/v1/models/')).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('a path with a dot segment or an encoded dot, slash or percent is refused, in any case', () => {
    fc.assert(
      fc.property(fc.array(segment, { maxLength: 6 }), fc.constantFrom('..', '.', '%2e%2e', '%2E.', '%2f', '%5C', '%25'), fc.array(segment, { maxLength: 6 }), (a, bad, b) => {
        expect(normaliseTarget('/' + [...a, bad, ...b].join('/')).ok).toBe(false);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('headers to the upstream', () => {
  it('Forwarded, X-Real-IP and the headers Connection names do not reach the upstream; X-Forwarded-For is the gateway\'s', async () => {
    const r = await raw('GET', '/v1/models', [
      bearer(k.bot.api_key),
      ['Forwarded', 'for=10.9.9.9;proto=https'],
      ['X-Real-IP', '10.9.9.9'],
      ['X-Forwarded-For', '10.9.9.9'],
      ['Connection', 'keep-alive, X-Internal-Trust'],
      ['X-Internal-Trust', 'admin'],
      ['X-Kept', 'yes'],
    ]);
    expect(r.status).toBe(200);
    const seen = up.seen.at(-1)!.headers;
    expect(seen.forwarded).toBeUndefined();
    expect(seen['x-real-ip']).toBeUndefined();
    expect(seen['x-internal-trust']).toBeUndefined();
    expect(seen['x-forwarded-for']).toBe('127.0.0.1');
    expect(seen['x-kept']).toBe('yes');
  });

  it('two Authorization headers are refused (401), whichever comes first', async () => {
    const before = up.seen.length;
    for (const pair of [
      [bearer(k.bot.api_key), bearer('dsk_junk')],
      [bearer('dsk_junk'), bearer(k.bot.api_key)],
      [bearer(k.bot.api_key), bearer(k.bot.api_key)],
    ]) {
      const r = await raw('GET', '/v1/models', pair);
      expect(r.status).toBe(401);
      expect(r.body.error.code).toBe('invalid_api_key');
    }
    expect(up.seen.length).toBe(before);
  });
});
