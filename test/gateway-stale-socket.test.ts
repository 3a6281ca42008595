/**
 * The upstream may close a kept-alive connection just as the gateway reuses it. The request never
 * reached the upstream, so the gateway sends it again on a fresh connection instead of answering
 * 502 (seen under load before: an intermittent 502 on a healthy upstream).
 */
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, gateway, keys, openTestHome, type Gateway } from './gwkit.js';
import type { Home } from '../src/app/home.js';
import type { IssuedKey } from '../src/app/keys.js';

const ANSWER = '{"object":"list","data":[]}';

/** Answers the first request of each connection with keep-alive, then resets it at the next one. */
function staleUpstream() {
  let connections = 0;
  const server = net.createServer((s) => {
    connections++;
    let served = false;
    s.on('data', () => {
      if (served) return void s.resetAndDestroy();
      served = true;
      s.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${ANSWER.length}\r\nconnection: keep-alive\r\n\r\n${ANSWER}`);
    });
    s.on('error', () => {});
  });
  return new Promise<{ url: string; connections: () => number; close: () => Promise<void> }>((resolve) =>
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({ url: `http://127.0.0.1:${port}`, connections: () => connections, close: () => new Promise((r) => server.close(() => r())) });
    }),
  );
}

let h: Home;
let k: Record<string, IssuedKey>;
let up: Awaited<ReturnType<typeof staleUpstream>>;
let gw: Gateway;

beforeAll(async () => {
  h = (await openTestHome()).h;
  k = await keys(h, { dev: { name: 'dev', role: 'developer' } });
  up = await staleUpstream();
  gw = await gateway(h, up.url);
});

afterAll(async () => {
  await gw?.close();
  await up?.close();
  await h?.close();
});

describe('a kept-alive upstream connection closed under the gateway', () => {
  it('is retried once on a fresh connection: every request gets its answer, none a 502', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await call(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${k.dev.api_key}` } });
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      expect(r.body).toEqual(JSON.parse(ANSWER));
    }
    expect(up.connections()).toBeGreaterThanOrEqual(5); // each reuse was reset, and a new connection answered
  });
});
