/** dsk store migrate: move a SQLite home into PostgreSQL (see app/store-migrate.ts). */
import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { line, paint, printJson } from '../render.js';
import { withUnsealed } from '../session.js';
import { withUnsealOptions } from '../secrets.js';
import { NotFoundError } from '../../kernel/errors.js';
import { acquireLock } from '../../kernel/lock.js';
import { redactedStore } from '../../store/open.js';
import { migrateToPostgres } from '../../app/store-migrate.js';

export function register(program: Command): void {
  const store = program.command('store').description('where the home keeps keys and the audit chain');
  withUnsealOptions(
    store
      .command('migrate')
      .description('copy this SQLite home into an empty PostgreSQL database, verify the audit chain there, then switch the home to it')
      .requiredOption('--to <url>', 'postgres://USER@HOST:PORT/DATABASE (an empty database; no password in the address)')
      .option('--store-password-file <file>', 'file holding the PostgreSQL password (else PGPASSWORD, PGPASSFILE or ~/.pgpass)'),
  )
    .addHelpText(
      'after',
      `
Examples:
  createdb -h db.internal -U dsk dsk
  PGPASSFILE=~/.pgpass dsk store migrate --to postgres://dsk@db.internal:5432/dsk --passphrase-file a.pass --passphrase-file b.pass

Stop the home's gateways first (rotations wait on the home's lock). The SQLite files stay in the
home as they were; dsk.json names the new store only once the copy verified.`,
    )
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      redactedStore(o.to);
      const file = o.storePasswordFile === undefined ? undefined : path.resolve(o.storePasswordFile);
      if (file && !fs.existsSync(file)) throw new NotFoundError('ERR_PASSWORD_FILE_MISSING', `--store-password-file: ${file} does not exist`);
      const lock = await acquireLock(ctx.home, { purpose: 'store migrate' });
      let r;
      try {
        r = await withUnsealed(ctx, o, { permission: 'admin', sensitive: true }, (h) => migrateToPostgres(h, { url: o.to, ...(file ? { password_file: file } : {}) }));
      } finally {
        lock.release();
      }
      if (ctx.json) return printJson(r);
      const c = paint(ctx);
      line(`${c.green('✓')} moved the store to ${c.bold(r.store)}: ${r.tables.map((t) => `${t.table} ${t.rows}`).join(', ')}`);
      line(`  audit chain verified there: ${r.audit.rows} rows, head #${r.audit.head_seq}`);
      line('  dsk.json now names the new store; the SQLite files are left as they were (remove them once you are satisfied)');
      line(`  more nodes: copy key_fragments/ to each, then dsk init --join ${r.store} --fragments-from DIR`);
    });
}
