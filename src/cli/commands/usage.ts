/**
 * dsk usage: requests, errors and tokens per key, owner, role or model from the gateway's hourly
 * counters, with a per-day chart; --json and --csv for scripts and spreadsheets.
 */
import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { line, listTable, paint, printJson } from '../render.js';
import { withHome } from '../session.js';
import { parseTimeArg, csvField } from '../../audit/query.js';
import { parseUsageBy, usageReport, USAGE_GROUPINGS, type UsageReport } from '../../app/usage.js';
import { UsageError } from '../../kernel/errors.js';
import { bar } from './audit/render.js';

const CSV_COLUMNS = ['group', 'name', 'requests', 'errors', 'prompt_tokens', 'completion_tokens', 'tokens', 'no_usage', 'last_used_at'] as const;

/**
 * Model names come from callers' requests: a cell a spreadsheet would run as a formula (= + - @,
 * tab, CR first) gets a leading apostrophe (OWASP's CSV injection advice).
 */
export function inertCell(v: string | number | null): string | number | null {
  return typeof v === 'string' && /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
}

export function usageCsv(r: UsageReport): string {
  const head = CSV_COLUMNS.map((c) => (c === 'group' ? r.by : c));
  return [head.join(','), ...r.groups.map((g) => CSV_COLUMNS.map((c) => csvField(inertCell(g[c] ?? null))).join(','))].join('\r\n') + '\r\n';
}

/** 1234567 → 1.2M: tables stay narrow. */
export function compact(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}G`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

export function register(program: Command): void {
  program
    .command('usage')
    .description('requests, errors and tokens per key, owner, role or model, with a per-day chart')
    .option('--since <when>', 'from this long ago (30d, 24h) or this date (2026-01-31)', '30d')
    .option('--by <what>', `group by ${USAGE_GROUPINGS.join(' | ')}`, 'key')
    .option('--csv', 'CSV (RFC 4180), one line per group')
    .addHelpText('after', '\nExamples:\n  dsk usage\n  dsk usage --since 7d --by owner\n  dsk usage --by model --json\n  dsk usage --since 2026-01-01 --csv > usage.csv')
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const now = ctx.env.clock.now();
      const since = parseTimeArg(String(o.since), now, '--since');
      const by = parseUsageBy(String(o.by), '--by');
      if (o.csv && ctx.json) throw new UsageError('ERR_FLAGS_EXCLUSIVE', '--csv cannot be combined with --json');
      const r = await withHome(ctx, { permission: 'audit.view', readonly: true }, (h) => usageReport(h, since, by, now));
      if (ctx.json) return printJson(r);
      if (o.csv) return void process.stdout.write(usageCsv(r));
      const c = paint(ctx);
      line(`${c.bold(String(r.total.requests))} requests, ${c.bold(compact(r.total.tokens))} tokens, ${r.total.errors} errors since ${r.since}`);
      if (!r.groups.length) return;
      line('');
      line(
        listTable(
          ctx,
          [r.by, ...(by === 'key' ? ['name'] : []), 'requests', 'errors', 'prompt', 'completion', 'no usage', 'last use'],
          r.groups.map((g) => [g.group, ...(by === 'key' ? [g.name ?? '-'] : []), g.requests, g.errors, compact(g.prompt_tokens), compact(g.completion_tokens), g.no_usage, g.last_used_at ?? '-']),
        ),
      );
      line('');
      line(c.bold('requests by day (UTC)'));
      const max = Math.max(1, ...r.days.map((d) => d.requests));
      for (const d of r.days) line(`  ${d.day}  ${String(d.requests).padStart(8)}  ${compact(d.tokens).padStart(7)} tok  ${c.cyan(bar(d.requests, max, 30))}`);
    });
}
