/**
 * Tokens per key from real upstream answers (the stub answers in OpenAI's and Ollama's shapes,
 * whole and streamed), read by the gateway without holding the answer back; what the official
 * openai client sees with and without stream_options; model allow-lists; quotas.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { call, gateway, keys, openTestHome, startStubUpstream, type Gateway, type StubUpstream } from './gwkit.js';
import type { Home } from '../src/app/home.js';
import type { IssuedKey } from '../src/app/keys.js';
import { queryAudit } from '../src/audit/query.js';
import { changeKeyLimits } from '../src/app/key-settings.js';

let h: Home;
let up: StubUpstream;
let gw: Gateway;
let k: Record<string, IssuedKey>;

beforeAll(async () => {
  h = (await openTestHome()).h;
  up = await startStubUpstream({ models: ['deepseek-stub', 'deepseek-r1', 'deepseek-v3', 'deepseek-v3-0324', 'qwen2.5-coder'] });
  k = await keys(h, {
    dev: { name: 'chat', role: 'developer' },
    stream: { name: 'streamer', role: 'developer' },
    ollama: { name: 'ollama', role: 'developer' },
    broken: { name: 'broken', role: 'developer' },
    limited: { name: 'limited', role: 'developer', options: { models: ['deepseek-r1', 'deepseek-v3*'] } },
    quota: { name: 'metered', role: 'developer', options: { quota: { requests: { limit: 5, period: 'day' } } } },
    tq: { name: 'tokens', role: 'developer', options: { quota: { tokens: { limit: 10, period: 'month' } } } },
    later: { name: 'later', role: 'developer' },
    aud: { name: 'dashboard', role: 'auditor' },
    shared: { name: 'shared', role: 'developer', options: { quota: { requests: { limit: 4, period: 'day' } } } },
  });
  gw = await gateway(h, up.url, { maxFailures: 10_000, flushMs: 50 });
  // the tests read the store through the gateway's own Home while its writer thread commits every
  // 50 ms; the gateway lets such reads wait 100 ms (server.ts), too short on a loaded machine
  await h.store.setLockTimeout(10_000);
});

afterAll(async () => {
  await gw?.close();
  await up?.close();
  await h?.close();
});

const client = (apiKey: string) => new OpenAI({ apiKey, baseURL: `${gw.url}/v1`, maxRetries: 0 });
const chat = (content: string) => ({ model: 'deepseek-stub', messages: [{ role: 'user' as const, content }] });

/** The answers' ends are counted, and a flush has sent them and read the store's totals back. */
async function settle() {
  await new Promise((r) => setTimeout(r, 30));
  await gw.flush();
  await gw.flush();
}

async function totals(id: string) {
  await settle();
  const [t] = await h.store.usage.totalsSince(0, id);
  const rows = (await h.store.usage.report(0)).filter((r) => r.key_id === id);
  return { ...t, no_usage: rows.reduce((a, r) => a + r.no_usage, 0), models: [...new Set(rows.map((r) => r.model))] };
}

describe('token accounting', () => {
  it('counts usage of a JSON answer, per key and model, and exports it in /metrics', async () => {
    const r = await client(k.dev.api_key).chat.completions.create(chat('one two three'));
    expect(r.usage).toEqual({ prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
    const t = await totals(k.dev.id);
    expect(t).toMatchObject({ requests: 1, prompt_tokens: 3, completion_tokens: 4, no_usage: 0, models: ['deepseek-stub'] });
    const m = await (await fetch(`${gw.url}/metrics`)).text();
    expect(m).toContain(`dsk_gateway_tokens_total{key="${k.dev.id}",kind="prompt"} 3`);
    expect(m).toContain(`dsk_gateway_tokens_total{key="${k.dev.id}",kind="completion"} 4`);
  });

  it('a stream the client did not ask usage for: counted, and the client sees exactly the chunks it asked for', async () => {
    const chunks: any[] = [];
    const s = await client(k.stream.api_key).chat.completions.create({ ...chat('a b'), stream: true });
    for await (const c of s) chunks.push(c);
    // the stub sends 5 content chunks and a finish chunk; the gateway's usage chunk is removed
    expect(chunks).toHaveLength(6);
    for (const c of chunks) {
      expect(c.choices).toHaveLength(1);
      expect('usage' in c).toBe(false);
    }
    expect(up.seen.at(-1)!.method).toBe('POST');
    expect((await totals(k.stream.id))).toMatchObject({ requests: 1, prompt_tokens: 2, completion_tokens: 5, no_usage: 0 });
  });

  it('a stream that asked for usage: the client gets its usage chunk, counted once', async () => {
    const chunks: any[] = [];
    const s = await client(k.stream.api_key).chat.completions.create({ ...chat('x y z'), stream: true, stream_options: { include_usage: true } });
    for await (const c of s) chunks.push(c);
    expect(chunks).toHaveLength(7);
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 } });
    expect(await totals(k.stream.id)).toMatchObject({ requests: 2, prompt_tokens: 5, completion_tokens: 10 });
  });

  it('legacy completions streams too', async () => {
    const before = await totals(k.stream.id);
    const chunks: any[] = [];
    const s = await client(k.stream.api_key).completions.create({ model: 'deepseek-stub', prompt: 'one two', stream: true });
    for await (const c of s) chunks.push(c);
    expect(chunks).toHaveLength(6);
    expect(chunks.every((c) => c.choices.length === 1 && !('usage' in c))).toBe(true);
    const after = await totals(k.stream.id);
    expect([after.requests - before.requests, after.prompt_tokens - before.prompt_tokens, after.completion_tokens - before.completion_tokens]).toEqual([1, 2, 5]);
  });

  it('the stream is not held back: the first chunk arrives before the upstream has finished', async () => {
    const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${k.stream.api_key}`, 'content-type': 'application/json', 'x-stub-delay-ms': '300', 'x-stub-chunks': '3' }, body: JSON.stringify({ ...chat('hi'), stream: true }) });
    const reader = r.body!.getReader();
    const t0 = Date.now();
    const first = await reader.read();
    expect(Date.now() - t0).toBeLessThan(250);
    expect(Buffer.from(first.value!).toString()).toContain('echo: hi');
    await reader.cancel();
  });

  it('an upstream that would compress its answer is asked for the plain one, so it can be read', async () => {
    const headers = { authorization: `Bearer ${k.dev.api_key}`, 'content-type': 'application/json', 'accept-encoding': 'gzip', 'x-stub-gzip': '1' };
    const before = (await totals(k.dev.id)).prompt_tokens;
    const r = await call(`${gw.url}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify(chat('a b c d e')) });
    expect(r.body.usage.prompt_tokens).toBe(5);
    expect((await totals(k.dev.id)).prompt_tokens - before).toBe(5);
    // the stub does compress when asked: straight to it, the answer is gzip
    const direct = await fetch(`${up.url}/v1/chat/completions`, { method: 'POST', headers, body: JSON.stringify(chat('x')) });
    expect(direct.headers.get('content-encoding')).toBe('gzip');
  });

  it("Ollama's native counts, whole and streamed as NDJSON", async () => {
    const auth = { authorization: `Bearer ${k.ollama.api_key}`, 'content-type': 'application/json' };
    const a = await call(`${gw.url}/api/chat`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'deepseek-r1', messages: [{ role: 'user', content: 'p q' }], stream: false }) });
    expect(a.body).toMatchObject({ done: true, prompt_eval_count: 2, eval_count: 3 });
    const b = await call(`${gw.url}/api/generate`, { method: 'POST', headers: { ...auth, 'x-stub-chunks': '4' }, body: JSON.stringify({ model: 'deepseek-r1', prompt: 'one two three' }) });
    expect(String(b.body).trim().split('\n')).toHaveLength(5);
    expect(await totals(k.ollama.id)).toMatchObject({ requests: 2, prompt_tokens: 5, completion_tokens: 7, no_usage: 0, models: ['deepseek-r1'] });
  });

  it('missing or broken usage: the request succeeds, counts with zero tokens, and the metric says so', async () => {
    const before = Number(/dsk_gateway_usage_missing_total (\d+)/.exec(await (await fetch(`${gw.url}/metrics`)).text())![1]);
    const headers = (mode: string) => ({ authorization: `Bearer ${k.broken.api_key}`, 'content-type': 'application/json', 'x-stub-usage': mode });
    for (const mode of ['none', 'broken']) {
      expect((await call(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: headers(mode), body: JSON.stringify(chat('x')) })).status).toBe(200);
      const s = await call(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: headers(mode), body: JSON.stringify({ ...chat('x'), stream: true }) });
      expect(s.status).toBe(200);
      expect(String(s.body)).toContain('data: [DONE]');
      expect((await call(`${gw.url}/api/chat`, { method: 'POST', headers: headers(mode), body: JSON.stringify({ model: 'm', messages: [], stream: false }) })).status).toBe(200);
    }
    expect(await totals(k.broken.id)).toMatchObject({ requests: 6, prompt_tokens: 0, completion_tokens: 0, no_usage: 6 });
    const after = Number(/dsk_gateway_usage_missing_total (\d+)/.exec(await (await fetch(`${gw.url}/metrics`)).text())![1]);
    expect(after - before).toBe(6);
  });
});

describe('model names chosen by callers', () => {
  it('at most 50 distinct names per key and hour are kept; the rest count under (other)', async () => {
    const { HourlyUsage } = await import('../src/gateway/usage-meter.js');
    const u = new HourlyUsage();
    const t = Date.UTC(2026, 0, 1, 10, 30);
    for (let i = 0; i < 80; i++) u.record('k1', `model-${i}`, 200, { prompt: 1, completion: 1 }, true, t);
    u.record('k1', 'model-3', 200, null, true, t);
    u.record('k2', 'model-79', 200, null, true, t);
    u.record('k1', 'model-79', 200, null, true, t + 3_600_000);
    const rows = u.take();
    expect(rows.filter((r) => r.key_id === 'k1' && r.hour === t - 1_800_000)).toHaveLength(51);
    expect(rows.find((r) => r.model === '(other)')).toMatchObject({ requests: 30, prompt_tokens: 30 });
    expect(rows.find((r) => r.key_id === 'k1' && r.model === 'model-3')).toMatchObject({ requests: 2, no_usage: 1 });
    expect(rows.filter((r) => r.model === 'model-79').map((r) => r.key_id).sort()).toEqual(['k1', 'k2']);
  });
});

describe('models per key', () => {
  it('refuses another model with 403 in the OpenAI shape (the openai client raises PermissionDeniedError)', async () => {
    const c = client(k.limited.api_key);
    await expect(c.chat.completions.create({ ...chat('x'), model: 'qwen2.5-coder' })).rejects.toMatchObject({ status: 403, code: 'model_not_allowed' });
    await expect(c.chat.completions.create({ ...chat('x'), model: 'deepseek-r1-distill' })).rejects.toBeInstanceOf(OpenAI.PermissionDeniedError);
    expect((await c.chat.completions.create({ ...chat('x'), model: 'deepseek-r1' })).choices[0].message.content).toBe('echo: x');
    expect((await c.chat.completions.create({ ...chat('x'), model: 'deepseek-v3-0324' })).model).toBe('deepseek-v3-0324');
    const none = await call(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${k.limited.api_key}`, 'content-type': 'application/json' }, body: '{"messages":[]}' });
    expect(none).toMatchObject({ status: 403, body: { error: { code: 'model_not_allowed', type: 'permission_error' } } });
    await expect(c.models.retrieve('qwen2.5-coder')).rejects.toMatchObject({ status: 403 });
  });

  it('lists only the key’s models, in the OpenAI and Ollama lists; other keys see all', async () => {
    const ids: string[] = [];
    for await (const m of client(k.limited.api_key).models.list()) ids.push(m.id);
    expect(ids).toEqual(['deepseek-r1', 'deepseek-v3', 'deepseek-v3-0324']);
    const tags = await call(`${gw.url}/api/tags`, { headers: { authorization: `Bearer ${k.limited.api_key}` } });
    expect(tags.body.models.map((m: any) => m.name)).toEqual(['deepseek-r1', 'deepseek-v3', 'deepseek-v3-0324']);
    const all = await call(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${k.dev.api_key}` } });
    expect(all.body.data).toHaveLength(5);
  });
});

describe('changing limits of a live key', () => {
  it('dsk keys set reaches a running gateway within a second', async () => {
    const c = client(k.later.api_key);
    expect((await c.chat.completions.create({ ...chat('x'), model: 'qwen2.5-coder' })).model).toBe('qwen2.5-coder');
    await changeKeyLimits(h, k.later.id, { models: ['deepseek-*'] });
    const deadline = Date.now() + 3000;
    let status = 200;
    while (status === 200 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      status = (await call(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${k.later.api_key}`, 'content-type': 'application/json' }, body: JSON.stringify({ ...chat('x'), model: 'qwen2.5-coder' }) })).status;
    }
    expect(status).toBe(403);
  });
});

describe('GET /dsk/stats', () => {
  it('the last minute per key for an auditor; refused to a developer key', async () => {
    const r = await call(`${gw.url}/dsk/stats`, { headers: { authorization: `Bearer ${k.aud.api_key}` } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ window_s: 60, alerts: [], status: { '200': expect.any(Number) } });
    const dev = r.body.keys.find((x: any) => x.key_id === k.dev.id);
    expect(dev).toMatchObject({ name: 'chat', requests: expect.any(Number) });
    expect(dev.series).toHaveLength(60);
    expect(r.body.sources[0]).toMatchObject({ ip: expect.stringMatching(/127\.0\.0\.1/) });
    expect((await call(`${gw.url}/dsk/stats`, { headers: { authorization: `Bearer ${k.dev.api_key}` } })).status).toBe(403);
  });
});

describe('quotas', () => {
  it('a request quota: past it 429 quota_exceeded with the reset time; audit rows at 80% and 100% once', async () => {
    const c = client(k.quota.api_key);
    for (let i = 0; i < 5; i++) await c.chat.completions.create(chat('x'));
    await settle();
    const r = await call(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${k.quota.api_key}`, 'content-type': 'application/json' }, body: JSON.stringify(chat('x')) });
    expect(r.status).toBe(429);
    expect(r.body.error.code).toBe('quota_exceeded');
    const tomorrow = new Date();
    tomorrow.setUTCHours(24, 0, 0, 0);
    expect(r.body.error.message).toContain(tomorrow.toISOString());
    expect(Number(r.headers.get('retry-after'))).toBeGreaterThan(0);
    await settle();
    const rows = await queryAudit(h.store, { keyId: k.quota.id, actions: ['QUOTA_WARNING', 'QUOTA_EXCEEDED'], limit: 10 });
    expect(rows.map((x) => x.action).sort()).toEqual(['QUOTA_EXCEEDED', 'QUOTA_WARNING']);
    expect(JSON.parse(rows.find((x) => x.action === 'QUOTA_EXCEEDED')!.details)).toMatchObject({ kind: 'requests', level: 100, limit: 5, period: 'day', resets_at: tomorrow.toISOString() });
  });

  it('a token quota counts the tokens the upstream reported', async () => {
    const c = client(k.tq.api_key);
    await c.chat.completions.create(chat('one two three four')); // 4 + 5 = 9 tokens of 10
    await settle();
    await c.chat.completions.create(chat('x')); // 9 < 10: still allowed; now 9 + 1 + 2
    await settle();
    await expect(c.chat.completions.create(chat('x'))).rejects.toMatchObject({ status: 429, code: 'quota_exceeded' });
  });

  it('counted across the store: two gateways on one store add up', async () => {
    const other = await gateway(h, up.url, { maxFailures: 10_000, flushMs: 50 });
    try {
      const via = (g: Gateway) => call(`${g.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${k.shared.api_key}`, 'content-type': 'application/json' }, body: JSON.stringify(chat('x')) });
      expect([(await via(gw)).status, (await via(gw)).status, (await via(other)).status, (await via(other)).status]).toEqual([200, 200, 200, 200]);
      // a flush of each sends its counts and reads the store's totals back: each now holds all four
      await gw.flush();
      await other.flush();
      await gw.flush();
      expect((await via(gw)).status).toBe(429);
      expect((await via(other)).status).toBe(429);
      await gw.flush();
      await other.flush();
      const [t] = await h.store.usage.totalsSince(0, k.shared.id);
      expect(t.requests).toBe(4);
      // both gateways saw 100%; the store keeps one mark, so one audit row each level
      await new Promise((r) => setTimeout(r, 200));
      await gw.flush();
      await other.flush();
      const rows = await queryAudit(h.store, { keyId: k.shared.id, actions: ['QUOTA_WARNING', 'QUOTA_EXCEEDED'], limit: 10 });
      expect(rows.map((x) => x.action).sort()).toEqual(['QUOTA_EXCEEDED', 'QUOTA_WARNING']);
    } finally {
      await other.close();
    }
  });
});
