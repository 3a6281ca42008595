/**
 * Limits that keep one caller from taking the gateway: requests in progress per key (long SSE
 * streams through the openai client), rate and concurrency checked before a byte of the body is
 * read, bodies cut when they trickle, a budget for all bodies together, and caps on open
 * connections overall and per address. Real sockets against a real gateway and stub upstream.
 */
import net from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, gateway, keys, openTestHome, startStubUpstream, type Gateway, type StubUpstream } from './gwkit.js';
import type { Home } from '../src/app/home.js';
import type { IssuedKey } from '../src/app/keys.js';

let h: Home;
let up: StubUpstream;
let k: Record<string, IssuedKey>;
const open: Gateway[] = [];

beforeAll(async () => {
  h = (await openTestHome()).h;
  up = await startStubUpstream({ record: false });
  k = await keys(h, {
    streamer: { name: 'streamer', role: 'automation' },
    other: { name: 'other', role: 'automation' },
    single: { name: 'single', role: 'developer', options: { max_concurrent: 1 } },
    slow: { name: 'slow', role: 'developer', options: { rate_limit: { rps: 0.001, burst: 1 } } },
    dev: { name: 'dev', role: 'developer' },
  });
});

afterAll(async () => {
  for (const g of open) await g.close();
  await up?.close();
  await h?.close();
});

async function start(o: Parameters<typeof gateway>[2]): Promise<Gateway> {
  const g = await gateway(h, up.url, { maxFailures: 10_000, drain: 0, ...o });
  open.push(g);
  return g;
}

/** Sends the request head (and `body`, if any) on a socket and leaves it open; resolves the status line and headers when the gateway answers. */
function stalled(url: string, head: string, body = ''): { socket: net.Socket; answer: Promise<{ status: number; head: string; ms: number }>; closed: Promise<void> } {
  const u = new URL(url);
  const t0 = Date.now();
  const socket = net.connect(Number(u.port), u.hostname, () => socket.write(head + body));
  let text = '';
  const answer = new Promise<{ status: number; head: string; ms: number }>((resolve, reject) => {
    socket.on('data', (c) => {
      text += c;
      if (text.includes('\r\n\r\n')) resolve({ status: Number(text.split(' ')[1]), head: text.split('\r\n\r\n')[0].toLowerCase(), ms: Date.now() - t0 });
    });
    socket.on('close', () => reject(new Error(`closed without an answer: ${JSON.stringify(text)}`)));
    socket.on('error', () => {});
  });
  answer.catch(() => {});
  const closed = new Promise<void>((r) => socket.on('close', () => r()));
  return { socket, answer, closed };
}

const postHead = (key: string, length: number, path = '/v1/chat/completions') =>
  `POST ${path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;

describe('requests in progress per key', () => {
  it('a key holding its limit of long streams gets 429 + Retry-After for one more; another key is served at once', async () => {
    const gw = await start({ maxConcurrent: 3 });
    const client = (key: string) => new OpenAI({ apiKey: key, baseURL: `${gw.url}/v1`, maxRetries: 0, defaultHeaders: { 'x-stub-delay-ms': '100', 'x-stub-chunks': '20' } });
    const streams = await Promise.all([0, 1, 2].map(() => client(k.streamer.api_key).chat.completions.create({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'long' }], stream: true })));
    const err = await client(k.streamer.api_key)
      .chat.completions.create({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'one more' }], stream: true })
      .then(() => null, (e) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect(err.status).toBe(429);
    expect(err.code).toBe('concurrency_limit_exceeded');
    expect(typeof err.headers.get === 'function' ? err.headers.get('retry-after') : err.headers['retry-after']).toBe('1');
    const t0 = Date.now();
    const models = await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${k.other.api_key}` } });
    expect(models.status).toBe(200);
    expect(Date.now() - t0).toBeLessThan(1000);
    // the streams were not disturbed, and a finished stream frees its slot
    const texts = await Promise.all(streams.map(async (s) => {
      let text = '';
      for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
      return text;
    }));
    for (const t of texts) expect(t).toMatch(/^echo: long \[0\].*\[19\]$/);
    const again = await client(k.streamer.api_key).chat.completions.create({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'after' }] });
    expect(again.choices[0].message.content).toBe('echo: after');
  });

  it("a key's own max_concurrent wins over the gateway's; an aborted stream gives its slot back", async () => {
    const gw = await start({ maxConcurrent: 50 });
    const ac = new AbortController();
    const first = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', signal: ac.signal, headers: { Authorization: `Bearer ${k.single.api_key}`, 'content-type': 'application/json', 'x-stub-delay-ms': '200', 'x-stub-chunks': '50' }, body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'x' }] }) });
    expect(first.status).toBe(200);
    const second = await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${k.single.api_key}` } });
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('concurrency_limit_exceeded');
    ac.abort();
    await first.body?.cancel().catch(() => {});
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 20));
      status = (await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${k.single.api_key}` } })).status;
    }
    expect(status).toBe(200);
  });
});

describe('limits come before the body', () => {
  it('a key over its rate limit is refused without the gateway waiting for its body', async () => {
    const gw = await start({});
    expect((await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${k.slow.api_key}` } })).status).toBe(200);
    const s = stalled(gw.url, postHead(k.slow.api_key, 1024 * 1024));
    const a = await s.answer;
    expect(a.status).toBe(429);
    expect(a.head).toContain('retry-after:');
    expect(a.ms).toBeLessThan(1000);
    s.socket.destroy();
  });

  it('a key at its concurrency limit is refused without the gateway waiting for its body', async () => {
    const gw = await start({ maxConcurrent: 1 });
    const holder = stalled(gw.url, postHead(k.dev.api_key, 1000), '{');
    await new Promise((r) => setTimeout(r, 100));
    const s = stalled(gw.url, postHead(k.dev.api_key, 1024 * 1024));
    const a = await s.answer;
    expect(a.status).toBe(429);
    expect(a.ms).toBeLessThan(1000);
    holder.socket.destroy();
    s.socket.destroy();
  });

  it('a body that trickles is cut by the body timeout: 408, connection closed', async () => {
    const gw = await start({ bodyTimeout: 300 });
    const s = stalled(gw.url, postHead(k.dev.api_key, 100), '{"model":');
    const a = await s.answer;
    expect(a.status).toBe(408);
    expect(a.ms).toBeGreaterThanOrEqual(250);
    expect(a.ms).toBeLessThan(2000);
    expect(a.head).toContain('connection: close');
    await s.closed;
  });

  it('bodies together stay within the budget: one more is 503 + Retry-After, and the budget frees when a body is cut', async () => {
    const gw = await start({ maxBuffered: 64 * 1024, maxBody: 48 * 1024, bodyTimeout: '1s' });
    const first = stalled(gw.url, postHead(k.dev.api_key, 40 * 1024), '{');
    await new Promise((r) => setTimeout(r, 100));
    const second = stalled(gw.url, postHead(k.other.api_key, 40 * 1024), '{');
    const a = await second.answer;
    expect(a.status).toBe(503);
    expect(a.head).toContain('retry-after: 1');
    expect((await first.answer).status).toBe(408);
    const body = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(30 * 1024) }] });
    const r = await call(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${k.other.api_key}`, 'content-type': 'application/json' }, body });
    expect(r.status).toBe(200);
  });
});

describe('open connections', () => {
  /** Opens a socket and reports whether the gateway closed it within `ms` without a byte. */
  function idle(url: string, ms = 300): Promise<{ socket: net.Socket; closedByGateway: boolean }> {
    const u = new URL(url);
    return new Promise((resolve) => {
      const socket = net.connect(Number(u.port), u.hostname);
      socket.on('error', () => {});
      const timer = setTimeout(() => resolve({ socket, closedByGateway: false }), ms);
      socket.on('close', () => {
        clearTimeout(timer);
        resolve({ socket, closedByGateway: true });
      });
    });
  }

  it('past the per-address cap a new connection is closed at once; closing one makes room', async () => {
    const gw = await start({ maxConnectionsPerIp: 4 });
    const held = await Promise.all([0, 1, 2, 3].map(() => idle(gw.url)));
    expect(held.map((c) => c.closedByGateway)).toEqual([false, false, false, false]);
    expect((await idle(gw.url)).closedByGateway).toBe(true);
    held[0].socket.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const r = stalled(gw.url, 'GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n');
    expect((await r.answer).status).toBe(200);
    r.socket.destroy();
    for (const c of held) c.socket.destroy();
    await new Promise((r) => setTimeout(r, 50));
    expect(await (await fetch(`${gw.url}/metrics`)).text()).toContain('dsk_gateway_connections_refused_total{cap="address"} 1');
  });

  it('past the overall cap a new connection is closed at once', async () => {
    const gw = await start({ maxConnections: 3, maxConnectionsPerIp: 100 });
    const held = await Promise.all([0, 1, 2].map(() => idle(gw.url)));
    expect(held.map((c) => c.closedByGateway)).toEqual([false, false, false]);
    expect((await idle(gw.url)).closedByGateway).toBe(true);
    for (const c of held) c.socket.destroy();
  });
});

