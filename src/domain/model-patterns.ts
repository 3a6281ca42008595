/**
 * Model allow-lists: `deepseek-r1,deepseek-v3*`. Each entry is a model name where `*` stands for
 * any run of characters (so `deepseek-v3*` admits `deepseek-v3` and `deepseek-v3-0324`). Names are
 * matched exactly otherwise (case matters: model servers treat names as exact identifiers). Entries
are letters, digits and `_ . : / @ + -` (Ollama tags such as `llama3.1:8b-instruct-q4_K_M`).
 */
import { UsageError } from '../kernel/errors.js';

// Ollama tags carry underscores and colons: llama3.1:8b-instruct-q4_K_M
const ENTRY = /^[A-Za-z0-9*][\w.:/@*+-]{0,127}$/;

/** Parses the comma-separated list; `what` names the flag or field in the error. */
export function parseModelPatterns(text: string, what: string): string[] {
  const entries = text.split(',').map((s) => s.trim());
  const bad = entries.find((e) => !ENTRY.test(e));
  if (bad !== undefined || !entries.length)
    throw new UsageError('ERR_MODEL_PATTERN', `invalid ${what} '${text}': ${bad === '' ? 'an entry is empty' : `'${bad}' is not a model name or pattern`}`, {
      hint: "a comma-separated list of model names, * for any characters: 'deepseek-r1,deepseek-v3*'",
    });
  return [...new Set(entries)];
}

/** A compiled allow-list: one regular expression for all entries (null admits every model). */
export type ModelMatcher = RegExp | null;

export function compileModelPatterns(patterns: readonly string[] | undefined): ModelMatcher {
  if (!Array.isArray(patterns)) return null;
  const ok = patterns.filter((p): p is string => typeof p === 'string' && ENTRY.test(p));
  // a stored list with no valid entry admits nothing rather than everything
  if (!ok.length) return /^(?!)$/;
  const alt = ok.map((p) => p.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\/]/g, '\\$&')).join('.*'));
  return new RegExp(`^(?:${alt.join('|')})$`);
}

export function modelAllowed(m: ModelMatcher, model: string): boolean {
  return m === null || m.test(model);
}
