/**
 * The gateway's options: dsk.json `gateway` under overrides over defaults, and errors that name an
 * option by where its value came from (dsk.json key, or the caller's name for it: the CLI's flag).
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { gatewayOptions, type GatewayOverrides } from '../src/gateway/options.js';
import { RouteTable, DEFAULT_ROUTES } from '../src/gateway/routes.js';
import { dsk, makeHome, snapshot } from './helpers.js';

const UP = 'http://127.0.0.1:11434';
const refusal = (config: Record<string, unknown> | undefined, overrides: GatewayOverrides, nameOf?: (o: string) => string) => {
  try {
    gatewayOptions(config, overrides, nameOf);
  } catch (e) {
    const { code, message, exitCode } = e as { code: string; message: string; exitCode: number };
    return { code, message, exitCode };
  }
  throw new Error('accepted');
};

describe('gatewayOptions', () => {
  it('defaults, dsk.json over defaults, overrides over dsk.json', () => {
    const d = gatewayOptions(undefined, { upstream: `${UP}/` });
    expect(d).toMatchObject({ upstream: UP, host: '127.0.0.1', port: 8080, maxBodyBytes: 1048576, rateLimit: { rps: 50, burst: 100 }, failures: { max: 10, windowMs: 60_000, blockMs: 300_000 }, skewS: 300, drainMs: 30_000, requireSignature: false, tls: undefined });
    const config = { upstream: 'http://10.0.0.5:8000/v1', listen: '[::1]:9000', rate_limit: { rps: 5 }, brute_force: { window: '10s' }, require_signature: true, max_body: '2048' };
    expect(gatewayOptions(config, {})).toMatchObject({ upstream: 'http://10.0.0.5:8000/v1', host: '::1', port: 9000, rateLimit: { rps: 5, burst: 100 }, failures: { max: 10, windowMs: 10_000 }, requireSignature: true, maxBodyBytes: 2048 });
    expect(gatewayOptions(config, { upstream: UP, listen: '0.0.0.0:0', rps: 7, failureWindow: '3s', maxBody: 10 })).toMatchObject({ upstream: UP, host: '0.0.0.0', port: 0, rateLimit: { rps: 7 }, failures: { windowMs: 3000 }, maxBodyBytes: 10 });
    expect(gatewayOptions({ upstream: UP, routes: { 'POST /v1/rerank': 'model.invoke' } }, {}).routes).toMatchObject({ ...DEFAULT_ROUTES, 'POST /v1/rerank': 'model.invoke' });
  });

  it.each<[string, Record<string, unknown> | undefined, GatewayOverrides, string, RegExp]>([
    ['no upstream', undefined, {}, 'ERR_NO_UPSTREAM', /^no upstream: give upstream or set gateway.upstream in dsk.json$/],
    ['upstream from dsk.json', { upstream: 'ftp://x' }, {}, 'ERR_UPSTREAM_URL', /^invalid gateway.upstream in dsk.json 'ftp:\/\/x': expected an http/],
    ['upstream given', { upstream: UP }, { upstream: 'not a url' }, 'ERR_UPSTREAM_URL', /^invalid upstream 'not a url'/],
    ['listen from dsk.json', { upstream: UP, listen: 'nowhere' }, {}, 'ERR_LISTEN_ADDRESS', /^invalid gateway.listen in dsk.json 'nowhere': expected HOST:PORT$/],
    ['listen given', {}, { upstream: UP, listen: '1.2.3.4:70000' }, 'ERR_LISTEN_ADDRESS', /^invalid listen '1.2.3.4:70000'/],
    ['a duration in dsk.json', { upstream: UP, brute_force: { window: '5x' } }, {}, 'ERR_DURATION', /^invalid gateway.brute_force.window in dsk.json '5x'/],
    ['a number in dsk.json', { upstream: UP, rate_limit: { burst: 0 } }, {}, 'ERR_NUMBER', /^invalid gateway.rate_limit.burst in dsk.json '0': expected a number ≥ 1$/],
    ['a route', { upstream: UP, routes: { 'post /x': 'model.invoke' } }, {}, 'ERR_ROUTE', /^invalid route 'post \/x' in gateway.routes in dsk.json$/],
    ['a route permission', { upstream: UP, routes: { 'POST /x': 'everything' } }, {}, 'ERR_ROUTE_PERMISSION', /unknown permission 'everything'/],
    ['a certificate without its key, from dsk.json', { upstream: UP, tls_cert: 'c.pem' }, {}, 'ERR_TLS_PAIR', /^gateway.tls_cert in dsk.json and tls_key go together$/],
    ['a key without its certificate', { upstream: UP }, { tlsKey: 'k.pem' }, 'ERR_TLS_PAIR', /^tls_cert and tls_key go together$/],
    ['a client CA alone', { upstream: UP, client_ca: 'ca.pem' }, {}, 'ERR_CLIENT_CA_WITHOUT_TLS', /^gateway.client_ca in dsk.json needs tls_cert and tls_key$/],
    ['a password in the upstream URL', {}, { upstream: 'http://vllm:s3cretpw@127.0.0.1:8000' }, 'ERR_UPSTREAM_USERINFO', /^invalid upstream: a user name or password in the URL is refused \(it would be printed and logged\)$/],
    ['a user in the upstream URL, from dsk.json', { upstream: 'https://ops@10.0.0.5' }, {}, 'ERR_UPSTREAM_USERINFO', /^invalid gateway.upstream in dsk.json: a user name/],
    ['an IPv6 prefix', { upstream: UP, brute_force: { ipv6_prefix: 129 } }, {}, 'ERR_IPV6_PREFIX', /^invalid gateway.brute_force.ipv6_prefix in dsk.json '129'/],
    ['a per-key concurrency', { upstream: UP, max_concurrent: 0 }, {}, 'ERR_NUMBER', /^invalid gateway.max_concurrent in dsk.json '0'/],
  ])('%s: exit 2, named by its source, no flag', (_, config, overrides, code, message) => {
    const r = refusal(config, overrides);
    expect(r).toMatchObject({ code, exitCode: 2 });
    expect(r.message).toMatch(message);
    expect(r.message).not.toContain('--');
  });

  it("an override is named as the caller names it; a dsk.json value still by its key", () => {
    const flag = (o: string) => `--${o.replace(/[A-Z]/g, (x) => '-' + x.toLowerCase())}`;
    expect(refusal({ upstream: UP }, { failureWindow: '5x' }, flag).message).toMatch(/^invalid --failure-window '5x'/);
    expect(refusal({ upstream: UP, brute_force: { block: 'soon' } }, {}, flag).message).toMatch(/^invalid gateway.brute_force.block in dsk.json 'soon'/);
    expect(refusal({ upstream: UP }, { tlsCert: 'c.pem' }, flag).message).toBe('--tls-cert and --tls-key go together');
  });
});

describe('route table', () => {
  it('first match in table order; a /* prefix matches below it, not itself; * is any method', () => {
    const t = new RouteTable({ 'GET /v1/models': 'model.invoke', 'GET /v1/models/*': 'audit.view', '* /api/x': 'param.change' });
    expect(t.match('GET', '/v1/models')?.permission).toBe('model.invoke');
    expect(t.match('GET', '/v1/models/deepseek')?.name).toBe('GET /v1/models/*');
    expect(t.match('GET', '/v1/models/')).toBeNull();
    expect(t.match('POST', '/v1/models')).toBeNull();
    expect(t.match('DELETE', '/api/x')?.permission).toBe('param.change');
    expect(t.match('GET', '/api/x/y')).toBeNull();
  });
});

describe('dsk serve and keygen wording', () => {
  let t: ReturnType<typeof makeHome>;
  const setGatewayConfig = (gateway: Record<string, unknown>) => {
    const file = path.join(t.home, 'dsk.json');
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), gateway }));
  };
  beforeAll(() => {
    t = makeHome();
  });

  it('a bad dsk.json value is named by its key there, a bad flag by the flag; nothing is unsealed or changed', () => {
    setGatewayConfig({ upstream: 'ftp://x' });
    const before = snapshot(t.home);
    const fromConfig = dsk(['serve', '--json'], { env: { DSK_HOME: t.home } });
    expect(fromConfig.code).toBe(2);
    expect(JSON.parse(fromConfig.stderr).error).toMatchObject({ code: 'ERR_UPSTREAM_URL', message: "invalid gateway.upstream in dsk.json 'ftp://x': expected an http:// or https:// URL" });
    const fromFlag = dsk(['serve', '--upstream', 'ftp://y'], { env: { DSK_HOME: t.home } });
    expect(fromFlag.code).toBe(2);
    expect(fromFlag.stderr).toContain("dsk: error: invalid --upstream 'ftp://y': expected an http:// or https:// URL");
    const userinfo = dsk(['serve', '--upstream', 'http://vllm:s3cretpw@127.0.0.1:8000'], { env: { DSK_HOME: t.home } });
    expect(userinfo.code).toBe(2);
    expect(userinfo.stderr).toBe("dsk: error: invalid --upstream: a user name or password in the URL is refused (it would be printed and logged)\ndsk: hint: give --upstream without user:pass@, and the upstream's own key in a file named by --upstream-key-file\n");
    setGatewayConfig({ upstream: UP, tls_cert: 'c.pem' });
    const mixed = dsk(['serve'], { env: { DSK_HOME: t.home } });
    expect(mixed.code).toBe(2);
    expect(mixed.stderr).toContain('dsk: error: gateway.tls_cert in dsk.json and --tls-key go together');
    setGatewayConfig({});
    const none = dsk(['serve'], { env: { DSK_HOME: t.home } });
    expect(none.code).toBe(2);
    expect(none.stderr).toBe('dsk: error: no upstream: give --upstream or set gateway.upstream in dsk.json\ndsk: hint: for example --upstream http://127.0.0.1:11434\n');
    expect(snapshot(t.home)).toMatchObject({ ...before, 'dsk.json': expect.any(String) });
  });

  it('keygen gateway options: the strict CIDR parser, distinct codes', () => {
    const before = snapshot(t.home);
    for (const [args, code] of [
      [['--allow-cidr', '010.0.0.0/8'], 'ERR_ALLOW_CIDR'],
      [['--allow-cidr', '10.0.0.0/08'], 'ERR_ALLOW_CIDR'],
      [['--allow-cidr', '10.0.0.1/'], 'ERR_ALLOW_CIDR'],
      [['--rate-limit', '0'], 'ERR_RATE_LIMIT'],
    ] as const) {
      const r = dsk(['keygen', '--name', 'x', '--role', 'developer', '--json', ...args], { env: { DSK_HOME: t.home } });
      expect(r.code, args.join(' ')).toBe(2);
      expect(JSON.parse(r.stderr).error.code).toBe(code);
    }
    expect(snapshot(t.home)).toEqual(before);
  });
});
