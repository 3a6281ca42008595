/** Quota and model-pattern parsers: property tests (fast-check) and the edges a user types. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { formatQuota, levelReached, parseQuota, periodEnd, periodStart } from '../src/domain/quota.js';
import { compileModelPatterns, modelAllowed, parseModelPatterns } from '../src/domain/model-patterns.js';
import { tokensIn, UsageStripper } from '../src/gateway/usage-scan.js';
import { UsageError } from '../src/kernel/errors.js';

const usageErrorNaming = (f: () => unknown, flag: string) => {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).toContain(flag);
    return;
  }
  throw new Error('accepted');
};

describe('quota parser', () => {
  it('reads the forms of the docs', () => {
    expect(parseQuota('2M/month', '--token-quota')).toEqual({ limit: 2_000_000, period: 'month' });
    expect(parseQuota('10k/day', '--request-quota')).toEqual({ limit: 10_000, period: 'day' });
    expect(parseQuota('1.5k/day', 'x')).toEqual({ limit: 1500, period: 'day' });
    expect(parseQuota('500/day', 'x')).toEqual({ limit: 500, period: 'day' });
    for (const bad of ['', '2M', '2M/week', '0/day', '-5/day', '2 M/month', '2X/day', '/day', '1e6/day', '0.0001k/day']) usageErrorNaming(() => parseQuota(bad, '--token-quota'), '--token-quota');
  });

  it('any text either parses to a positive whole limit or is a usage error naming the flag', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 20 }), fc.stringMatching(/^[0-9.]{0,8}[kKmMgGx]?\/(day|month|week)?$/)), (s) => {
        try {
          const q = parseQuota(s, '--request-quota');
          expect(Number.isSafeInteger(q.limit) && q.limit > 0).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(UsageError);
          expect((e as Error).message).toContain('--request-quota');
        }
      }),
    );
  });

  it('formatting and parsing round-trip', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e12 }), fc.constantFrom('day' as const, 'month' as const), (limit, period) => {
        expect(parseQuota(formatQuota({ limit, period }), 'x')).toEqual({ limit, period });
      }),
    );
  });

  it('periods are UTC calendar days and months; levels at 80% and 100%', () => {
    const t = Date.UTC(2026, 11, 31, 23, 59, 59);
    expect(new Date(periodStart('day', t)).toISOString()).toBe('2026-12-31T00:00:00.000Z');
    expect(new Date(periodEnd('month', t)).toISOString()).toBe('2027-01-01T00:00:00.000Z');
    expect(new Date(periodStart('month', t)).toISOString()).toBe('2026-12-01T00:00:00.000Z');
    expect([levelReached(79, 100), levelReached(80, 100), levelReached(99, 100), levelReached(100, 100), levelReached(4, 5)]).toEqual([null, 80, 80, 100, 80]);
  });
});

describe('model patterns', () => {
  it('reads lists and refuses what is not a model name', () => {
    expect(parseModelPatterns('deepseek-r1, deepseek-v3*', '--models')).toEqual(['deepseek-r1', 'deepseek-v3*']);
    expect(parseModelPatterns('llama3.1:8b-instruct-q4_K_M,org/m@v2', '--models')).toEqual(['llama3.1:8b-instruct-q4_K_M', 'org/m@v2']);
    for (const bad of ['', 'a,,b', 'deepseek r1', 'a,b;c', '-x', '"q"', 'x'.repeat(200)]) usageErrorNaming(() => parseModelPatterns(bad, '--models'), '--models');
  });

  it('* matches any run of characters and nothing else is special', () => {
    const m = compileModelPatterns(['deepseek-v3*', 'qwen2.5', 'org/*:latest']);
    expect(['deepseek-v3', 'deepseek-v3-0324', 'qwen2.5', 'org/llama:latest'].map((x) => modelAllowed(m, x))).toEqual([true, true, true, true]);
    expect(['deepseek-v2', 'qwen2x5', 'Qwen2.5', 'xdeepseek-v3', 'org/llama:latest2'].map((x) => modelAllowed(m, x))).toEqual([false, false, false, false, false]);
    expect(modelAllowed(compileModelPatterns(['bad pattern']), 'bad pattern')).toBe(false);
    expect(modelAllowed(compileModelPatterns(undefined), 'anything')).toBe(true);
  });

  it('matches like a reference glob on any names', () => {
    const name = fc.stringMatching(/^[a-z0-9][a-z0-9.:-]{0,12}$/);
    const pattern = fc.stringMatching(/^[a-z0-9*][a-z0-9.*-]{0,8}$/);
    const glob = (p: string, s: string): boolean => (p === '' ? s === '' : p[0] === '*' ? glob(p.slice(1), s) || (s !== '' && glob(p, s.slice(1))) : s !== '' && p[0] === s[0] && glob(p.slice(1), s.slice(1)));
    fc.assert(
      fc.property(fc.array(pattern, { minLength: 1, maxLength: 3 }), name, (ps, n) => {
        const list = parseModelPatterns(ps.join(','), '--models');
        expect(modelAllowed(compileModelPatterns(list), n)).toBe(list.some((p) => glob(p, n)));
      }),
    );
  });
});

describe('the model named in a request', () => {
  it('is kept without control characters, at most 200 characters', async () => {
    const { meterRequest } = await import('../src/gateway/usage-meter.js');
    const m = (model: unknown) => meterRequest('POST /v1/chat/completions', Buffer.from(JSON.stringify({ model, messages: [] })), true).model;
    expect(m('deepseek-r1')).toBe('deepseek-r1');
    expect(m('evil\u001b[2Jname\u0007')).toBe('evil?[2Jname?');
    expect(m('x'.repeat(500))).toHaveLength(200);
    expect(m(42)).toBe('');
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), (s) => {
        expect(m(s)).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
      }),
    );
  });
});

describe('usage in answer text', () => {
  it('reads OpenAI and Ollama counts, and nothing from broken ones', () => {
    expect(tokensIn('{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}')).toEqual({ prompt: 3, completion: 4 });
    expect(tokensIn('{"usage": {"prompt_tokens": 2, "total_tokens": 2}}')).toEqual({ prompt: 2, completion: 0 });
    expect(tokensIn('{"done":true,"prompt_eval_count":26,"eval_count":290}')).toEqual({ prompt: 26, completion: 290 });
    expect(tokensIn('{"usage":{"prompt_tokens":"x"}}')).toBeNull();
    expect(tokensIn('{"usage":null}')).toBeNull();
    expect(tokensIn('{"choices":[{"text":"usage"}]}')).toBeNull();
  });

  it('never throws on any text', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => void tokensIn(s)));
    fc.assert(fc.property(fc.string({ maxLength: 50 }), (s) => void tokensIn(`{"usage":{${s}}}`)));
  });
});

describe('the usage chunk taken out of a stream', () => {
  const event = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
  const piece = (i: number) => ({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: `p${i} ünïcode` }, finish_reason: null }] });

  it('however the stream is cut into chunks, the client gets the stream without it, and the counts are kept', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 6 }), fc.array(fc.integer({ min: 1, max: 40 }), { maxLength: 60 }), fc.boolean(), (n, cuts, crlf) => {
        const nl = (t: string) => (crlf ? t.replace(/\n/g, '\r\n') : t);
        const wanted = Array.from({ length: n }, (_, i) => nl(event(piece(i)))).join('') + nl('data: [DONE]\n\n');
        const sent = Buffer.from(
          Array.from({ length: n }, (_, i) => nl(event({ ...piece(i), usage: null }))).join('') + nl(event({ id: 'c', choices: [], usage: { prompt_tokens: 7, completion_tokens: n, total_tokens: 7 + n } })) + nl('data: [DONE]\n\n'),
        );
        const s = new UsageStripper();
        const out: Buffer[] = [];
        let at = 0;
        for (const c of cuts) {
          if (at >= sent.length) break;
          const r = s.chunk(sent.subarray(at, at + c));
          if (r) out.push(Buffer.from(r));
          at += c;
        }
        if (at < sent.length) {
          const r = s.chunk(sent.subarray(at));
          if (r) out.push(Buffer.from(r));
        }
        const r = s.end();
        if (r) out.push(Buffer.from(r));
        expect(Buffer.concat(out).toString()).toBe(wanted);
        expect(s.tokens).toEqual({ prompt: 7, completion: n });
      }),
    );
  });
});
