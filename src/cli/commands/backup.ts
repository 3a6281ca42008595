/**
 * dsk backup: a consistent snapshot of a live home in one tar file (src/app/backup.ts).
 */
import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { line, paint, printJson } from '../render.js';
import { withHome } from '../session.js';
import { collect } from '../secrets.js';
import { withProgress } from '../progress.js';
import { VERSION } from '../version.js';
import { createBackup, preflightBackup } from '../../app/backup.js';

export function register(program: Command): void {
  program
    .command('backup')
    .description('a consistent snapshot of a live home (keys, audit chain, HEAD, config, master key metadata) in one tar file')
    .requiredOption('--out <file>', 'the new archive (never replaces a file; 0600)')
    .option('--include-fragments', 'also put the sealed master-key fragments in the archive (weakens the split: see docs/operations.md)')
    .option('--recipient <age1…>', 'encrypt the archive to this age public key (repeatable; a public key is not a secret)', collect, [])
    .addHelpText(
      'after',
      `
Safe while the gateway and cron keep writing: both databases are copied at one instant through
SQLite's online backup API (writers wait for the copy). The copy is checked (SQLite integrity,
audit chain against audit_log/HEAD) before the archive is written, and the archive is read back.
Fragments stay out unless --include-fragments: a restore then needs the custodians' fragment files.

Examples:
  dsk backup --out /backup/dsk-$(date +%F).tar
  dsk backup --out dsk.tar.age --recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
  dsk restore /backup/dsk-2026-11-30.tar --home /srv/dsk-restored`,
    )
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const opts = { out: String(o.out), includeFragments: !!o.includeFragments, recipients: o.recipient as string[] };
      await preflightBackup(opts);
      const r = await withHome(ctx, { permission: 'admin', automationAllowed: true, readonly: true }, (h) =>
        withProgress(ctx, (progress) => createBackup(h.dir, { ...opts, producer: `dsk ${VERSION}`, now: ctx.env.clock.now(), progress })),
      );
      if (ctx.json) return printJson(r);
      const c = paint(ctx);
      line(`${c.green('✓')} backup written to ${r.file} (${r.bytes} bytes${r.encrypted ? ', encrypted with age' : ''}), sha256 ${r.sha256}`);
      line(`  home ${r.home_id} (${r.backend}); audit rows ${r.audit.first_seq ?? '-'}–${r.audit.last_seq ?? '-'} checked; ${r.files.length} files`);
      if (r.backend === 'software' && !r.fragments_included) line(`  fragments not included: a restore needs the custodians' fragment files (or --include-fragments)`);
      if (r.fragments_elsewhere.length) line(c.yellow(`  ${r.fragments_elsewhere.length} fragment(s) live outside the home and are never in a backup: ${r.fragments_elsewhere.join(', ')}`));
    });
}
