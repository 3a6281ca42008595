/**
 * A small OpenAI-compatible model server for tests, the benchmark and `dsk demo`: chat completions
 * (echo, optionally streamed as SSE chunks with a delay between them), completions, embeddings,
 * the model list and Ollama's /api/tags, /api/chat and /api/generate (NDJSON when streamed). Not a
 * model; it exists so the gateway can be exercised with real HTTP end to end. `x-stub-delay-ms` and
 * `x-stub-chunks` request headers tune streaming. Token counts: prompt = words of the last message,
 * completion = words of the answer (non-streamed) or chunks sent (streamed); OpenAI streams carry a
 * usage chunk only when `stream_options.include_usage` asks for it, as OpenAI's do.
 * `x-stub-usage: none | broken` leaves the counts out or sends them unreadable; `x-stub-gzip: 1`
 * compresses JSON answers when the request accepts gzip.
 */
import http from 'node:http';
import zlib from 'node:zlib';
import type { AddressInfo } from 'node:net';

export interface StubUpstream {
  url: string;
  port: number;
  /** requests seen, with the headers that reached the upstream */
  seen: { method: string; url: string; headers: http.IncomingHttpHeaders }[];
  close(): Promise<void>;
}

const MODEL = 'deepseek-stub';

const words = (t: string) => Math.max(1, t.split(/\s+/).filter(Boolean).length);

export async function startStubUpstream(opts: { port?: number; record?: boolean; models?: string[] } = {}): Promise<StubUpstream> {
  const seen: StubUpstream['seen'] = [];
  // the stub answers any model name; these are the ones it lists
  const MODELS = opts.models ?? [MODEL];
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
        // like a server behind a compressing proxy: gzip when the client accepts it
        if (String(req.headers['accept-encoding'] ?? '').includes('gzip') && req.headers['x-stub-gzip']) {
          const z = zlib.gzipSync(s);
          res.writeHead(status, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': z.length });
          return void res.end(z);
        }
        res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
        res.end(s);
      };
      const path = (req.url ?? '/').split('?')[0];
      const created = Math.floor(Date.now() / 1000);
      const usageMode = String(req.headers['x-stub-usage'] ?? '');
      /** OpenAI's usage object as this request asked for it (none, broken or real) */
      const usageOf = (prompt: number, completion: number): unknown => (usageMode === 'broken' ? { prompt_tokens: 'many', completion_tokens: null } : { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });
      if (req.method === 'GET' && path === '/v1/models') return json(200, { object: 'list', data: MODELS.map((id) => ({ id, object: 'model', created, owned_by: 'stub' })) });
      if (req.method === 'GET' && path === '/api/tags') return json(200, { models: MODELS.map((name) => ({ name, model: name })) });
      if (req.method === 'POST' && (path === '/api/chat' || path === '/api/generate')) return ollama(req, res, body, path, usageMode);
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
          ...(usageMode === 'none' ? {} : { usage: usageMode === 'broken' ? usageOf(0, 0) : { prompt_tokens: inputs.length, total_tokens: inputs.length } }),
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
            ...(usageMode === 'none' ? {} : { usage: usageOf(words(last), words(text)) }),
          });
        }
        const delay = Math.min(5000, Number(req.headers['x-stub-delay-ms'] ?? 20) || 0);
        const n = Math.min(1000, Number(req.headers['x-stub-chunks'] ?? 5) || 5);
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        const withUsage = body.stream_options?.include_usage === true;
        // like OpenAI: with include_usage every chunk carries "usage": null, and one more chunk
        // with no choices carries the counts before [DONE]
        const u = withUsage ? { usage: null } : {};
        let i = 0;
        const send = () => {
          if (res.destroyed) return;
          if (i < n) {
            const chunk = { id: 'chatcmpl-stub', object: 'chat.completion.chunk', created, model: body.model ?? MODEL, choices: [{ index: 0, delta: { content: `${i === 0 ? text + ' ' : ''}[${i}]` }, finish_reason: null }], ...u };
            res.write(`data: ${JSON.stringify(chunk)}\n\n`);
            i++;
            setTimeout(send, delay);
          } else {
            res.write(`data: ${JSON.stringify({ id: 'chatcmpl-stub', object: 'chat.completion.chunk', created, model: body.model ?? MODEL, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }], ...u })}\n\n`);
            if (withUsage && usageMode !== 'none') res.write(`data: ${JSON.stringify({ id: 'chatcmpl-stub', object: 'chat.completion.chunk', created, model: body.model ?? MODEL, choices: [], usage: usageOf(words(last), n) })}\n\n`);
            res.end('data: [DONE]\n\n');
          }
        };
        return send();
      }
      if (path.startsWith('/api/') || path.startsWith('/v1/')) return json(200, { ok: true, method: req.method, path });
      json(404, { error: { message: 'not found', type: 'invalid_request_error', param: null, code: 'not_found' } });
    });
  });
  /** Ollama's native chat and generate: one JSON answer, or NDJSON lines ending with the counts. */
  function ollama(req: http.IncomingMessage, res: http.ServerResponse, body: any, path: string, usageMode: string): void {
    const prompt = path === '/api/chat' ? String(Array.isArray(body.messages) ? (body.messages.at(-1)?.content ?? '') : '') : String(body.prompt ?? '');
    const model = body.model ?? MODEL;
    const at = new Date().toISOString();
    const counts = usageMode === 'none' ? {} : usageMode === 'broken' ? { prompt_eval_count: 'x', eval_count: -1 } : { prompt_eval_count: words(prompt), eval_count: 0 };
    const piece = (t: string, done: boolean) => (path === '/api/chat' ? { model, created_at: at, message: { role: 'assistant', content: t }, done } : { model, created_at: at, response: t, done });
    if (body.stream === false) {
      const text = `echo: ${prompt}`;
      const s = JSON.stringify({ ...piece(text, true), done_reason: 'stop', ...counts, ...(usageMode === '' ? { eval_count: words(text) } : {}) });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
      return void res.end(s);
    }
    const n = Math.min(1000, Number(req.headers['x-stub-chunks'] ?? 3) || 3);
    res.writeHead(200, { 'content-type': 'application/x-ndjson' });
    for (let i = 0; i < n; i++) res.write(JSON.stringify(piece(`[${i}]`, false)) + '\n');
    res.end(JSON.stringify({ ...piece('', true), done_reason: 'stop', ...counts, ...(usageMode === '' ? { eval_count: n } : {}) }) + '\n');
  }

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
