/**
 * Client helper (`import { signedFetch } from 'dsk/client'`): a fetch wrapper that adds the key
 * and the v1 request signature headers (see signature.ts for the canonical string).
 *
 *   const fetch = signedFetch({ apiKey, apiSecret });
 *   const openai = new OpenAI({ apiKey, baseURL: 'http://127.0.0.1:8080/v1', fetch });
 *
 * The body is hashed as sent; a ReadableStream body is read into memory first (requests are small).
 */
import { signHeaders } from './signature.js';
import { parseApiKey } from '../domain/key-text.js';

export { signHeaders, computeSignature, canonicalString, bodyHash } from './signature.js';

type FetchLike = typeof fetch;

async function bodyBytes(body: unknown): Promise<Buffer> {
  if (body == null) return Buffer.alloc(0);
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  if (ArrayBuffer.isView(body)) return Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  return Buffer.from(await new Response(body as BodyInit).arrayBuffer());
}

export function signedFetch(o: { apiKey: string; apiSecret: string; fetch?: FetchLike }): FetchLike {
  const p = parseApiKey(o.apiKey);
  if (!p.ok) throw new TypeError(`signedFetch: apiKey is not a dsk key (${p.reason.toLowerCase()})`);
  const base = o.fetch ?? globalThis.fetch;
  return (async (input: RequestInfo | URL, init?: RequestInit) => {
    const req = new Request(input, init);
    const url = new URL(req.url);
    const body = init?.body !== undefined ? await bodyBytes(init.body) : req.body ? Buffer.from(await req.clone().arrayBuffer()) : Buffer.alloc(0);
    const h = new Headers(req.headers);
    for (const [k, v] of Object.entries(signHeaders({ apiKey: o.apiKey, apiSecret: o.apiSecret, keyId: p.id, method: req.method, path: url.pathname + url.search, body }))) h.set(k, v);
    h.delete('x-api-key');
    return base(req.url, { method: req.method, headers: h, body: body.length ? new Uint8Array(body) : undefined, signal: init?.signal ?? req.signal, redirect: 'manual' });
  }) as FetchLike;
}
