/** Every crash bench/fuzz.mjs found, kept as a test. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStubUpstream, type StubUpstream } from '../src/gateway/stub-upstream.js';

describe('fuzz regressions', () => {
  let up: StubUpstream;
  beforeAll(async () => {
    up = await startStubUpstream();
  });
  afterAll(async () => {
    await up.close();
  });

  it.each(['null', '7', '[1,2]', '"text"', 'true'])('the stub upstream answers a JSON body of %s instead of crashing the process', async (body) => {
    for (const path of ['/v1/embeddings', '/v1/chat/completions', '/v1/completions']) {
      const r = await fetch(`${up.url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json' } });
      expect(r.status).toBe(200);
      await r.text();
    }
  });
});
