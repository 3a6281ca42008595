/**
 * The command line of usage and limits: keygen and keys set with --models and quotas (bad values
 * are usage errors naming the flag, before anything is unsealed), keys show with what is left,
 * dsk usage (table with a per-day chart, --json, --csv) and dsk top from the store.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { dsk, json, makeHome } from './helpers.js';
import { auditRows, fails } from './cli-support.js';
import { openHome, defaultEnv } from '../src/app/home.js';
import type { UsageRow } from '../src/store/store.js';

let m: ReturnType<typeof makeHome>;
let limited: { id: string };
let plain: { id: string };
const HOUR = 3_600_000;
const now = Date.now();
const thisHour = now - (now % HOUR);

async function addUsage(rows: Partial<UsageRow>[]) {
  const h = await openHome(m.home, defaultEnv('tester'));
  try {
    await h.store.transaction((tx) => tx.usage.addHourly(rows.map((r) => ({ key_id: '', hour: thisHour, model: '', requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, no_usage: 0, last_at: now, ...r }))));
  } finally {
    await h.close();
  }
}

beforeAll(async () => {
  m = makeHome(undefined, { shares: 3, threshold: 2 });
  limited = json(dsk(['keygen', '--name', 'r1-team', '--role', 'developer', '--owner', 'ml', '--models', 'deepseek-r1,deepseek-v3*', '--token-quota', '2M/month', '--request-quota', '10k/day', '--json'], { env: m.env }));
  plain = json(dsk(['keygen', '--name', 'web', '--role', 'automation', '--owner', 'web-team', '--json'], { env: m.env }));
  await addUsage([
    { key_id: limited.id, model: 'deepseek-r1', requests: 40, errors: 2, prompt_tokens: 1000, completion_tokens: 500 },
    { key_id: limited.id, hour: thisHour - 2 * 86_400_000, model: 'deepseek-v3', requests: 10, prompt_tokens: 100, completion_tokens: 100, no_usage: 1 },
    { key_id: plain.id, model: 'deepseek-r1', requests: 5, prompt_tokens: 10, completion_tokens: 20 },
  ]);
  // a model name a caller chose, shaped like a spreadsheet formula (older than the default 30 days)
  await addUsage([{ key_id: plain.id, hour: thisHour - 40 * 86_400_000, model: '=HYPERLINK("http://x","y")', requests: 1 }]);
});

describe('limits on keys', () => {
  it('keygen stores models and quotas; keys show says what is left and when it resets', () => {
    const v = json(dsk(['keys', 'show', limited.id, '--json'], { env: m.env }));
    expect(v.options).toEqual({ models: ['deepseek-r1', 'deepseek-v3*'], quota: { tokens: { limit: 2_000_000, period: 'month' }, requests: { limit: 10_000, period: 'day' } } });
    const tomorrow = new Date(now);
    tomorrow.setUTCHours(24, 0, 0, 0);
    expect(v.quota_left).toEqual([
      { kind: 'requests', quota: '10k/day', used: 40, left: 9960, resets_at: tomorrow.toISOString() },
      { kind: 'tokens', quota: '2M/month', used: expect.any(Number), left: expect.any(Number), resets_at: expect.stringMatching(/-01T00:00:00\.000Z$/) },
    ]);
    expect(v.quota_left[1].used + v.quota_left[1].left).toBe(2_000_000);
    const text = dsk(['keys', 'show', limited.id], { env: m.env }).stdout;
    expect(text).toMatch(/requests left\s+9960 of 10k\/day \(used 40; resets /);
  });

  it('bad values are usage errors naming the flag, before any passphrase is asked for', () => {
    const noSecrets = { DSK_HOME: m.home };
    fails(dsk(['keygen', '--name', 'x', '--role', 'developer', '--models', 'deepseek r1'], { env: noSecrets }), 2, "invalid --models 'deepseek r1'");
    fails(dsk(['keygen', '--name', 'x', '--role', 'developer', '--token-quota', '2M/week'], { env: noSecrets }), 2, "invalid --token-quota '2M/week'");
    fails(dsk(['keys', 'set', plain.id, '--request-quota', 'lots'], { env: noSecrets }), 2, "invalid --request-quota 'lots'");
    fails(dsk(['keys', 'set', plain.id, '--models', 'a', '--all-models'], { env: noSecrets }), 2, '--models cannot be combined with --all-models');
    fails(dsk(['keys', 'set', plain.id], { env: noSecrets }), 2, 'nothing to change');
  });

  it('keys set changes an existing key, audited; none and --all-models remove', () => {
    const r = json(dsk(['keys', 'set', plain.id, '--models', 'qwen*', '--request-quota', '100/day', '--json'], { env: m.env }));
    expect(r.options).toEqual({ models: ['qwen*'], quota: { requests: { limit: 100, period: 'day' } } });
    const row = auditRows(m.home).filter((a) => a.action === 'KEY_OPTIONS_CHANGE').at(-1)!;
    expect(JSON.parse(row.details)).toMatchObject({ key_id: plain.id, models: ['qwen*'], requests_quota: '100/day' });
    const back = json(dsk(['keys', 'set', plain.id, '--all-models', '--request-quota', 'none', '--json'], { env: m.env }));
    expect(back.options).toBeUndefined();
  });
});

describe('dsk usage', () => {
  it('--json groups by key with totals and a day per row', () => {
    const r = json(dsk(['usage', '--since', '7d', '--json'], { env: m.env }));
    expect(r.total).toEqual({ requests: 55, errors: 2, prompt_tokens: 1110, completion_tokens: 620, tokens: 1730, no_usage: 1 });
    expect(r.groups[0]).toMatchObject({ group: limited.id, name: 'r1-team', requests: 50, tokens: 1700 });
    expect(r.days).toHaveLength(8);
    expect(r.days.at(-1)).toMatchObject({ day: new Date(now).toISOString().slice(0, 10), requests: 45 });
  });

  it('--by owner | model | role, and --since excludes older hours', () => {
    expect(json(dsk(['usage', '--by', 'owner', '--json'], { env: m.env })).groups.map((g: any) => [g.group, g.requests])).toEqual([['ml', 50], ['web-team', 5]]);
    expect(json(dsk(['usage', '--by', 'model', '--json'], { env: m.env })).groups.map((g: any) => [g.group, g.requests])).toEqual([['deepseek-r1', 45], ['deepseek-v3', 10]]);
    expect(json(dsk(['usage', '--by', 'role', '--since', '1d', '--json'], { env: m.env })).groups.map((g: any) => [g.group, g.requests])).toEqual([['developer', 40], ['automation', 5]]);
    fails(dsk(['usage', '--by', 'colour'], { env: m.env }), 2, "invalid --by 'colour'");
  });

  it('--csv and the table with its chart', () => {
    const csv = dsk(['usage', '--by', 'model', '--csv'], { env: m.env }).stdout.split('\r\n');
    expect(csv[0]).toBe('model,name,requests,errors,prompt_tokens,completion_tokens,tokens,no_usage,last_used_at');
    expect(csv[1]).toMatch(/^deepseek-r1,,45,2,1010,520,1530,0,\d{4}-/);
    expect(csv.some((l) => l.includes('HYPERLINK'))).toBe(false);
    const old = dsk(['usage', '--by', 'model', '--csv', '--since', '60d'], { env: m.env }).stdout.split('\r\n');
    expect(old.find((l) => l.includes('HYPERLINK'))).toMatch(/^"'=HYPERLINK\(""http:\/\/x"",""y""\)",,1,/);
    const text = dsk(["usage"], { env: m.env }).stdout;
    expect(text).toContain('55 requests, 1730 tokens, 2 errors');
    expect(text).toContain('requests by day (UTC)');
    expect(text).toMatch(new RegExp(`${new Date(now).toISOString().slice(0, 10)}\\s+45\\s+1530 tok\\s+█+`));
  });
});

describe('dsk top from the store', () => {
  it('--json streams frames; per-key rates come from the counters growing between frames', async () => {
    const p = (await import('./helpers.js')).dskAsync(['top', '--json', '--count', '4', '--interval', '1s'], { env: m.env });
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    const exited = new Promise<void>((r) => p.on('exit', () => r()));
    // the first frame is the baseline: grow the counters once it is out
    for (let i = 0; i < 300 && !out.includes('\n'); i++) await new Promise((r) => setTimeout(r, 50));
    await addUsage([{ key_id: plain.id, model: 'x', requests: 30, prompt_tokens: 60 }]);
    await exited;
    const frames = out.trim().split('\n').map((l) => JSON.parse(l));
    expect(frames).toHaveLength(4);
    expect(frames[0].keys.every((k: any) => k.requests === 0)).toBe(true);
    const later = frames.slice(1).flatMap((f: any) => f.keys.filter((k: any) => k.key_id === plain.id && k.requests > 0));
    expect(later).toHaveLength(1);
    expect(later[0]).toMatchObject({ requests: 30, tokens: 60, name: 'web' });
    expect(later[0].rps).toBeGreaterThan(5); // 30 requests over the seconds between two frames
  });
});
