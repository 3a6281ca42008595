/**
 * dsk audit verify | archive: checking the chain (or an archive file) and moving old rows out.
 * Verification and archiving are src/audit (verify.ts, archive.ts) and src/app/audit-archive.ts.
 */
import type { Command } from 'commander';
import { ctxOf, type Ctx } from '../../context.js';
import { line, paint, printJson } from '../../render.js';
import { withHome, withUnsealed } from '../../session.js';
import { passphraseFilesFrom, withUnsealOptions, type SecretFlags } from '../../secrets.js';
import { IntegrityError, NotFoundError } from '../../../kernel/errors.js';
import { loadConfig } from '../../../store/config-file.js';
import { openHome, type Home } from '../../../app/home.js';
import { archiveBefore } from '../../../app/audit-archive.js';
import { parseTimeArg } from '../../../audit/query.js';
import { verifyChainParallel, type VerifyReport } from '../../../audit/verify.js';
import { readHead } from '../../../audit/head.js';
import { verifyArchive, assertArchiveReadable, type ArchiveReport } from '../../../audit/archive.js';
import { VIEW } from './read.js';
import { withProgress } from '../../progress.js';

export function registerVerify(audit: Command): void {
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
      const run = async (h: Home | null): Promise<VerifyReport | ArchiveReport> =>
        o.archive
          ? verifyArchive(o.archive, h?.auditKey ?? null, h && { homeId: h.config.home_id, store: h.store })
          : withProgress(ctx, (p) => verifyChainParallel(h!.dir, h!.store, readHead(h!.dir), h!.auditKey, undefined, undefined, p && ((d, t) => p('verify', d, t))));
      let rep: VerifyReport | ArchiveReport;
      if (keyed) rep = await withUnsealed(ctx, o as SecretFlags, { permission: 'audit.view' }, run);
      else if (o.archive) rep = await withOptionalHome(ctx, run);
      else rep = await withHome(ctx, VIEW, run);
      renderVerify(ctx, rep, !!o.strict);
    });
}

export function registerArchive(audit: Command): void {
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
      const r = await withUnsealed(ctx, o, { permission: 'admin', sensitive: true }, (h) => withProgress(ctx, (p) => archiveBefore(h, before, o.out, p)));
      if (ctx.json) return printJson(r);
      if (!r.archived) return line('nothing to archive: no rows older than that');
      line(`${paint(ctx).green('✓')} archived rows ${r.first_seq}–${r.last_seq} (${r.archived}) to ${r.file}; checkpoint row ${r.checkpoint_seq}`);
    });
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

async function withOptionalHome<T>(ctx: Ctx, fn: (h: Home | null) => Promise<T>): Promise<T> {
  let h: Home;
  try {
    h = await openHome(ctx.home, ctx.env, { readonly: true });
  } catch (e) {
    if (e instanceof NotFoundError) return fn(null);
    throw e;
  }
  try {
    return await fn(h);
  } finally {
    await h.close();
  }
}

function renderVerify(ctx: Ctx, rep: VerifyReport | ArchiveReport, strict: boolean): void {
  const c = paint(ctx);
  const what = 'file' in rep ? `archive ${rep.file}` : 'audit chain';
  const headFinding = 'head_file' in rep ? (rep.head_file?.finding ?? null) : null;
  const strictFail = strict && !rep.breach && (!rep.macs_checked || rep.unauthenticated !== null || headFinding !== null);
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
      if (hf.finding) line(c.yellow(`  ${hf.finding}`));
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
  if (strictFail && headFinding && !(rep.macs_checked && rep.unauthenticated))
    throw new IntegrityError('ERR_AUDIT_HEAD_UNKEYED', headFinding, { hint: 'compare with a HEAD recorded elsewhere (dsk status prints it) and restore audit_log/ from a backup if rows are missing' });
  if (strictFail)
    throw new IntegrityError('ERR_AUDIT_UNAUTHENTICATED', rep.macs_checked ? `rows ${rep.unauthenticated!.from}–${rep.unauthenticated!.to} are not covered by a MAC` : 'MACs were not checked (no unseal input)', { hint: 'unseal to check MACs; any keyed write (for example dsk keygen) covers earlier unkeyed rows' });
}
