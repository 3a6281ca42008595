/** Demo step: the gateway in front of a stub model server, in-process on free ports. */
import http from 'node:http';
import { gatewayOptions, startGateway } from '../../gateway/server.js';
import { startStubUpstream } from '../../gateway/stub-upstream.js';
import type { DemoStep } from './context.js';

export const gatewayStep: DemoStep = {
  title: 'The gateway in front of a model server: a good key passes, a revoked one is refused, a path that walks out of its route is refused',
  command: 'dsk serve --upstream http://127.0.0.1:11434 --listen 127.0.0.1:8080',
  async run(d) {
    const up = await startStubUpstream();
    const gw = await startGateway(d.h, { ...gatewayOptions(undefined, { upstream: up.url, listen: '127.0.0.1:0' }), drainMs: 1000 });
    try {
      const post = (key: string) =>
        fetch(`${gw.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', connection: 'close' },
          body: JSON.stringify({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'hello' }] }),
        });
      const ok = await post(d.keys.chat.api_key);
      const okBody = (await ok.json()) as { choices: { message: { content: string } }[] };
      d.say(`   gateway ${gw.url} → stub upstream ${up.url}`);
      d.say(`   POST /v1/chat/completions with chat-frontend's key → ${ok.status} "${okBody.choices[0].message.content}"`);
      const bad = await post(d.keys.batch.api_key);
      const badBody = (await bad.json()) as { error: { code: string } };
      d.say(`   the same with nightly-batch's revoked key → ${bad.status} ${JSON.stringify(badBody)}`);
      // node:http sends the target as written (fetch would resolve the dots itself)
      const walk = '/v1/models/%2e%2e/%2e%2e/metrics';
      const traversal = await new Promise<number>((resolve, reject) => {
        const u = new URL(gw.url);
        http
          .get({ host: u.hostname, port: u.port, path: walk, headers: { authorization: `Bearer ${d.keys.chat.api_key}` }, agent: false }, (r) => {
            r.resume();
            resolve(r.statusCode ?? 0);
          })
          .on('error', reject);
      });
      d.say(`   GET ${walk} (a prefix route walked out of) → ${traversal}, never proxied`);
      d.summary.gateway = { url: gw.url, accepted: ok.status, refused: bad.status, refused_code: badBody.error.code, traversal };
    } finally {
      await gw.close();
      await up.close();
    }
  },
};
