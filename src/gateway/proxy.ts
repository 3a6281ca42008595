/**
 * The upstream hop. The request body is buffered (requests are small, and a signature needs the
 * body's hash before anything is sent; body.ts bounds it); the response is piped as it arrives, so
 * server-sent events reach the client chunk by chunk. Nothing is compressed or rewritten but the
 * path (normalised, path.ts) and the headers: hop-by-hop headers and any header the caller's
 * Connection names go neither way; the caller's credential and signature never reach the upstream,
 * nor do its Forwarded and X-Real-IP (an upstream that trusts them would take the caller's word
 * for its address): the only address the upstream sees is the gateway's own X-Forwarded-For.
 */
import http from 'node:http';
import https from 'node:https';
import type { Metrics } from './metrics.js';
import { errorBody } from './refusals.js';
import type { AnswerRewrite } from './usage-scan.js';

// RFC 9110 section 7.6.1, plus host (set to the upstream's own)
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);
const STRIP_TO_UPSTREAM = new Set([...HOP_BY_HOP, 'authorization', 'x-api-key', 'x-signature', 'x-timestamp', 'x-nonce', 'content-length', 'x-forwarded-for', 'forwarded', 'x-real-ip']);

/** Header names listed in Connection values (RFC 9110 section 7.6.1): hop-by-hop for this message. */
function connectionNamed(v: string | string[] | undefined): Set<string> {
  const out = new Set<string>();
  for (const line of Array.isArray(v) ? v : v === undefined ? [] : [v]) for (const t of line.split(',')) if (t.trim()) out.add(t.trim().toLowerCase());
  return out;
}

/** The headers that cross the gateway: all but `strip` and those the message's own Connection names (both directions). */
function forwardable(headers: http.IncomingHttpHeaders, strip: ReadonlySet<string>): http.OutgoingHttpHeaders {
  const named = connectionNamed(headers['connection']);
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (!strip.has(k) && !named.has(k) && v !== undefined) out[k] = v;
  return out;
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
   * `target` is the normalised path and the query as sent (path.ts).
   */
  forward(req: http.IncomingMessage, res: http.ServerResponse, body: Buffer, ip: string, target: string, tap?: (ur: http.IncomingMessage) => AnswerRewrite | null): void {
    const up = this.#url;
    const headers = forwardable(req.headers, STRIP_TO_UPSTREAM);
    headers['host'] = up.host;
    headers['content-length'] = String(body.length);
    headers['x-forwarded-for'] = ip;
    if (this.authorization) headers['authorization'] = this.authorization;
    this.#send(res, body, { protocol: up.protocol, hostname: up.hostname, port: up.port, method: req.method, path: this.#base + target, headers, agent: this.#agent }, tap, false);
  }

  #send(res: http.ServerResponse, body: Buffer, opts: http.RequestOptions, tap: ((ur: http.IncomingMessage) => AnswerRewrite | null) | undefined, retried: boolean): void {
    const upReq = this.#lib.request(
      opts,
      (ur) => {
        const out = forwardable(ur.headers, HOP_BY_HOP);
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
    upReq.on('error', (e: NodeJS.ErrnoException) => {
      // A kept-alive socket that the upstream closed just as it was reused fails before any byte
      // of an answer: the request was not taken, so it goes once more on a fresh socket.
      if (!retried && upReq.reusedSocket && !res.headersSent && !res.destroyed && (e.code === 'ECONNRESET' || e.code === 'EPIPE'))
        return this.#send(res, body, opts, tap, true);
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
