import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import OpenAI from 'openai';
import { call, gateway, keys, openTestHome, rawDb, startStubUpstream, type Gateway, type StubUpstream } from './gwkit.js';
import type { Home } from '../src/app/home.js';
import type { IssuedKey } from '../src/app/keys.js';
import { signHeaders, legacySignature } from '../src/gateway/signature.js';
import { signedFetch } from '../src/gateway/client.js';
import { issueToken, tokenKey } from '../src/gateway/jwt.js';
import { formatApiKey } from '../src/domain/key-text.js';
import { fixedClock } from '../src/kernel/clock.js';

let h: Home;
let homeDir: string;
let up: StubUpstream;
let gw: Gateway;
let k: Record<string, IssuedKey>;

beforeAll(async () => {
  const t = await openTestHome();
  h = t.h;
  homeDir = t.home;
  up = await startStubUpstream();
  k = await keys(h, {
    admin: { name: 'ops', role: 'admin' },
    dev: { name: 'chat', role: 'developer' },
    bot: { name: 'batch', role: 'automation' },
    aud: { name: 'dash', role: 'auditor' },
    signed: { name: 'signed', role: 'developer', options: { require_signature: true } },
    cidr: { name: 'office', role: 'developer', options: { allowed_cidrs: ['10.0.0.0/8'] } },
    slow: { name: 'slow', role: 'developer', options: { rate_limit: { rps: 0.5, burst: 2 } } },
    grace: { name: 'old', role: 'developer' },
  });
  gw = await gateway(h, up.url, { maxBody: 4096, maxFailures: 10_000 });
});

afterAll(async () => {
  await gw?.close();
  await up?.close();
  await h?.close();
});

const client = (apiKey: string, extra: Record<string, unknown> = {}) => new OpenAI({ apiKey, baseURL: `${gw.url}/v1`, maxRetries: 0, ...extra });

function expectOpenAiError(body: any, code: string) {
  expect(body).toEqual({ error: { message: expect.any(String), type: expect.any(String), param: null, code } });
}

describe('gateway with the openai client', () => {
  it('proxies chat completions and strips the credential before the upstream', async () => {
    const r = await client(k.dev.api_key).chat.completions.create({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hello' }] });
    expect(r.choices[0].message.content).toBe('echo: hello');
    const last = up.seen.at(-1)!;
    expect(last.headers.authorization).toBeUndefined();
    expect(last.headers['x-api-key']).toBeUndefined();
  });

  it('accepts X-Api-Key too', async () => {
    const r = await call(`${gw.url}/v1/models`, { headers: { 'X-Api-Key': k.bot.api_key } });
    expect(r.status).toBe(200);
    expect(r.body.data[0].id).toBe('deepseek-stub');
  });

  it('streams SSE chunk by chunk, not buffered', async () => {
    const stream = await client(k.dev.api_key, { defaultHeaders: { 'x-stub-delay-ms': '150', 'x-stub-chunks': '5' } }).chat.completions.create({
      model: 'deepseek-stub',
      messages: [{ role: 'user', content: 'stream' }],
      stream: true,
    });
    const arrivals: number[] = [];
    let text = '';
    for await (const c of stream) {
      arrivals.push(Date.now());
      text += c.choices[0]?.delta?.content ?? '';
    }
    expect(text).toBe('echo: stream [0][1][2][3][4]');
    // 5 content chunks 150 ms apart: the first must reach us well before the last.
    expect(arrivals.at(-1)! - arrivals[0]).toBeGreaterThan(450);
  });

  it('embeddings and the model list', async () => {
    const e = await client(k.bot.api_key).embeddings.create({ model: 'deepseek-stub', input: ['abc', 'de'] });
    expect(e.data.map((d) => d.embedding[0])).toEqual([3, 2]);
    const models = await client(k.bot.api_key).models.list();
    expect(models.data.map((m) => m.id)).toEqual(['deepseek-stub']);
  });

  it('signed requests through the exported client helper', async () => {
    const c = client(k.signed.api_key, { fetch: signedFetch({ apiKey: k.signed.api_key, apiSecret: k.signed.api_secret }) });
    const r = await c.chat.completions.create({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'signed' }] });
    expect(r.choices[0].message.content).toBe('echo: signed');
  });
});

describe('refusals (status and OpenAI error body)', () => {
  it('missing, malformed, bad-checksum and unknown keys → 401 without touching the upstream', async () => {
    const before = up.seen.length;
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === 'a' ? 'b' : 'a') + s.slice(i + 1);
    const cases: [Record<string, string>, string][] = [
      [{}, 'invalid_api_key'],
      [{ Authorization: 'Basic abc' }, 'invalid_api_key'],
      [{ Authorization: `Bearer ${flip(k.dev.api_key, 30)}` }, 'invalid_api_key'],
      [{ Authorization: `Bearer ${formatApiKey('000000000000', '0'.repeat(64))}` }, 'invalid_api_key'],
      [{ Authorization: `Bearer ${k.dev.api_key}`, 'X-Api-Key': k.bot.api_key }, 'invalid_api_key'],
    ];
    for (const [headers, code] of cases) {
      const r = await call(`${gw.url}/v1/models`, { headers });
      expect(r.status).toBe(401);
      expect(r.headers.get('www-authenticate')).toContain('Bearer');
      expectOpenAiError(r.body, code);
    }
    expect(up.seen.length).toBe(before);
    const m = await (await fetch(`${gw.url}/metrics`)).text();
    for (const reason of ['MISSING_KEY', 'MALFORMED_AUTH', 'BAD_CHECKSUM', 'NOT_FOUND']) expect(m).toContain(`dsk_gateway_auth_failures_total{reason="${reason}"}`);
  });

  it('a hostile path never reaches the audit log (a key-shaped path cannot poison the batch)', async () => {
    const evil = `/v1/${formatApiKey('0123456789ab', 'f'.repeat(64))}`;
    expect((await call(`${gw.url}${evil}`, { headers: { Authorization: 'Bearer nope' } })).status).toBe(401);
    expect((await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${k.bot.api_key}` } })).status).toBe(200);
    await gw.flush();
    const db = rawDb(homeDir);
    db.prepare('ATTACH DATABASE ? AS audit').run(`${homeDir}/audit_log/audit.db`);
    const rows = db.prepare("SELECT details FROM audit.events WHERE action = 'AUTH_FAILURE'").all() as any[];
    const uses = (db.prepare('SELECT use_count FROM keys WHERE id = ?').get(k.bot.id) as any).use_count;
    db.close();
    expect(rows.some((r) => JSON.parse(r.details).route === 'unknown')).toBe(true);
    expect(JSON.stringify(rows)).not.toContain('dsk_0123456789ab');
    expect(uses).toBeGreaterThan(0);
  });

  it('the openai client surfaces 401 as AuthenticationError', async () => {
    await expect(client('dsk_nope').models.list()).rejects.toMatchObject({ status: 401, code: 'invalid_api_key' });
  });

  it('role denied → 403 and an audit row; unknown route → 404 and not proxied', async () => {
    const r = await call(`${gw.url}/api/pull`, { method: 'POST', headers: { Authorization: `Bearer ${k.bot.api_key}` }, body: '{}' });
    expect(r.status).toBe(403);
    expectOpenAiError(r.body, 'permission_denied');
    const a = await call(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${k.aud.api_key}` }, body: '{}' });
    expect(a.status).toBe(403);
    const dev = await call(`${gw.url}/api/pull`, { method: 'POST', headers: { Authorization: `Bearer ${k.dev.api_key}` }, body: '{}' });
    expect(dev.status).toBe(200);
    const before = up.seen.length;
    const nf = await call(`${gw.url}/v1/secret-admin`, { headers: { Authorization: `Bearer ${k.admin.api_key}` } });
    expect(nf.status).toBe(404);
    expectOpenAiError(nf.body, 'unknown_route');
    expect(up.seen.length).toBe(before);
    await gw.flush();
    const db = rawDb(homeDir);
    db.prepare('ATTACH DATABASE ? AS audit').run(`${homeDir}/audit_log/audit.db`);
    const rows = db.prepare("SELECT key_id, source_ip, details FROM audit.events WHERE action = 'AUTH_FAILURE' AND key_id = ?").all(k.bot.id) as any[];
    db.close();
    expect(rows.length).toBe(1);
    expect(JSON.parse(rows[0].details)).toMatchObject({ reason: 'ROLE_DENIED', route: 'POST /api/pull', status: 403, count: 1 });
    expect(rows[0].source_ip).toBe('127.0.0.1');
  });

  it('admin endpoints: audit view and key status, by role', async () => {
    const a = await call(`${gw.url}/dsk/audit?action=KEY_CREATE&limit=3`, { headers: { Authorization: `Bearer ${k.aud.api_key}` } });
    expect(a.status).toBe(200);
    expect(a.body.data).toHaveLength(3);
    expect(a.body.data.every((r: any) => r.action === 'KEY_CREATE')).toBe(true);
    expect((await call(`${gw.url}/dsk/keys`, { headers: { Authorization: `Bearer ${k.aud.api_key}` } })).status).toBe(403);
    const ks = await call(`${gw.url}/dsk/keys`, { headers: { Authorization: `Bearer ${k.admin.api_key}` } });
    expect(ks.status).toBe(200);
    expect(ks.body.data.map((x: any) => x.id)).toContain(k.dev.id);
    const text = JSON.stringify(ks.body);
    for (const key of Object.values(k)) {
      expect(text).not.toContain(key.api_key);
      expect(text).not.toContain(key.api_secret);
    }
  });

  it('CIDR allow-list → 403 from loopback', async () => {
    const r = await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${k.cidr.api_key}` } });
    expect(r.status).toBe(403);
    expectOpenAiError(r.body, 'ip_not_allowed');
  });

  it('per-key rate limit → 429 with Retry-After', async () => {
    const s = [];
    for (let i = 0; i < 4; i++) s.push(await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${k.slow.api_key}` } }));
    expect(s.map((r) => r.status)).toEqual([200, 200, 429, 429]);
    expect(Number(s[2].headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expectOpenAiError(s[2].body, 'rate_limit_exceeded');
  });

  it('body over --max-body → 413', async () => {
    const r = await call(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${k.dev.api_key}`, 'content-type': 'application/json' }, body: 'x'.repeat(5000) });
    expect(r.status).toBe(413);
    expectOpenAiError(r.body, 'request_too_large');
  });

  it('a port in use or missing TLS files: clear errors with the brief exit codes', async () => {
    await expect(gateway(h, up.url, { listen: `127.0.0.1:${gw.port}` })).rejects.toMatchObject({ code: 'ERR_LISTEN', exitCode: 7 });
    await expect(gateway(h, up.url, { tlsCert: '/nonexistent/c.pem', tlsKey: '/nonexistent/k.pem' })).rejects.toMatchObject({ exitCode: 4 });
  });

  it('upstream down → 502 and the gateway keeps serving', async () => {
    const dead = await startStubUpstream();
    await dead.close();
    const g2 = await gateway(h, dead.url);
    try {
      const r = await call(`${g2.url}/v1/models`, { headers: { Authorization: `Bearer ${k.dev.api_key}` } });
      expect(r.status).toBe(502);
      expectOpenAiError(r.body, 'upstream_unavailable');
      expect((await call(`${g2.url}/healthz`)).status).toBe(200);
      expect(await (await fetch(`${g2.url}/metrics`)).text()).toMatch(/dsk_gateway_upstream_errors_total 1/);
    } finally {
      await g2.close();
    }
  });
});

describe('signatures', () => {
  const body = JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'sig' }] });
  const post = (headers: Record<string, string>, b = body) => call(`${gw.url}/v1/chat/completions?trace=1`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: b });
  const sign = (o: Partial<Parameters<typeof signHeaders>[0]> = {}) =>
    signHeaders({ apiKey: k.signed.api_key, apiSecret: k.signed.api_secret, keyId: k.signed.id, method: 'POST', path: '/v1/chat/completions?trace=1', body, ...o });

  it('required key: unsigned → 401; signed → 200; replay → 401', async () => {
    const u = await post({ Authorization: `Bearer ${k.signed.api_key}` });
    expect(u.status).toBe(401);
    expectOpenAiError(u.body, 'invalid_signature');
    const hd = sign();
    expect((await post(hd)).status).toBe(200);
    const replay = await post(hd);
    expect(replay.status).toBe(401);
    expect(replay.body.error.message).toContain('nonce');
  });

  it('stale timestamp, tampered body, wrong path, wrong secret → 401', async () => {
    expect((await post(sign({ nowMs: Date.now() - 400_000 }))).body.error.message).toContain('skew');
    expect((await post(sign({ nowMs: Date.now() + 400_000 }))).status).toBe(401);
    const tampered = await post(sign(), body.replace('sig', 'SIG'));
    expect(tampered.status).toBe(401);
    expect(tampered.body.error.message).toBe('signature does not match');
    expect((await post(sign({ path: '/v1/chat/completions' }))).status).toBe(401);
    expect((await post(sign({ apiSecret: k.dev.api_secret }))).status).toBe(401);
  });

  it('a signature is verified when sent even if not required; the legacy formula only with the option', async () => {
    expect((await post({ ...sign({ apiKey: k.dev.api_key, apiSecret: k.dev.api_secret, keyId: k.dev.id }) })).status).toBe(200);
    const ts = String(Math.floor(Date.now() / 1000));
    const legacy = { Authorization: `Bearer ${k.signed.api_key}`, 'X-Timestamp': ts, 'X-Signature': legacySignature(k.signed.api_secret, k.signed.api_key, ts, 'POST', '/v1/chat/completions?trace=1') };
    expect((await post(legacy)).status).toBe(401);
    const g2 = await gateway(h, up.url, { allowLegacySignature: true });
    try {
      const r = await call(`${g2.url}/v1/chat/completions?trace=1`, { method: 'POST', headers: legacy, body });
      expect(r.status).toBe(200);
      expect((await call(`${g2.url}/v1/chat/completions?trace=1`, { method: 'POST', headers: legacy, body })).status).toBe(401);
    } finally {
      await g2.close();
    }
  });
});

describe('tokens (JWT)', () => {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

  it('a valid token works; expired, alg none, other algorithms and forged keys fail', async () => {
    const key = await tokenKey(h.master!, k.dev.id);
    const ok = await issueToken(key, k.dev.id, 60_000, Date.now());
    expect((await client(ok.token).models.list()).data).toHaveLength(1);
    const expired = await issueToken(key, k.dev.id, 60_000, Date.now() - 120_000);
    const e = await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${expired.token}` } });
    expect(e.status).toBe(401);
    expectOpenAiError(e.body, 'token_expired');
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'dsk', sub: k.dev.id, scope: 'deepseek_api', iat: now, exp: now + 60 };
    const none = `${b64({ alg: 'none', typ: 'JWT', kid: k.dev.id })}.${b64(claims)}.`;
    const hs512 = `${b64({ alg: 'HS512', kid: k.dev.id })}.${b64(claims)}.${'A'.repeat(86)}`;
    const forged = (await issueToken(Buffer.alloc(32, 7), k.dev.id, 60_000, Date.now())).token;
    const otherKid = (await issueToken(key, k.bot.id, 60_000, Date.now())).token;
    for (const t of [none, hs512, forged, otherKid]) {
      const r = await call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${t}` } });
      expect(r.status, t).toBe(401);
      expectOpenAiError(r.body, 'invalid_token');
    }
  });
});

describe('grace, revocation and usage', () => {
  it('a grace key works until grace_until, then 401 (picked up from another connection)', async () => {
    const clock = fixedClock(Date.now());
    const g = await gateway(h, up.url, {}, clock);
    try {
      const db = rawDb(homeDir);
      const until = clock.now() + 1500;
      db.prepare("UPDATE keys SET status = 'grace', grace_until = ?, updated_at = ? WHERE id = ?").run(until, clock.now(), k.grace.id);
      db.close();
      // the index notices another connection's commit on its next poll (every 250 ms)
      await vi.waitFor(() => expect(g.index.get(k.grace.id)!.row.status).toBe('grace'), { timeout: 2000, interval: 20 });
      expect((await call(`${g.url}/v1/models`, { headers: { Authorization: `Bearer ${k.grace.api_key}` } })).status).toBe(200);
      clock.set(until - 1);
      expect((await call(`${g.url}/v1/models`, { headers: { Authorization: `Bearer ${k.grace.api_key}` } })).status).toBe(200);
      clock.set(until + 1);
      const r = await call(`${g.url}/v1/models`, { headers: { Authorization: `Bearer ${k.grace.api_key}` } });
      expect(r.status).toBe(401);
      expectOpenAiError(r.body, 'key_retired');
    } finally {
      await g.close();
    }
  });

  it('usage counts reach the store on the flush timer, stamped by the gateway clock', async () => {
    const clock = fixedClock(Date.now());
    const g = await gateway(h, up.url, { flushMs: 20 }, clock);
    const db = rawDb(homeDir);
    try {
      const uses = () => db.prepare('SELECT use_count, last_used_at FROM keys WHERE id = ?').get(k.bot.id) as any;
      const before = uses().use_count;
      for (let i = 0; i < 3; i++) expect((await call(`${g.url}/v1/models`, { headers: { Authorization: `Bearer ${k.bot.api_key}` } })).status).toBe(200);
      // no flush() call: the timer alone writes the counts
      await vi.waitFor(() => expect(uses().use_count).toBe(before + 3), { timeout: 2000, interval: 20 });
      expect(uses().last_used_at).toBe(clock.now());
    } finally {
      db.close();
      await g.close();
    }
  });
});

describe('brute force', () => {
  it('blocks an address after N failures in the window, audits it, and lifts the block', async () => {
    const clock = fixedClock(Date.now());
    const g = await gateway(h, up.url, { maxFailures: 3, failureWindow: '2s', blockFor: '1s' }, clock);
    try {
      const bad = { Authorization: 'Bearer dsk_bad' };
      for (let i = 0; i < 3; i++) expect((await call(`${g.url}/v1/models`, { headers: bad })).status).toBe(401);
      const blocked = await call(`${g.url}/v1/models`, { headers: { Authorization: `Bearer ${k.dev.api_key}` } });
      expect(blocked.status).toBe(429);
      expectOpenAiError(blocked.body, 'ip_blocked');
      expect(Number(blocked.headers.get('retry-after'))).toBe(1);
      await g.flush();
      const db = rawDb(homeDir);
      db.prepare('ATTACH DATABASE ? AS audit').run(`${homeDir}/audit_log/audit.db`);
      const rows = db.prepare("SELECT source_ip, details FROM audit.events WHERE action = 'BRUTE_FORCE_BLOCK'").all() as any[];
      const fails = db.prepare("SELECT details FROM audit.events WHERE action = 'AUTH_FAILURE' AND details LIKE '%MALFORMED%'").all() as any[];
      db.close();
      expect(rows).toHaveLength(1);
      expect(rows[0].source_ip).toBe('127.0.0.1');
      // three failures from one address in one second: one aggregated row, never the key text
      expect(fails.some((f) => JSON.parse(f.details).count === 3)).toBe(true);
      expect(JSON.stringify(fails)).not.toContain('dsk_bad');
      clock.advance(999);
      expect((await call(`${g.url}/v1/models`, { headers: { Authorization: `Bearer ${k.dev.api_key}` } })).status).toBe(429);
      clock.advance(1);
      expect((await call(`${g.url}/v1/models`, { headers: { Authorization: `Bearer ${k.dev.api_key}` } })).status).toBe(200);
    } finally {
      await g.close();
    }
  });
});
