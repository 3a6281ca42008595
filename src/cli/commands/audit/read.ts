/**
 * dsk audit query | tail | export | stats: reading the log. Flags are parsed and checked before
 * any I/O; the query itself is src/audit/query.ts (the same one GET /dsk/audit uses).
 */
import type { Command } from 'commander';
import { keyIdArg } from '../../key-id.js';
import { ctxOf } from '../../context.js';
import { line, paint, printJson } from '../../render.js';
import { withHome } from '../../session.js';
import { UsageError } from '../../../kernel/errors.js';
import { parsePositiveInt } from '../../../kernel/duration.js';
import { writePrivateFile } from '../../../kernel/files.js';
import { auditStats, csvHeader, csvLine, exportRows, lastRows, maxSeq, parseActions, parseIpFilter, parseTimeArg, queryAudit, rowJson, rowsAfter, type AuditFilter, type AuditRow } from '../../../audit/query.js';
import { actionColour, bar, rowsTable, tailLine } from './render.js';
import { withProgress } from '../../progress.js';
import type { Home } from '../../../app/home.js';

export const VIEW = { permission: 'audit.view', readonly: true } as const;

export function registerQuery(audit: Command): void {
  audit
    .command('query')
    .description('audit rows, newest first, filtered by time, action, actor, key and source IP')
    .option('--since <when>', 'from this long ago (24h, 7d) or this date (2026-01-31, 2026-01-31T08:00Z)')
    .option('--until <when>', 'up to (not including) this time; same forms as --since')
    .option('--action <list>', 'only these actions, comma-separated (KEY_CREATE,KEY_REVOKE)')
    .option('--actor <name>', 'only rows by this actor')
    .option('--key <id>', 'only rows about this key id')
    .option('--ip <cidr>', 'only rows from this address or block (10.0.0.0/8, 2001:db8::/32)')
    .option('--limit <n>', 'at most this many rows (default 100)', '100')
    .option('--csv', 'CSV (RFC 4180) instead of a table')
    .option('--utc', 'show times in UTC instead of the local zone')
    .addHelpText(
      'after',
      `
With --json: one JSON object per line (JSON lines), fields seq, timestamp, action, actor, source_ip,
key_id, details, prev_hash, hash, mac. Dates without a zone are local time.

Examples:
  dsk audit query --since 24h
  dsk audit query --action KEY_REVOKE,KEY_ROTATION --since 2026-01-01 --utc
  dsk audit query --ip 10.20.0.0/16 --action AUTH_FAILURE --json | jq .details
  dsk audit query --key 3f9a2c7d1e8b --csv > key-history.csv`,
    )
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      if (o.csv && ctx.json) throw new UsageError('ERR_FLAGS_EXCLUSIVE', '--csv and --json are mutually exclusive');
      const now = ctx.env.clock.now();
      const f = filterFrom({ ...o, actor: actorFilter(cmd) }, now);
      f.limit = parsePositiveInt(String(o.limit), '--limit', 1_000_000);
      const rows = await withHome(ctx, VIEW, (h) => queryAudit(h.store, f));
      if (ctx.json) return void process.stdout.write(rows.map((r) => JSON.stringify(rowJson(r)) + '\n').join(''));
      if (o.csv) return void process.stdout.write(csvHeader() + rows.map(csvLine).join(''));
      if (!rows.length) return line('no audit rows match');
      line(rowsTable(ctx, rows, !!o.utc));
    });
}

export function registerTail(audit: Command): void {
  audit
    .command('tail')
    .description('the newest rows; with -f, follow rows as other processes write them')
    .option('-n, --lines <n>', 'how many rows to show first', '20')
    .option('-f, --follow', 'keep printing new rows until interrupted (Ctrl-C)')
    .option('--utc', 'show times in UTC instead of the local zone')
    .addHelpText('after', '\nExamples:\n  dsk audit tail\n  dsk audit tail -n 50 -f\n  dsk audit tail -f --json | jq -c \'select(.action == "AUTH_FAILURE")\'')
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const n = parsePositiveInt(String(o.lines), '--lines', 100_000);
      await withHome(ctx, VIEW, async (h) => {
        const print = (rows: AuditRow[]) => {
          for (const r of rows) line(ctx.json ? JSON.stringify(rowJson(r)) : tailLine(ctx, r, !!o.utc));
        };
        const first = await lastRows(h.store, n);
        print(first);
        if (!o.follow) return;
        let last = first.length ? first[first.length - 1].seq : await maxSeq(h.store);
        await follow(async () => {
          const rows = await rowsAfter(h.store, last);
          if (rows.length) {
            print(rows);
            last = rows[rows.length - 1].seq;
          }
        });
      });
    });
}

export function registerExport(audit: Command): void {
  audit
    .command('export')
    .description('all rows (oldest first) as JSON lines or CSV, for a SIEM')
    .requiredOption('--format <fmt>', 'jsonl or csv')
    .option('--since <when>', 'from this long ago (30d) or this date')
    .option('--until <when>', 'up to (not including) this time')
    .option('--out <file>', 'write to this new file (0600) instead of stdout')
    .addHelpText('after', '\nExamples:\n  dsk audit export --format jsonl --since 24h | vector --config siem.toml\n  dsk audit export --format csv --since 2026-01-01 --out audit-jan.csv')
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      if (o.format !== 'jsonl' && o.format !== 'csv') throw new UsageError('ERR_EXPORT_FORMAT', `invalid --format '${o.format}': use jsonl or csv`);
      const f = filterFrom({ since: o.since, until: o.until }, ctx.env.clock.now());
      const { text, n } = await withHome(ctx, VIEW, (h) =>
        withProgress(ctx, async (progress) => {
          const parts: string[] = o.format === 'csv' ? [csvHeader()] : [];
          let n = 0;
          const total = progress ? await exportEstimate(h, f) : 0;
          progress?.('export', 0, total);
          for await (const r of exportRows(h.store, f)) {
            parts.push(o.format === 'csv' ? csvLine(r) : JSON.stringify(rowJson(r)) + '\n');
            if (++n % 1000 === 0) progress?.('export', n, Math.max(n, total));
          }
          return { text: parts.join(''), n };
        }),
      );
      if (!o.out) return void process.stdout.write(text);
      writePrivateFile(o.out, text, { exclusive: true });
      if (ctx.json) return printJson({ rows: n, file: o.out, format: o.format });
      line(`${paint(ctx).green('✓')} exported ${n} rows to ${o.out} (0600)`);
    });
}

export function registerStats(audit: Command): void {
  audit
    .command('stats')
    .description('counts by action and by day, with a small chart')
    .option('--since <when>', 'from this long ago or this date', '30d')
    .addHelpText('after', '\nExamples:\n  dsk audit stats\n  dsk audit stats --since 7d --json')
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const since = parseTimeArg(String(o.since), ctx.env.clock.now(), '--since');
      const s = await withHome(ctx, VIEW, (h) => auditStats(h.store, since));
      if (ctx.json) return printJson(s);
      const c = paint(ctx);
      line(`${c.bold(String(s.total))} rows since ${s.since}`);
      if (!s.total) return;
      line('');
      line(c.bold('by action'));
      const wa = Math.max(...s.by_action.map((r) => r.action.length));
      const ma = Math.max(...s.by_action.map((r) => r.count));
      for (const r of s.by_action) line(`  ${actionColour(ctx, r.action.padEnd(wa))}  ${String(r.count).padStart(8)}  ${bar(r.count, ma, 40)}`);
      line('');
      line(c.bold('by day (UTC)'));
      const md = Math.max(...s.by_day.map((r) => r.count));
      for (const r of s.by_day) line(`  ${r.day}  ${String(r.count).padStart(8)}  ${c.cyan(bar(r.count, md, 40))}`);
    });
}

/**
 * --actor is also dsk's global option (who is acting); the root parser takes it wherever it
 * appears. For this read-only command, a --actor given on the command line is the filter; the
 * DSK_ACTOR environment variable is not.
 */
function actorFilter(cmd: Command): string | undefined {
  let root = cmd;
  while (root.parent) root = root.parent;
  return root.getOptionValueSource('actor') === 'cli' ? (root.opts().actor as string) : undefined;
}

function filterFrom(o: { since?: string; until?: string; action?: string; actor?: string; key?: string; ip?: string }, now: number): AuditFilter {
  const f: AuditFilter = {};
  if (o.since !== undefined) f.since = parseTimeArg(o.since, now, '--since');
  if (o.until !== undefined) f.until = parseTimeArg(o.until, now, '--until');
  if (f.since != null && f.until != null && f.until <= f.since) throw new UsageError('ERR_TIME_RANGE', '--until must be later than --since');
  if (o.action !== undefined) f.actions = parseActions(o.action);
  if (o.actor !== undefined) f.actor = o.actor;
  if (o.key !== undefined) {
    keyIdArg(o.key, '--key');
    f.keyId = o.key;
  }
  if (o.ip !== undefined) f.ip = parseIpFilter(o.ip);
  return f;
}

/** Runs `poll` every 250 ms until SIGINT or SIGTERM, then returns (the caller closes the store). */
function follow(poll: () => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    let busy = false;
    const timer = setInterval(() => {
      if (busy) return;
      busy = true;
      poll()
        .catch((e) => {
          stop();
          reject(e);
        })
        .finally(() => (busy = false));
    }, 250);
    const stop = () => {
      clearInterval(timer);
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/** Rows an export will read, from the seq range its time filter covers (for the progress bar's total). */
async function exportEstimate(h: Home, f: AuditFilter): Promise<number> {
  const b = await h.store.events.bounds();
  if (b.first === null || b.last === null) return 0;
  const lo = f.since != null ? ((await h.store.events.firstSeqAtOrAfter(new Date(f.since).toISOString())) ?? b.last + 1) : b.first;
  const hi = f.until != null ? ((await h.store.events.firstSeqAtOrAfter(new Date(f.until).toISOString())) ?? b.last + 1) - 1 : b.last;
  return Math.max(0, hi - lo + 1);
}
