/** Output for people (tables, colour) and for scripts (JSON). Only src/cli imports chalk/cli-table3. */
import { Chalk } from 'chalk';
import Table from 'cli-table3';
import type { Ctx } from './context.js';

export function paint(ctx: Pick<Ctx, 'color'>) {
  return new Chalk({ level: ctx.color ? 1 : 0 });
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function table(ctx: Pick<Ctx, 'color'>, head: string[], rows: (string | number | null | undefined)[][]): string {
  const c = paint(ctx);
  const t = new Table({
    head: head.map((h) => c.bold(h)),
    style: { head: [], border: [], compact: true },
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '', top: '', 'top-mid': '', 'top-left': '', 'top-right': '', bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '', left: '', right: '', middle: '  ' },
  });
  for (const r of rows) t.push(r.map((v) => (v == null ? '-' : String(v))));
  return t.toString().split('\n').map((l) => l.replace(/^ /, '').trimEnd()).join('\n');
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
