/**
 * dsk audit query | tail | verify | export | stats | archive. Thin: parse and check flags before
 * any I/O, call src/audit, render.
 */
import type { Command } from 'commander';
import { ctxOf, type Ctx } from '../context.js';
import { line, listTable, paint, printJson } from '../render.js';
import { withHome, withUnsealed } from '../session.js';
import { passphraseFilesFrom, withUnsealOptions, type SecretFlags } from '../secrets.js';
import { IntegrityError, NotFoundError, UsageError } from '../../kernel/errors.js';
import { parsePositiveInt } from '../../kernel/duration.js';
import { writePrivateFile } from '../../kernel/files.js';
import { loadConfig } from '../../store/config-file.js';
import { openHome, type Home } from '../../app/home.js';
import { auditStats, csvHeader, csvLine, exportRows, lastRows, maxSeq, parseActions, parseIpFilter, parseTimeArg, queryAudit, rowJson, rowsAfter, type AuditFilter } from '../../audit/query.js';
import { verifyChainParallel, type VerifyReport } from '../../audit/verify.js';
import { readHead } from '../../audit/head.js';
import { archiveBefore, verifyArchive, assertArchiveReadable, type ArchiveReport } from '../../audit/archive.js';
import type { AuditRow } from '../../audit/writer.js';

const VIEW = { permission: 'audit.view', readonly: true } as const;

export function register(program: Command): void {
  const audit = program.command('audit').description('read, follow, check, export and archive the hash-chained audit log');

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
      const rows = await withHome(ctx, VIEW, (h) => queryAudit(h.db, f));
      if (ctx.json) return void process.stdout.write(rows.map((r) => JSON.stringify(rowJson(r)) + '\n').join(''));
      if (o.csv) return void process.stdout.write(csvHeader() + rows.map(csvLine).join(''));
      if (!rows.length) return line('no audit rows match');
      line(rowsTable(ctx, rows, !!o.utc));
    });

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
        const first = lastRows(h.db, n);
        print(first);
        if (!o.follow) return;
        let last = first.length ? first[first.length - 1].seq : maxSeq(h.db);
        await follow(() => {
          const rows = rowsAfter(h.db, last);
          if (rows.length) {
            print(rows);
            last = rows[rows.length - 1].seq;
          }
        });
      });
    });

  withUnsealOptions(
    audit
      .command('verify')
      .description('check the hash chain, the MACs (when unsealed) and audit_log/HEAD; or an archive file')
      .option('--archive <file>', 'verify this archive file (from dsk audit archive) instead of the live log')
      .option('--strict', 'also fail (exit 5) when rows at the end are not yet covered by a MAC'),
  )
    .addHelpText(
      'after',
      `
With custodian passphrase files (or DSK_PASSPHRASE_FILES / DSK_HSM_PIN) the MACs are checked too;
without them only the structure is, and the report says so. Exit 5 names the first bad row and
what happened to it: edited, deleted, inserted, reordered, truncated or forged.

Examples:
  dsk audit verify
  DSK_PASSPHRASE_FILES=alice.pass:bob.pass:carol.pass dsk audit verify --json
  dsk audit verify --archive audit-2025.jsonl.gz`,
    )
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      if (o.archive) assertArchiveReadable(o.archive);
      const keyed = hasUnsealSource(ctx, o);
      const run = async (h: Home | null): Promise<VerifyReport | ArchiveReport> => (o.archive ? verifyArchive(o.archive, h?.auditKey ?? null, h) : verifyChainParallel(h!.dir, h!.db, readHead(h!.dir), h!.auditKey));
      let rep: VerifyReport | ArchiveReport;
      if (keyed) rep = await withUnsealed(ctx, o as SecretFlags, { permission: 'audit.view' }, run);
      else if (o.archive) rep = await withOptionalHome(ctx, run);
      else rep = await withHome(ctx, VIEW, run);
      renderVerify(ctx, rep, !!o.strict);
    });

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
      const { text, n } = await withHome(ctx, VIEW, (h) => {
        const parts: string[] = o.format === 'csv' ? [csvHeader()] : [];
        let n = 0;
        for (const r of exportRows(h.db, f)) {
          parts.push(o.format === 'csv' ? csvLine(r) : JSON.stringify(rowJson(r)) + '\n');
          n++;
        }
        return { text: parts.join(''), n };
      });
      if (!o.out) return void process.stdout.write(text);
      writePrivateFile(o.out, text, { exclusive: true });
      if (ctx.json) return printJson({ rows: n, file: o.out, format: o.format });
      line(`${paint(ctx).green('✓')} exported ${n} rows to ${o.out} (0600)`);
    });

  audit
    .command('stats')
    .description('counts by action and by day, with a small chart')
    .option('--since <when>', 'from this long ago or this date', '30d')
    .addHelpText('after', '\nExamples:\n  dsk audit stats\n  dsk audit stats --since 7d --json')
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const since = parseTimeArg(String(o.since), ctx.env.clock.now(), '--since');
      const s = await withHome(ctx, VIEW, (h) => auditStats(h.db, since));
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

  withUnsealOptions(
    audit
      .command('archive')
      .description('move rows older than a date into a verifiable gzip archive, leaving a checkpoint')
      .requiredOption('--before <when>', 'archive rows older than this date (or duration ago: 365d)')
      .requiredOption('--out <file>', 'the new archive file (gzip JSON lines, 0600)'),
  )
    .addHelpText(
      'after',
      `
The live chain is verified first; the archive is written and synced before any row is deleted;
the delete and the AUDIT_ARCHIVE checkpoint row commit together.

Examples:
  dsk audit archive --before 2026-01-01 --out audit-2025.jsonl.gz
  dsk audit verify --archive audit-2025.jsonl.gz`,
    )
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const before = parseTimeArg(String(o.before), ctx.env.clock.now(), '--before');
      const r = await withUnsealed(ctx, o, { permission: 'admin', sensitive: true }, (h) => archiveBefore(h, before, o.out));
      if (ctx.json) return printJson(r);
      if (!r.archived) return line('nothing to archive: no rows older than that');
      line(`${paint(ctx).green('✓')} archived rows ${r.first_seq}–${r.last_seq} (${r.archived}) to ${r.file}; checkpoint row ${r.checkpoint_seq}`);
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
    if (!/^[0-9a-f]{12}$/.test(o.key)) throw new UsageError('ERR_KEY_ID', `invalid --key '${o.key}': a key id is 12 hex characters`);
    f.keyId = o.key;
  }
  if (o.ip !== undefined) f.ip = parseIpFilter(o.ip);
  return f;
}

/** Unseal only when the operator gave a source; otherwise check structure and say so. */
function hasUnsealSource(ctx: Ctx, o: SecretFlags): boolean {
  let backend: string;
  try {
    backend = loadConfig(ctx.home).backend;
  } catch {
    return false;
  }
  if (backend === 'pkcs11') return !!o.pinFile || !!process.env.DSK_HSM_PIN;
  return passphraseFilesFrom(o.passphraseFile).length > 0;
}

async function withOptionalHome<T>(ctx: Ctx, fn: (h: Home | null) => T): Promise<T> {
  let h: Home;
  try {
    h = openHome(ctx.home, ctx.env, { readonly: true });
  } catch (e) {
    if (e instanceof NotFoundError) return fn(null);
    throw e;
  }
  try {
    return fn(h);
  } finally {
    await h.close();
  }
}

function renderVerify(ctx: Ctx, rep: VerifyReport | ArchiveReport, strict: boolean): void {
  const c = paint(ctx);
  const what = 'file' in rep ? `archive ${rep.file}` : 'audit chain';
  const strictFail = strict && !rep.breach && (!rep.macs_checked || rep.unauthenticated !== null);
  if (ctx.json) printJson({ ...rep, ok: rep.ok && !strictFail, mode: rep.macs_checked ? 'structure+mac' : 'structure' });
  else if (!rep.breach) {
    const range = rep.rows ? `rows ${rep.first_seq}–${rep.last_seq}` : 'no rows';
    line(`${c.green('✓')} ${what} OK: ${rep.rows} rows (${range}), head ${rep.head_hash.slice(0, 16)}…`);
    if ('head_file' in rep && rep.head_file) {
      const hf = rep.head_file;
      const hm = hf.mac === 'valid' ? ', MAC valid' : hf.mac === 'absent' ? ', written without the key' : '';
      if (hf.state === 'match') line(`  audit_log/HEAD matches (seq ${hf.seq}${hm})`);
      else if (hf.state === 'behind') line(`  audit_log/HEAD is ${hf.rows_behind} row(s) behind (seq ${hf.seq}${hm}): a writer stopped before updating it`);
      else if (hf.state === 'archived') line(`  audit_log/HEAD names seq ${hf.seq}, now archived`);
    }
    if ('start' in rep && rep.start.from !== 'genesis') line(`  the chain starts at seq ${rep.start.seq}, after an archive (checkpoint row ${rep.start.from.archive_row})`);
    if ('checkpoint' in rep && rep.checkpoint) line(`  matches checkpoint row ${rep.checkpoint.seq} of the live chain`);
    if (rep.macs_checked) {
      line(`  MACs checked: authenticated through seq ${rep.authenticated_through ?? '-'}`);
      if (rep.unauthenticated)
        line(c.yellow(`  rows ${rep.unauthenticated.from}–${rep.unauthenticated.to} (${rep.unauthenticated.rows}) were written without the key and no keyed row covers them yet: unauthenticated`));
    } else line(c.yellow(`  structure only; MACs not checked: unseal to check (--passphrase-file …, DSK_PASSPHRASE_FILES or DSK_HSM_PIN)`));
  }
  if (rep.breach)
    throw new IntegrityError(`ERR_AUDIT_${rep.breach.kind.toUpperCase()}`, `${what} broken at seq ${rep.breach.seq} (${rep.breach.kind}): ${rep.breach.message}`, { hint: 'restore audit_log/ from a backup and investigate who could write it; dsk audit query shows the rows around it' });
  if (strictFail)
    throw new IntegrityError('ERR_AUDIT_UNAUTHENTICATED', rep.macs_checked ? `rows ${rep.unauthenticated!.from}–${rep.unauthenticated!.to} are not covered by a MAC` : 'MACs were not checked (no unseal input)', { hint: 'unseal to check MACs; any keyed write (for example dsk keygen) covers earlier unkeyed rows' });
}

/** Runs `poll` every 250 ms until SIGINT or SIGTERM, then returns (the caller closes the store). */
function follow(poll: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setInterval(() => {
      try {
        poll();
      } catch (e) {
        stop();
        reject(e);
      }
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

function localTime(ts: string, utc: boolean): string {
  if (utc) return ts.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  const d = new Date(ts);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Red for failures and revocations, yellow for rotations and other lifecycle moves, green for creation. */
export function actionKind(action: string): 'bad' | 'change' | 'create' | 'other' {
  if (/FAIL|REVOKE|BLOCK|DENIED|REFUSED|EMERGENCY|TAMPER|RATE_LIMITED|INVALID/.test(action)) return 'bad';
  if (/ROTAT|GRACE|RETIRE|EXPIRE|ARCHIVE|CONFIG|CHANGE/.test(action)) return 'change';
  if (/CREATE|INIT|ISSUE/.test(action)) return 'create';
  return 'other';
}

function actionColour(ctx: Ctx, text: string): string {
  const c = paint(ctx);
  switch (actionKind(text.trim())) {
    case 'bad':
      return c.red(text);
    case 'change':
      return c.yellow(text);
    case 'create':
      return c.green(text);
    default:
      return text;
  }
}

function short(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

function rowsTable(ctx: Ctx, rows: AuditRow[], utc: boolean): string {
  return listTable(
    ctx,
    ['seq', utc ? 'time (UTC)' : 'time', 'action', 'actor', 'source ip', 'key', 'details'],
    rows.map((r) => [r.seq, localTime(r.ts, utc), actionColour(ctx, r.action), r.actor, r.source_ip, r.key_id, short(r.details, 70)]),
  );
}

function tailLine(ctx: Ctx, r: AuditRow, utc: boolean): string {
  return `${String(r.seq).padStart(6)}  ${localTime(r.ts, utc)}  ${actionColour(ctx, r.action.padEnd(16))}  ${r.actor}${r.source_ip ? ` ${r.source_ip}` : ''}${r.key_id ? ` key ${r.key_id}` : ''}  ${short(r.details, 100)}`;
}

function bar(n: number, max: number, width: number): string {
  const eighths = Math.round((n / max) * width * 8);
  return '█'.repeat(Math.floor(eighths / 8)) + (eighths % 8 ? ' ▏▎▍▌▋▊▉'[eighths % 8] : '') || (n > 0 ? '▏' : '');
}
