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
import { StringDecoder } from 'node:string_decoder';

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

/** A rewrite of an answer's body as it passes: what to send for each chunk, and at the end. */
export interface AnswerRewrite {
  chunk(c: Buffer): string | Buffer | null;
  end(): string | Buffer | null;
}

const USAGE_NULL = ',"usage":null';

/**
 * Server-sent events with the gateway's own usage request undone; the counts are kept. Complete
 * events go out as soon as they are complete; only a partial last event waits for its end.
 */
export class UsageStripper implements AnswerRewrite {
  /** keeps a character cut between two chunks whole */
  #decoder = new StringDecoder('utf8');
  #partial = '';
  tokens: Tokens | null = null;

  chunk(c: Buffer): string | null {
    const text = this.#partial + this.#decoder.write(c);
    const sep = text.includes('\r') ? /\r?\n\r?\n/g : null;
    let from = 0;
    let out = '';
    for (;;) {
      let at: number;
      let len = 2;
      if (sep) {
        sep.lastIndex = from;
        const m = sep.exec(text);
        if (!m) break;
        at = m.index;
        len = m[0].length;
      } else {
        at = text.indexOf('\n\n', from);
        if (at < 0) break;
      }
      out += this.#event(text.slice(from, at + len));
      from = at + len;
    }
    this.#partial = from ? text.slice(from) : text;
    return out || null;
  }

  end(): string | null {
    const rest = this.#partial + this.#decoder.end();
    this.#partial = '';
    return rest ? this.#event(rest) : null;
  }

  #event(ev: string): string {
    if (!ev.includes('"usage"')) return ev;
    // the compact form every known server sends first, the general one after
    const i = ev.indexOf(USAGE_NULL);
    if (i >= 0) return ev.slice(0, i) + ev.slice(i + USAGE_NULL.length);
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
