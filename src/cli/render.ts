/** Output for people (tables, colour) and for scripts (JSON). Only src/cli imports chalk and cli-table3. */
import { createRequire } from 'node:module';
import { Chalk } from 'chalk';
import type { Ctx } from './context.js';

export function paint(ctx: Pick<Ctx, 'color'>) {
  return new Chalk({ level: ctx.color ? 1 : 0 });
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

type Cell = string | number | null | undefined;

const cellText = (v: Cell) => (v == null ? '-' : String(v));

// Loaded on first use: most commands print no table, or only JSON.
const require = createRequire(import.meta.url);
let Table: typeof import('cli-table3') | undefined;

const BORDERLESS = { top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '', middle: '    ' };

/**
 * A borderless table of a bounded number of rows (roles, tokens, operators): columns padded to
 * their widest cell, four spaces apart, the header bold with colour on. Unbounded lists use
 * listTable(), which prints the same text.
 */
export function table(ctx: Pick<Ctx, 'color'>, head: string[], rows: Cell[][]): string {
  Table ??= require('cli-table3') as typeof import('cli-table3');
  const c = paint(ctx);
  const t = new Table({ head: head.map((h) => c.bold(h)), chars: BORDERLESS, style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0, compact: true } });
  for (const r of rows) t.push(r.map(cellText));
  return t
    .toString()
    .split('\n')
    .map((l) => l.trimEnd())
    .join('\n');
}

/**
 * The same text as table(), for lists with no bound on their length (`keys list`, `audit query`).
 * cli-table3 lays a table out in time superlinear in its rows: 10,000 rows take 10 to 16 s
 * against about 50 ms here (bench/render.mjs). This renderer measures each cell once.
 */
export function listTable(ctx: Pick<Ctx, 'color'>, head: string[], rows: Cell[][]): string {
  const c = paint(ctx);
  const cells = [head, ...rows.map((r) => r.map(cellText))];
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
