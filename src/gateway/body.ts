/**
 * Reading a request body without letting callers hold the gateway's memory. Three bounds:
 *
 *   size     one body over `maxBytes` is refused (413), from its Content-Length when it declares
 *            one, else as soon as the bytes read pass the limit;
 *   time     a body that has not fully arrived `timeoutMs` after reading began is cut (408): a
 *            caller trickling one byte a second cannot pin a buffer until the request timeout;
 *   total    every body being read shares one budget of `maxBufferedBytes`; a body that would
 *            push the total over it is refused (503 with Retry-After) instead of buffered.
 *
 * The budget is charged up front with the declared length (or chunk by chunk for a chunked body)
 * and given back when the body is handed on or refused, so the buffers the gateway holds never
 * exceed the budget by more than one chunk.
 */
import type http from 'node:http';

export type BodyResult = { ok: true; body: Buffer } | { ok: false; kind: 'too_large' | 'timeout' | 'busy' };

export interface BodyLimits {
  maxBytes: number;
  timeoutMs: number;
}

const EMPTY = Buffer.alloc(0);

export class BodyBudget {
  #used = 0;
  constructor(readonly maxBytes: number) {}

  take(n: number): boolean {
    if (this.#used + n > this.maxBytes) return false;
    this.#used += n;
    return true;
  }

  give(n: number): void {
    this.#used = Math.max(0, this.#used - n);
  }

  get used(): number {
    return this.#used;
  }
}

/** The body of `req` within the limits; no promise for a request that declares no body (the common GET). */
export function readBoundedBody(req: http.IncomingMessage, limits: BodyLimits, budget: BodyBudget): BodyResult | Promise<BodyResult> {
  const cl = req.headers['content-length'];
  const declared = cl === undefined ? null : Number(cl);
  if (declared !== null && !(declared <= limits.maxBytes)) return { ok: false, kind: 'too_large' };
  if (declared === 0 || (declared === null && !req.headers['transfer-encoding'])) return { ok: true, body: EMPTY };
  let charged = declared ?? 0;
  if (!budget.take(charged)) return { ok: false, kind: 'busy' };
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let finished = false;
    const done = (r: BodyResult) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onError);
      budget.give(charged);
      charged = 0;
      if (!r.ok) req.pause();
      resolve(r);
    };
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > limits.maxBytes) return done({ ok: false, kind: 'too_large' });
      if (size > charged) {
        if (!budget.take(size - charged)) return done({ ok: false, kind: 'busy' });
        charged = size;
      }
      chunks.push(c);
    };
    const onEnd = () => done({ ok: true, body: chunks.length === 1 ? chunks[0] : Buffer.concat(chunks) });
    // a connection that breaks mid-body: the response is gone too, the result only frees the budget
    const onError = () => done({ ok: false, kind: 'timeout' });
    const timer = setTimeout(() => done({ ok: false, kind: 'timeout' }), limits.timeoutMs);
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onError);
  });
}
