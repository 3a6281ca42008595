/**
 * The upstream hop. The request body is buffered (requests are small, and a signature needs the
 * body's hash before anything is sent); the response is piped as it arrives, so server-sent events
 * reach the client chunk by chunk. Nothing is compressed or rewritten but the headers: hop-by-hop
 * headers go neither way, and the caller's credential and signature never reach the upstream.
 */
import http from 'node:http';
import https from 'node:https';
import type { Metrics } from './metrics.js';
import { errorBody } from './refusals.js';
import type { AnswerRewrite } from './usage-scan.js';

// RFC 9110 section 7.6.1, plus host (set to the upstream's own)
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);
const STRIP_TO_UPSTREAM = new Set([...HOP_BY_HOP, 'authorization', 'x-api-key', 'x-signature', 'x-timestamp', 'x-nonce', 'content-length', 'x-forwarded-for']);

const EMPTY = Buffer.alloc(0);

/**
 * The request body, or null when it is over `maxBytes` (then the rest is not read). No promise for
 * a request that declares no body, the common GET.
 */
export function readBody(req: http.IncomingMessage, maxBytes: number): Promise<Buffer | null> | Buffer | null {
  const cl = req.headers['content-length'];
  if (cl !== undefined && Number(cl) > maxBytes) return null;
  if (cl === '0' || (cl === undefined && !req.headers['transfer-encoding'])) return EMPTY;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        req.removeAllListeners('data');
        req.pause();
        resolve(null);
      } else chunks.push(c);
    });
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** ur → res through `rw`, pausing the upstream while the client is slow (as pipe does). */
function rewrite(ur: http.IncomingMessage, res: http.ServerResponse, rw: AnswerRewrite): void {
  const drain = () => ur.resume();
  ur.on('data', (c: Buffer) => {
    let out: string | Buffer | null;
    try {
      out = rw.chunk(c);
    } catch {
      return void res.destroy();
    }
    if (out && out.length && !res.write(out)) {
      ur.pause();
      res.once('drain', drain);
    }
  });
  ur.on('end', () => {
    let out: string | Buffer | null;
    try {
      out = rw.end();
    } catch {
      return void res.destroy();
    }
    if (out && out.length) res.end(out);
    else res.end();
  });
}

export class UpstreamProxy {
  readonly #url: URL;
  readonly #base: string;
  readonly #lib: typeof http | typeof https;
  readonly #agent: http.Agent;

  /** `authorization`: the upstream's own static key (vLLM --api-key), sent in place of the caller's. */
  constructor(
    upstream: string,
    private readonly authorization: string | undefined,
    private readonly metrics: Metrics,
  ) {
    this.#url = new URL(upstream);
    this.#base = this.#url.pathname.replace(/\/$/, '');
    this.#lib = this.#url.protocol === 'https:' ? https : http;
    this.#agent = new this.#lib.Agent({ keepAlive: true, maxSockets: 256 });
  }

  /**
   * `tap` sees the answer before its headers go out (usage-meter.ts, model-gate.ts): it may read it
   * as it passes, or return a rewrite of its body (then content-length is dropped), applied chunk
   * by chunk with the same backpressure as a pipe.
   */
  forward(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, ip: string, tap?: (ur: http.IncomingMessage) => AnswerRewrite | null): void {
    const up = this.#url;
    const headers: http.OutgoingHttpHeaders = {};
    for (const [k, v] of Object.entries(req.headers)) if (!STRIP_TO_UPSTREAM.has(k) && v !== undefined) headers[k] = v;
    headers['host'] = up.host;
    headers['content-length'] = String(body.length);
    headers['x-forwarded-for'] = ip;
    if (this.authorization) headers['authorization'] = this.authorization;
    const upReq = this.#lib.request(
      { protocol: up.protocol, hostname: up.hostname, port: up.port, method: req.method, path: this.#base + (req.url ?? '/'), headers, agent: this.#agent },
      (ur) => {
        const out: http.OutgoingHttpHeaders = {};
        for (const [k, v] of Object.entries(ur.headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
        const through = tap?.(ur) ?? null;
        if (through) delete out['content-length'];
        res.writeHead(ur.statusCode ?? 502, out);
        // A streamed answer (SSE, chunked) shows its headers at once; a sized one goes out with
        // its body in one write.
        if (out['content-length'] === undefined) res.flushHeaders();
        if (through) rewrite(ur, res, through);
        else ur.pipe(res);
        ur.on('error', () => res.destroy());
      },
    );
    upReq.on('error', () => {
      this.metrics.upstreamError();
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'application/json' });
        res.end(errorBody('the upstream model server is unavailable', 'upstream_error', 'upstream_unavailable'));
      } else res.destroy();
    });
    res.on('close', () => {
      if (!res.writableFinished) upReq.destroy();
    });
    upReq.setNoDelay(true);
    upReq.end(body);
  }

  /** Closes the kept-alive upstream connections. */
  close(): void {
    this.#agent.destroy();
  }
}
