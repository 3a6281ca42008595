/**
 * dsk restore: a backup archive into a new home, verified before anything is put in place (src/app/restore.ts).
 */
import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { line, paint, printJson } from '../render.js';
import { passphraseFilesFrom, readSecretFile, unsealInputs, withUnsealOptions, type SecretFlags } from '../secrets.js';
import { withProgress } from '../progress.js';
import { preflightRestore, restoreBackup } from '../../app/restore.js';

export function register(program: Command): void {
  withUnsealOptions(
    program
      .command('restore')
      .description('restore a backup into a new home: checksums and audit chain verified before anything is written')
      .argument('<archive>', 'the file dsk backup wrote')
      .option('--identity <file>', "age identity file (0600; '-' = stdin) for an encrypted backup"),
  )
    .addHelpText(
      'after',
      `
The home (--home or DSK_HOME) must not exist. Every file is checked against the manifest's SHA-256,
then SQLite's integrity check and the audit chain run on a staging copy; only then is it renamed
into place. A damaged or truncated archive is exit 5 and leaves nothing behind. With custodian
passphrase files (or DSK_PASSPHRASE_FILES / DSK_HSM_PIN) the copy is also unsealed and every MAC
checked before the rename, so a chain rewritten without the audit key is refused too.

Examples:
  dsk restore /backup/dsk-2026-11-30.tar --home /srv/dsk
  dsk restore dsk.tar.age --identity backup-key.txt --home /srv/dsk
  DSK_PASSPHRASE_FILES=a.pass:b.pass:c.pass dsk audit verify --home /srv/dsk`,
    )
    .action(async (archive: string, o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      preflightRestore({ archive, home: ctx.home });
      const identity = o.identity ? readSecretFile(String(o.identity), 'age identity').toString('utf8') : null;
      const unseal = hasUnsealSource(o) ? { inputs: unsealInputs(o), env: ctx.env } : undefined;
      const r = await withProgress(ctx, (progress) => restoreBackup({ archive, home: ctx.home, identity, progress, unseal }));
      if (ctx.json) return printJson(r);
      const c = paint(ctx);
      line(`${c.green('✓')} restored home ${r.home_id} (${r.backend}) into ${r.home}`);
      line(`  backup of ${r.created_at} by ${r.producer}; audit rows ${r.audit.first_seq ?? '-'}–${r.audit.last_seq ?? '-'} verified (${r.macs_checked ? `MACs checked through seq ${r.authenticated_through ?? '-'}` : 'structure; MACs at the first unsealed dsk audit verify'})`);
      if (r.backend === 'software' && !r.fragments_included) line(`  next: the custodians copy their fragment files into ${r.home}/key_fragments/ (or pass --fragment-dir), then: dsk audit verify --passphrase-file …`);
      else if (!r.macs_checked) line(`  next: dsk audit verify with the custodians' passphrases (or the HSM PIN) checks the MACs`);
    });
}

/** Unseal the restored copy only when the operator gave a source (restore never prompts for one). */
function hasUnsealSource(o: SecretFlags): boolean {
  return passphraseFilesFrom(o.passphraseFile).length > 0 || !!o.pinFile || !!process.env.DSK_HSM_PIN;
}
