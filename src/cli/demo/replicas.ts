/** Demo step: two gateways on one home share the nonce table, so a replayed signed request is refused by the other. */
import { gatewayOptions, startGateway } from '../../gateway/server.js';
import { signHeaders } from '../../gateway/signature.js';
import { startStubUpstream } from '../../gateway/stub-upstream.js';
import type { DemoStep } from './context.js';

export const replicasStep: DemoStep = {
  title: 'Two gateways on one store: a signed request replayed to the other one is refused',
  command: 'dsk serve --listen 127.0.0.1:8080 …   # and on another host or port: dsk serve --listen 127.0.0.1:8081 …',
  async run(d) {
    const up = await startStubUpstream();
    const opts = { ...gatewayOptions(undefined, { upstream: up.url, listen: '127.0.0.1:0' }), drainMs: 1000 };
    const a = await startGateway(d.h, opts);
    const b = await startGateway(d.h, opts);
    try {
      const k = d.keys.chat;
      const body = JSON.stringify({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'hello' }] });
      const headers = { ...signHeaders({ apiKey: k.api_key, apiSecret: k.api_secret, keyId: k.id, method: 'POST', path: '/v1/chat/completions', body }), 'content-type': 'application/json', connection: 'close' };
      const post = (url: string) => fetch(`${url}/v1/chat/completions`, { method: 'POST', headers, body });
      const first = await post(a.url);
      await first.arrayBuffer();
      const replay = await post(b.url);
      const replayBody = (await replay.json()) as { error: { message: string } };
      d.say(`   signed request to gateway A ${a.url} → ${first.status}`);
      d.say(`   the same request (same nonce) to gateway B ${b.url} → ${replay.status} "${replayBody.error.message}"`);
      d.summary.replicas = { first: first.status, replay: replay.status, replay_message: replayBody.error.message };
    } finally {
      // reverse order: each gateway restores the store's lock timeout it found
      await b.close();
      await a.close();
      await up.close();
    }
  },
};
