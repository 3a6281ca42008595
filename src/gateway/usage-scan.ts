/**
 * Token counts read from an upstream answer while it passes through, never holding it back:
 *   OpenAI   `"usage": {"prompt_tokens", "completion_tokens", …}` in a JSON answer, or in the last
 *            chunk of a stream (server-sent events);
 *   Ollama   `"prompt_eval_count"` / `"eval_count"` in a JSON answer or the final NDJSON line.
 * Only a window of the answer's text is kept (its first and last 64 KiB; the counts sit in the
 * last object of every known server's answer), and the counts are looked for once, at its end.
 *
 * When the gateway asked for the usage chunk itself (`stream_options.include_usage` added to a
 * request that did not ask), UsageStripper removes what the caller did not ask for: the usage-only
 * chunk (`"choices": []`) and the `"usage": null` field the other chunks then carry.
 */
import { Transform, type TransformCallback } from 'node:stream';

export interface Tokens {
  prompt: number;
  completion: number;
}

const WINDOW = 64 * 1024;
const OPENAI = /"usage"\s*:\s*(\{[^{}]*\})/g;
const OLLAMA_PROMPT = /"prompt_eval_count"\s*:\s*(\d{1,15})/g;
const OLLAMA_EVAL = /"eval_count"\s*:\s*(\d{1,15})/g;

function count(v: unknown): number | null {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : null;
}

function lastMatch(re: RegExp, text: string): string | null {
  let last: string | null = null;
  re.lastIndex = 0;
  for (let m = re.exec(text); m; m = re.exec(text)) last = m[1];
  return last;
}

/** The token counts in a piece of answer text, or null when it has none that read cleanly. */
export function tokensIn(text: string): Tokens | null {
  const u = lastMatch(OPENAI, text);
  if (u !== null) {
    try {
      const o = JSON.parse(u) as Record<string, unknown>;
      const prompt = count(o.prompt_tokens);
      const completion = o.completion_tokens === undefined ? 0 : count(o.completion_tokens);
      if (prompt !== null && completion !== null) return { prompt, completion };
    } catch {
      // a broken usage object reads as none
    }
    return null;
  }
  const p = lastMatch(OLLAMA_PROMPT, text);
  const e = lastMatch(OLLAMA_EVAL, text);
  if (p === null && e === null) return null;
  return { prompt: Number(p ?? 0), completion: Number(e ?? 0) };
}

/** Keeps the first and last WINDOW bytes of what it is shown. */
export class AnswerWindow {
  #head: Buffer[] = [];
  #headSize = 0;
  #tail: Buffer[] = [];
  #tailSize = 0;
  #skipped = false;

  push(c: Buffer): void {
    if (this.#headSize < WINDOW) {
      this.#head.push(c);
      this.#headSize += c.length;
      return;
    }
    this.#tail.push(c);
    this.#tailSize += c.length;
    while (this.#tail.length > 1 && this.#tailSize - this.#tail[0].length >= WINDOW) {
      this.#tailSize -= this.#tail.shift()!.length;
      this.#skipped = true;
    }
  }

  /** Counts in the tail first (where they are), then the head. */
  tokens(): Tokens | null {
    const head = Buffer.concat(this.#head).toString('utf8');
    if (!this.#tail.length) return tokensIn(head);
    const tail = Buffer.concat(this.#tail).toString('utf8');
    return tokensIn(this.#skipped ? tail : head + tail) ?? (this.#skipped ? tokensIn(head) : null);
  }
}

const EVENT_END = /\r?\n\r?\n/g;

/** Server-sent events with the gateway's own usage request undone; the counts are kept. */
export class UsageStripper extends Transform {
  #partial = '';
  tokens: Tokens | null = null;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const text = this.#partial + chunk.toString('utf8');
    EVENT_END.lastIndex = 0;
    let from = 0;
    let out = '';
    for (let m = EVENT_END.exec(text); m; m = EVENT_END.exec(text)) {
      const end = m.index + m[0].length;
      out += this.#event(text.slice(from, end));
      from = end;
    }
    this.#partial = text.slice(from);
    done(null, out.length ? out : undefined);
  }

  override _flush(done: TransformCallback): void {
    done(null, this.#partial.length ? this.#event(this.#partial) : undefined);
  }

  #event(ev: string): string {
    if (!ev.includes('"usage"')) return ev;
    if (/"choices"\s*:\s*\[\s*\]/.test(ev)) {
      const t = tokensIn(ev);
      if (t) {
        this.tokens = t;
        return '';
      }
      return ev;
    }
    return ev.replace(/,\s*"usage"\s*:\s*null/g, '').replace(/"usage"\s*:\s*null\s*,/g, '');
  }
}
