/**
 * Tokens and requests per key, hour and model, on their way to the store (usage_hourly) through
 * the usage sink's once-a-second flush. Per request: the model named in the body is read (and
 * checked against the key's allow-list, model-gate.ts), a streamed OpenAI request that did not ask
 * for usage gets `stream_options.include_usage` added, and the answer's counts are read as it
 * passes (usage-scan.ts). An answer with no readable counts is counted with zero tokens and in
 * `dsk_gateway_usage_missing_total`; it never fails the request.
 */
import type http from 'node:http';
import type { UsageRow } from '../store/store.js';
import { AnswerWindow, UsageStripper, type AnswerRewrite, type Tokens } from './usage-scan.js';

const HOUR_MS = 3_600_000;
/** OpenAI routes whose streams carry usage only when asked (stream_options.include_usage). */
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_ALL = /[\u0000-\u001f\u007f-\u009f]/g;
const INJECT = Buffer.from('{"stream_options":{"include_usage":true},');
const USAGE_OPT_IN = new Set(['POST /v1/chat/completions', 'POST /v1/completions']);

/** What the gateway learned from a request body before forwarding it. */
export interface MeteredRequest {
  model: string;
  /** the body to forward (rewritten when include_usage was added) */
  body: Buffer;
  injected: boolean;
  /** an answer is expected to carry token counts (a JSON request that named a model) */
  expectsUsage: boolean;
}

/** Reads `model` (and `stream`) from a JSON body; adds include_usage when `countTokens` and the caller did not ask. */
export function meterRequest(routeName: string, body: Buffer, countTokens: boolean): MeteredRequest {
  const plain = { model: '', body, injected: false, expectsUsage: false };
  if (!body.length || body[0] !== 0x7b /* { */) return plain;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(body.toString('utf8'));
  } catch {
    return plain;
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) return plain;
  let model = typeof o.model === 'string' ? o.model.slice(0, 200) : '';
  // the name is the caller's text and ends up in terminals (dsk usage --by model): no control characters
  if (CONTROL.test(model)) model = model.replace(CONTROL_ALL, '?');
  const out = { model, body, injected: false, expectsUsage: model !== '' };
  if (countTokens && o.stream === true && USAGE_OPT_IN.has(routeName)) {
    const so = o.stream_options;
    const asked = so && typeof so === 'object' && (so as Record<string, unknown>).include_usage === true;
    if (!asked) {
      // no stream_options at all (the common case): splice the member in after the opening brace
      // rather than re-serialising the whole body
      if (so === undefined) out.body = Buffer.concat([INJECT, body.subarray(1)]);
      else {
        o.stream_options = { ...(so && typeof so === 'object' ? so : {}), include_usage: true };
        out.body = Buffer.from(JSON.stringify(o));
      }
      out.injected = true;
    }
  }
  return out;
}

/** Per-answer reading of the counts; `finish()` gives them (null: none readable). */
export interface AnswerTap {
  /** called with the upstream answer before its headers go out; may return a rewrite of its body */
  attach(ur: http.IncomingMessage): AnswerRewrite | null;
  finish(): Tokens | null;
}

export function answerTap(injected: boolean): AnswerTap {
  let window: AnswerWindow | null = null;
  let stripper: UsageStripper | null = null;
  return {
    attach(ur) {
      const sse = String(ur.headers['content-type'] ?? '').startsWith('text/event-stream');
      if (injected && sse) return (stripper = new UsageStripper());
      const w = (window = new AnswerWindow());
      ur.on('data', (c: Buffer) => w.push(c));
      return null;
    },
    finish: () => (stripper ? stripper.tokens : (window?.tokens() ?? null)),
  };
}

/** The counters waiting for the next flush, and the totals /metrics shows. */
/** Distinct model names kept per key and hour; more are counted under OTHER_MODELS (a caller picks the name). */
export const MAX_MODELS_PER_KEY_HOUR = 50;
export const OTHER_MODELS = '(other)';

export class HourlyUsage {
  #rows = new Map<string, UsageRow>();
  /** `${keyId}|${hour}` → model names seen this hour (reset when the hour changes) */
  #models = new Map<string, Set<string>>();
  #modelsHour = 0;
  #tokens = new Map<string, { prompt: number; completion: number }>();
  #missing = 0;

  /** One finished request. `tokens` null with `expectsUsage`: the answer had no readable counts. */
  record(keyId: string, model: string, status: number, tokens: Tokens | null, expectsUsage: boolean, now: number): void {
    const hour = now - (now % HOUR_MS);
    model = this.#boundedModel(keyId, hour, model);
    const k = `${keyId}\u0000${hour}\u0000${model}`;
    let r = this.#rows.get(k);
    if (!r) this.#rows.set(k, (r = { key_id: keyId, hour, model, requests: 0, errors: 0, prompt_tokens: 0, completion_tokens: 0, no_usage: 0, last_at: now }));
    r.requests++;
    r.last_at = Math.max(r.last_at, now);
    if (status >= 400) r.errors++;
    else if (tokens) {
      r.prompt_tokens += tokens.prompt;
      r.completion_tokens += tokens.completion;
      const t = this.#tokens.get(keyId) ?? { prompt: 0, completion: 0 };
      t.prompt += tokens.prompt;
      t.completion += tokens.completion;
      this.#tokens.set(keyId, t);
    } else if (expectsUsage) {
      r.no_usage++;
      this.#missing++;
    }
  }

  #boundedModel(keyId: string, hour: number, model: string): string {
    if (hour !== this.#modelsHour) (this.#models.clear(), (this.#modelsHour = hour));
    const id = `${keyId}|${hour}`;
    let seen = this.#models.get(id);
    if (!seen) this.#models.set(id, (seen = new Set()));
    if (seen.has(model)) return model;
    if (seen.size >= MAX_MODELS_PER_KEY_HOUR) return OTHER_MODELS;
    seen.add(model);
    return model;
  }

  take(): UsageRow[] {
    const rows = [...this.#rows.values()];
    this.#rows.clear();
    return rows;
  }

  /** Merges rows back after a failed write. */
  restore(rows: UsageRow[]): void {
    for (const r of rows) {
      const k = `${r.key_id}\u0000${r.hour}\u0000${r.model}`;
      const e = this.#rows.get(k);
      if (!e) this.#rows.set(k, { ...r });
      else {
        for (const f of ['requests', 'errors', 'prompt_tokens', 'completion_tokens', 'no_usage'] as const) e[f] += r[f];
        e.last_at = Math.max(e.last_at, r.last_at);
      }
    }
  }

  get size(): number {
    return this.#rows.size;
  }

  /** Tokens per key and kind since the gateway started. */
  tokensByKey(): Map<string, { prompt: number; completion: number }> {
    return this.#tokens;
  }

  renderMetrics(): string {
    const out = ['# HELP dsk_gateway_tokens_total Tokens counted from upstream answers, by key id and kind.', '# TYPE dsk_gateway_tokens_total counter'];
    for (const [key, t] of this.#tokens) out.push(`dsk_gateway_tokens_total{key="${key}",kind="prompt"} ${t.prompt}`, `dsk_gateway_tokens_total{key="${key}",kind="completion"} ${t.completion}`);
    out.push('# HELP dsk_gateway_usage_missing_total Answers without readable token counts (counted with zero tokens).', '# TYPE dsk_gateway_usage_missing_total counter', `dsk_gateway_usage_missing_total ${this.#missing}`);
    return out.join('\n') + '\n';
  }
}
