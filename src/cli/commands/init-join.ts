/** dsk init --join URL: a second node of a home kept in PostgreSQL (see app/join.ts). */
import path from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../../kernel/errors.js';
import { joinHome } from '../../app/join.js';
import { redactedStore } from '../../store/open.js';
import { paint, printJson, line } from '../render.js';
import { unsealInputs } from '../secrets.js';
import type { Ctx } from '../context.js';

const INIT_ONLY = ['shares', 'threshold', 'kdf', 'kdfCost', 'fragmentDir', 'pkcs11Module', 'tokenLabel', 'recoveryShares', 'recoveryThreshold', 'store'];

export async function initJoin(ctx: Ctx, o: Record<string, any>, cmd: Command): Promise<void> {
  for (const f of INIT_ONLY)
    if (cmd.getOptionValueSource(f) === 'cli') throw new UsageError('ERR_FLAG_JOIN', `--${f.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is for a new home; --join adds a node to an existing one`);
  if (o.backend !== 'software') throw new UsageError('ERR_FLAG_JOIN', '--join is for software-backend homes so far');
  if (!o.fragmentsFrom) throw new UsageError('ERR_FLAG_MISSING', '--join needs --fragments-from DIR, a copy of the home\'s key_fragments directory', { hint: 'copy key_fragments/ from a node of the home (it holds sealed fragments only)' });
  redactedStore(o.join);
  const store = { url: o.join as string, ...(o.storePasswordFile ? { password_file: path.resolve(o.storePasswordFile) } : {}) };
  const r = await joinHome({ home: ctx.home, store, fragmentsFrom: path.resolve(o.fragmentsFrom), inputs: unsealInputs({ passphraseFile: o.passphraseFile }) }, ctx.env);
  if (ctx.json) return printJson(r);
  const c = paint(ctx);
  line(`${c.green('✓')} joined ${c.bold(r.home)} to home ${r.home_id} in ${r.store}`);
  line(`  key check value ${r.key_check_value} (matches the store)`);
  line('');
  line('Next: dsk serve on this node uses the same keys and audit chain as every other node of the home');
}
