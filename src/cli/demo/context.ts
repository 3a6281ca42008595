/**
 * What every demo step sees: the terminal, the throwaway home (unsealed), the keys issued so far,
 * and a summary that `dsk demo --json` prints. Steps add what later steps need to `keys`.
 */
import type { Ctx } from '../context.js';
import type { Home } from '../../app/home.js';
import type { IssuedKey } from '../../app/keys.js';
import { line, paint } from '../render.js';

export interface DemoContext {
  ctx: Ctx;
  c: ReturnType<typeof paint>;
  say(text?: string): void;
  /** the demo's scratch directory (home, passphrase files, tokens) */
  root: string;
  home: string;
  /** custodian passphrase files, alice … erin */
  passphraseFiles: string[];
  /** the unsealed home, once step "unseal" ran */
  h: Home;
  /** keys issued by earlier steps, by role in the story: chat, batch, audit, … */
  keys: Record<string, IssuedKey>;
  summary: Record<string, unknown>;
  /** what the gateway says of a key, through the same checks it runs */
  present(apiKey: string): Promise<string>;
}

export interface DemoStep {
  title: string;
  /** the equivalent command line, shown dim under the title */
  command: string | ((d: DemoContext) => string);
  run(d: DemoContext): Promise<void>;
}

export function sayer(ctx: Ctx): (s?: string) => void {
  return (s = '') => {
    if (!ctx.json) line(s);
  };
}

export function mask(s: string): string {
  return `${s.slice(0, 18)}…`;
}

export function indent(text: string): string {
  return text.replace(/^/gm, '   ');
}
