/**
 * A small OpenAI-compatible model server for tests, the benchmark and `dsk demo`: chat completions
 * (echo, optionally streamed as SSE chunks with a delay between them), completions, embeddings,
 * the model list and Ollama's /api/tags. Not a model; it exists so the gateway can be exercised
 * with real HTTP end to end. `x-stub-delay-ms` and `x-stub-chunks` request headers tune streaming.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StubUpstream {
  url: string;
  port: number;
  /** requests seen, with the headers that reached the upstream */
  seen: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
  close(): Promise<void>;
}

const MODEL = 'deepseek-stub';

export async function startStubUpstream(opts: { port?: number; record?: boolean } = {}): Promise<StubUpstream> {
  const seen: StubUpstream['seen'] = [];
  const server = http.createServer({ noDelay: true }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (opts.record !== false && seen.length < 10_000) seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      let body: any = {};
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : {};
      } catch {
        body = {};
      }
      // JSON that is not an object (null, a number, a list): treat as an empty request, never crash.
      if (body === null || typeof body !== 'object' || Array.isArray(body)) body = {};
      const json = (status: number, v: unknown) => {
        const s = JSON.stringify(v);
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
        res.end(s);
      };
      const path = (req.url ?? '/').split('?')[0];
      const created = Math.floor(Date.now() / 1000);
      if (req.method === 'GET' && path === '/v1/models') return json(200, { object: 'list', data: [{ id: MODEL, object: 'model', created, owned_by: 'stub' }] });
      if (req.method === 'GET' && path === '/api/tags') return json(200, { models: [{ name: MODEL }] });
      if (req.method === 'POST' && path === '/v1/embeddings') {
        const inputs: string[] = Array.isArray(body.input) ? body.input : [String(body.input ?? '')];
        return json(200, {
          object: 'list',
          model: body.model ?? MODEL,
          data: inputs.map((t, index) => {
            const v = [t.length, 0.5, -0.25, index];
            // the openai client asks for base64 (little-endian float32) by default
            const embedding = body.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v;
            return { object: 'embedding', index, embedding };
          }),
          usage: { prompt_tokens: inputs.length, total_tokens: inputs.length },
        });
      }
      if (req.method === 'POST' && (path === '/v1/chat/completions' || path === '/v1/completions')) {
        const last = Array.isArray(body.messages) ? String(body.messages.at(-1)?.content ?? '') : String(body.prompt ?? '');
        const text = `echo: ${last}`;
        if (!body.stream) {
          return json(200, {
            id: 'chatcmpl-stub',
            object: 'chat.completion',
            created,
            model: body.model ?? MODEL,
            choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
          });
        }
        const delay = Math.min(5000, Number(req.headers['x-stub-delay-ms'] ?? 20) || 0);
        const n = Math.min(1000, Number(req.headers['x-stub-chunks'] ?? 5) || 5);
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        let i = 0;
        const send = () => {
          if (res.destroyed) return;
          if (i < n) {
            const chunk = { id: 'chatcmpl-stub', object: 'chat.completion.chunk', created, model: body.model ?? MODEL, choices: [{ index: 0, delta: { content: `${i === 0 ? text + ' ' : ''}[${i}]` }, finish_reason: null }] };
            res.write(`data: ${JSON.stringify(chunk)}\n\n`);
            i++;
            setTimeout(send, delay);
          } else {
            res.write(`data: ${JSON.stringify({ id: 'chatcmpl-stub', object: 'chat.completion.chunk', created, model: body.model ?? MODEL, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
            res.end('data: [DONE]\n\n');
          }
        };
        return send();
      }
      if (path.startsWith('/api/') || path.startsWith('/v1/')) return json(200, { ok: true, method: req.method, path });
      json(404, { error: { message: 'not found', type: 'invalid_request_error', param: null, code: 'not_found' } });
    });
  });
  await new Promise<void>((r) => server.listen(opts.port ?? 0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
