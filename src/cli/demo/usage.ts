/** Demo step: a key limited to some models and given a quota; tokens counted per key from a stream. */
import { gatewayOptions, startGateway } from '../../gateway/server.js';
import { startStubUpstream } from '../../gateway/stub-upstream.js';
import { changeKeyLimits, quotasLeft } from '../../app/key-settings.js';
import { usageReport } from '../../app/usage.js';
import type { DemoStep } from './context.js';

export const usageStep: DemoStep = {
  title: 'Models and quotas per key; tokens counted from the answers, streamed ones too',
  command: "dsk keys set <chat-frontend> --models 'deepseek-chat*' --request-quota 10k/day && dsk usage --since 1d",
  async run(d) {
    const chat = d.keys.chat;
    await changeKeyLimits(d.h, chat.id, { models: ['deepseek-chat*'], requestQuota: { limit: 10_000, period: 'day' } });
    const up = await startStubUpstream();
    const gw = await startGateway(d.h, { ...gatewayOptions(undefined, { upstream: up.url, listen: '127.0.0.1:0' }), drainMs: 1000 });
    let denied: Response;
    let deniedBody: { error: { code: string } };
    try {
      const post = (model: string, stream: boolean) =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${chat.api_key}`, 'content-type': 'application/json', connection: 'close', 'x-stub-delay-ms': '0' },
          body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'count my tokens please' }] }),
        });
      denied = await post('deepseek-r1', false);
      deniedBody = (await denied.json()) as { error: { code: string } };
      d.say(`   chat-frontend asks for deepseek-r1 → ${denied.status} ${deniedBody.error.code}`);
      const streamed = await post('deepseek-chat', true);
      const text = await streamed.text();
      d.say(`   a streamed answer from deepseek-chat → ${streamed.status}, ${text.split('\n\n').filter(Boolean).length} events, no usage chunk the client did not ask for: ${!text.includes('"usage"')}`);
      await new Promise((r) => setTimeout(r, 20));
    } finally {
      // closing flushes the counters; the report below reads them with the home's usual lock wait
      await gw.close();
      await up.close();
    }
    const now = d.h.env.clock.now();
    const r = await usageReport(d.h, now - 86_400_000, 'key', now);
    const row = r.groups.find((g) => g.group === chat.id);
    const [left] = await quotasLeft(d.h, (await d.h.store.keys.get(chat.id))!, now);
    d.say(`   dsk usage: ${row?.requests ?? 0} request(s), ${row?.tokens ?? 0} tokens for chat-frontend; requests left today ${left.left} of ${left.quota}`);
    d.summary.usage = { model_refused: denied.status, refused_code: deniedBody.error.code, requests: row?.requests ?? 0, tokens: row?.tokens ?? 0, requests_left: left.left };
  },
};
