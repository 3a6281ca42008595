import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { line, paint, printJson } from '../render.js';
import { withHome } from '../session.js';
import { homeStatus } from '../../app/status.js';

export function register(program: Command): void {
  program
    .command('status')
    .description('backend, fragments and threshold, key counts by state, rotations due, audit head')
    .addHelpText('after', '\nExamples:\n  dsk status\n  dsk status --json | jq .keys')
    .action(async (_o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const s = await withHome(ctx, { permission: null, readonly: true }, (h) => homeStatus(h));
      if (ctx.json) return printJson(s);
      const c = paint(ctx);
      line(`${c.bold('home')}      ${s.home}`);
      line(`${c.bold('backend')}   ${s.backend}${s.fragments && s.backend === 'software' ? ` (${s.fragments.threshold}-of-${s.fragments.shares} fragments, kdf ${s.fragments.kdf})` : ''}`);
      if (s.hsm) line(`${c.bold('hsm')}       token '${s.hsm.token_label}', key '${s.hsm.key_label}' (${s.hsm.origin}${s.hsm.recovery ? ', with recovery fragments' : ', no copy outside the token'}), module ${s.hsm.module}`);
      line(`${c.bold('store')}     ${s.store === 'sqlite' ? 'SQLite (keys.db, audit_log/audit.db in the home)' : `PostgreSQL ${s.store} (shared by every node of the home)`}`);
      line(`${c.bold('sealed')}    ${s.sealed ? 'yes (each command unseals, then wipes the key)' : 'no'}`);
      line(`${c.bold('keys')}      ${Object.entries(s.keys).map(([k, v]) => `${k} ${v}`).join(', ')}`);
      line(`${c.bold('due')}       ${s.rotations_due} key(s) due for rotation`);
      if (s.undelivered.length)
        line(`${c.bold('delivery')}  ${c.yellow(`${s.undelivered.length} rotated key(s) not yet delivered: ${s.undelivered.map((u) => `${u.key_id} (${u.name}, replaces ${u.old_key_id})`).join(', ')}`)}; dsk rotate --due --exec … or --out-dir … delivers them`);
      line(`${c.bold('operators')} ${s.operators.mode === 'open' ? 'checks off (open mode: bootstrap; add an admin: dsk operator add NAME --role admin)' : `checks on, ${s.operators.operators} operator(s), ${s.operators.enrolled_admins} enrolled admin(s)`}`);
      const hf = s.audit.head_file;
      const hfText = !hf ? c.yellow('audit_log/HEAD missing') : hf.seq === s.audit.head_seq && hf.hash === s.audit.head_hash ? 'HEAD file agrees' : c.yellow(`HEAD file at #${hf.seq}: run dsk audit verify`);
      line(`${c.bold('audit')}     ${s.audit.rows} rows, head #${s.audit.head_seq} ${s.audit.head_hash.slice(0, 16)}… (${hfText})`);
    });
}
