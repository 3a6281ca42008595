/**
 * Alert webhooks: each alert transition is POSTed as JSON to `alerts.webhook.url`, signed so the
 * receiver can check it came from this gateway and was not replayed:
 *
 *   X-Dsk-Timestamp: <unix seconds>
 *   X-Dsk-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
 *   X-Dsk-Delivery:  <id, the same on every retry of one message>
 *
 * The secret comes from `alerts.webhook.secret_file` (0600, like every secret file of dsk), never
 * from dsk.json. `send` only queues: deliveries run one at a time in the background, each attempt
 * bounded by a timeout, retried with exponential backoff (0.5 s, 1 s, 2 s … at most 30 s) up to
 * `retries` times. A receiver that is down or slow therefore never delays a request, and the alert
 * is in the audit log whatever happens to its webhook. The queue is bounded; what does not fit is
 * dropped and counted.
 */
import fs from 'node:fs';
import { randomUUID } from 'node:crypto';
import { hmacSha256 } from '../kernel/crypto.js';
import { NotFoundError, UsageError } from '../kernel/errors.js';
import { assertPrivate, ioError } from '../kernel/files.js';
import type { WebhookConfig } from '../domain/alert-rules.js';

const QUEUE_MAX = 1000;
const BACKOFF_MS = 500;
const BACKOFF_MAX_MS = 30_000;

/** Reads the webhook secret file: private, non-empty; the trailing newline an editor adds is dropped. */
export function readWebhookSecret(file: string): Buffer {
  let text: string;
  try {
    assertPrivate(file, 'file');
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as { code?: string }).code === 'ERR_NOT_FOUND' || (e as NodeJS.ErrnoException).code === 'ENOENT')
      throw new NotFoundError('ERR_WEBHOOK_SECRET_MISSING', `alerts.webhook.secret_file '${file}' does not exist`, { hint: 'write the shared secret there (chmod 600), or remove alerts.webhook from dsk.json', cause: e });
    throw e instanceof Error && 'exitCode' in e ? e : ioError(e, file);
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret.length < 16) throw new UsageError('ERR_WEBHOOK_SECRET_SHORT', `alerts.webhook.secret_file '${file}' holds under 16 characters`, { hint: 'use a long random secret, for example: openssl rand -hex 32' });
  return Buffer.from(secret, 'utf8');
}

/** The signature header value for `body` sent at `ts` (unix seconds). Receivers compute the same. */
export function webhookSignature(secret: Buffer, ts: number, body: string): string {
  return `sha256=${hmacSha256(secret, Buffer.from(`${ts}.${body}`)).toString('hex')}`;
}

interface Message {
  id: string;
  body: string;
  attempt: number;
}

export class WebhookSender {
  readonly #queue: Message[] = [];
  #busy = false;
  #closed = false;
  #timer: NodeJS.Timeout | null = null;
  #abort: AbortController | null = null;
  readonly counts = { delivered: 0, failed: 0, dropped: 0, retried: 0 };

  constructor(
    private readonly c: WebhookConfig,
    private readonly secret: Buffer,
  ) {}

  /** Queues one message; returns at once. */
  send(payload: Record<string, unknown>): void {
    if (this.#closed) return;
    if (this.#queue.length >= QUEUE_MAX) {
      this.counts.dropped++;
      return;
    }
    const id = randomUUID();
    this.#queue.push({ id, body: JSON.stringify({ id, ...payload }), attempt: 0 });
    this.#next();
  }

  get pending(): number {
    return this.#queue.length;
  }

  #next(): void {
    if (this.#busy || this.#closed || this.#timer || !this.#queue.length) return;
    this.#busy = true;
    const m = this.#queue[0];
    void this.#attempt(m).then((ok) => {
      this.#busy = false;
      if (this.#closed) return;
      if (ok || m.attempt > this.c.retries) {
        this.#queue.shift();
        if (ok) this.counts.delivered++;
        else this.counts.failed++;
        return this.#next();
      }
      this.counts.retried++;
      const wait = Math.min(BACKOFF_MS * 2 ** (m.attempt - 1), BACKOFF_MAX_MS);
      this.#timer = setTimeout(() => {
        this.#timer = null;
        this.#next();
      }, wait);
      this.#timer.unref();
    });
  }

  async #attempt(m: Message): Promise<boolean> {
    m.attempt++;
    const ts = Math.floor(Date.now() / 1000);
    this.#abort = new AbortController();
    const timeout = setTimeout(() => this.#abort?.abort(), this.c.timeoutMs);
    timeout.unref();
    try {
      const r = await fetch(this.c.url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'user-agent': 'dsk-alerts/1', 'x-dsk-timestamp': String(ts), 'x-dsk-signature': webhookSignature(this.secret, ts, m.body), 'x-dsk-delivery': m.id },
        body: m.body,
        signal: this.#abort.signal,
        redirect: 'error',
      });
      await r.arrayBuffer().catch(() => undefined);
      return r.status >= 200 && r.status < 300;
    } catch {
      return false;
    } finally {
      clearTimeout(timeout);
      this.#abort = null;
    }
  }

  /** Stops: the attempt in flight is aborted and what is queued is not sent (it is in the audit). */
  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#abort?.abort();
    this.secret.fill(0);
  }
}
