/**
 * A progress bar on stderr for long runs (backup, restore, audit verify / export / archive,
 * rotate --due): counts, percentage and ETA, drawn only when stderr is a terminal and the output is
 * not --json, so pipes, cron mail and scripts see nothing extra. The use cases below cli/ report
 * through a plain callback (kernel/progress.ts) and never know whether a bar is drawn.
 */
import { createRequire } from 'node:module';
import type { Progress } from '../kernel/progress.js';
import type { Ctx } from './context.js';

const require = createRequire(import.meta.url);

const UNITS: Record<string, 'bytes' | 'count'> = { write: 'bytes', read: 'bytes', export: 'count', snapshot: 'count' };
const LABELS: Record<string, string> = { snapshot: 'copying pages', check: 'checking audit rows', write: 'writing', read: 'reading', verify: 'verifying audit rows', export: 'exporting rows', archive: 'archiving rows', rotate: 'rotating keys' };

function human(n: number, unit: 'bytes' | 'count'): string {
  if (unit === 'count') return n.toLocaleString('en-US');
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function progressEnabled(ctx: Pick<Ctx, 'json'>): boolean {
  return !ctx.json && !!process.stderr.isTTY && process.env.TERM !== 'dumb';
}

/** Runs fn with a progress callback that draws a bar on a terminal, and clears it when fn ends. */
export async function withProgress<T>(ctx: Pick<Ctx, 'json'>, fn: (p: Progress | undefined) => Promise<T>): Promise<T> {
  if (!progressEnabled(ctx)) return fn(undefined);
  const { SingleBar } = require('cli-progress') as typeof import('cli-progress');
  let bar: InstanceType<typeof SingleBar> | null = null;
  let phase = '';
  const progress: Progress = (p, done, total) => {
    const unit = UNITS[p] ?? 'count';
    const payload = { label: LABELS[p] ?? p, done_h: human(done, unit), total_h: human(total, unit) };
    if (!bar) {
      bar = new SingleBar({ stream: process.stderr, format: '{label} [{bar}] {percentage}% | {done_h}/{total_h} | ETA: {eta_formatted}', hideCursor: true, clearOnComplete: true, etaBuffer: 50, fps: 10, barsize: 30 });
      bar.start(Math.max(total, 1), done, payload);
      phase = p;
      return;
    }
    if (p !== phase) {
      phase = p;
      bar.start(Math.max(total, 1), done, payload);
      return;
    }
    bar.setTotal(Math.max(total, 1));
    bar.update(done, payload);
  };
  try {
    return await fn(progress);
  } finally {
    (bar as InstanceType<typeof SingleBar> | null)?.stop();
  }
}
