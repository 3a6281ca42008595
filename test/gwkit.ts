/** Shared setup for the gateway tests: a home, an in-process unsealed Home, keys, a stub upstream. */
import Database from 'better-sqlite3';
import path from 'node:path';
import { makeHome } from './helpers.js';
import { openUnsealed, defaultEnv, type Home } from '../src/app/home.js';
import { issueKey, type IssuedKey, type KeySpec } from '../src/app/keys.js';
import { passphrasesFromFiles } from '../src/cli/secrets.js';
import { startGateway, type Gateway } from '../src/gateway/server.js';
import { gatewayOptions, type GatewayOptions, type GatewayOverrides } from '../src/gateway/options.js';
import type { Clock } from '../src/kernel/clock.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';

export async function openTestHome() {
  const h = makeHome();
  const home = await openUnsealed(h.home, defaultEnv('tester'), {
    passphrases: async () => passphrasesFromFiles(h.pass.slice(0, 3)),
    pin: async () => Buffer.alloc(0),
  });
  return { ...h, h: home };
}

export async function keys(home: Home, specs: Record<string, KeySpec>): Promise<Record<string, IssuedKey>> {
  const out: Record<string, IssuedKey> = {};
  for (const [n, s] of Object.entries(specs)) out[n] = await issueKey(home, s);
  return out;
}

/** A gateway on a free loopback port; `clock` (default: the system's) drives its time checks. */
export async function gateway(home: Home, upstream: string, overrides: GatewayOverrides & Partial<Pick<GatewayOptions, 'flushMs'>> = {}, clock?: Clock): Promise<Gateway> {
  const { flushMs, ...rest } = overrides;
  const o: GatewayOptions = gatewayOptions(home.config.gateway, { upstream, listen: '127.0.0.1:0', ...rest });
  return startGateway(home, flushMs === undefined ? o : { ...o, flushMs }, clock);
}

/** A separate connection, as another process would have. */
export function rawDb(homeDir: string) {
  return new Database(path.join(homeDir, 'keys.db'));
}

export type { StubUpstream, Gateway };
export { startStubUpstream };

export async function call(url: string, init: RequestInit & { headers?: Record<string, string> } = {}) {
  const r = await fetch(url, init);
  const text = await r.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: r.status, headers: r.headers, body };
}

/** Reads a response body stream to its end, appending to what was read already. */
export async function readRest(reader: ReadableStreamDefaultReader<Uint8Array>, text = ''): Promise<string> {
  for (;;) {
    const c = await reader.read();
    if (c.done) return text;
    text += Buffer.from(c.value).toString();
  }
}
