/** Output for people (tables, colour) and for scripts (JSON). Only src/cli imports chalk. */
import { Chalk } from 'chalk';
import type { Ctx } from './context.js';

export function paint(ctx: Pick<Ctx, 'color'>) {
  return new Chalk({ level: ctx.color ? 1 : 0 });
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/**
 * A borderless table: columns padded to their widest cell, four spaces apart. Hand-rolled rather
 * than cli-table3 because its layout is superlinear in rows (10,000 keys took over 20 s); this is
 * linear and prints the same text.
 */
export function table(ctx: Pick<Ctx, 'color'>, head: string[], rows: (string | number | null | undefined)[][]): string {
  const c = paint(ctx);
  const cells = [head, ...rows.map((r) => r.map((v) => (v == null ? '-' : String(v))))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => displayWidth(r[i] ?? ''))));
  return cells
    .map((r, n) =>
      r
        .map((v, i) => (n === 0 ? c.bold(v) : v) + ' '.repeat(Math.max(0, widths[i] - displayWidth(v))))
        .join('    ')
        .trimEnd(),
    )
    .join('\n');
}

// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;
const WIDE = /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1faff}\u{20000}-\u{3fffd}]/u;

/** Columns a string takes in a terminal: ANSI colour codes take none, CJK and emoji take two. */
export function displayWidth(s: string): number {
  let w = 0;
  for (const ch of s.replace(ANSI, '')) w += WIDE.test(ch) ? 2 : 1;
  return w;
}

export function statusColour(ctx: Pick<Ctx, 'color'>, status: string): string {
  const c = paint(ctx);
  switch (status) {
    case 'active':
      return c.green(status);
    case 'grace':
      return c.yellow(status);
    case 'revoked':
      return c.red(status);
    default:
      return c.dim(status);
  }
}

export function line(text = ''): void {
  process.stdout.write(text + '\n');
}
