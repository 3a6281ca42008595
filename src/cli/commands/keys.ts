import type { Command } from 'commander';
import { keyIdArg } from '../key-id.js';
import { ctxOf } from '../context.js';
import { line, listTable, paint, printJson, statusColour } from '../render.js';
import { withHome, withUnsealed } from '../session.js';
import { withUnsealOptions } from '../secrets.js';
import { assertRevocable, getKey, keyView, KEY_STATUSES, listKeys, revokeKey, type KeyStatus } from '../../app/keys.js';
import { UsageError } from '../../kernel/errors.js';
import { humanAge } from '../../kernel/duration.js';

export function register(program: Command): void {
  const keys = program.command('keys').description('list, show and revoke keys');
  keys
    .command('list')
    .description('list keys (never shows the key or secret)')
    .option('--status <list>', `comma-separated: ${KEY_STATUSES.join(',')}`)
    .option('--role <role>', 'only this role')
    .option('--owner <owner>', 'only this owner')
    .addHelpText('after', '\nExamples:\n  dsk keys list\n  dsk keys list --status active,grace --json')
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const status = o.status ? (String(o.status).split(',') as KeyStatus[]) : undefined;
      for (const s of status ?? []) if (!KEY_STATUSES.includes(s)) throw new UsageError('ERR_STATUS_UNKNOWN', `unknown --status '${s}'`, { hint: `use ${KEY_STATUSES.join(', ')}` });
      const rows = await withHome(ctx, { permission: null, readonly: true }, async (h) => ({ rows: await listKeys(h, { status, role: o.role, owner: o.owner }), now: h.env.clock.now() }));
      if (ctx.json) return printJson(rows.rows.map(keyView));
      if (!rows.rows.length) return line('no keys');
      line(
        listTable(
          ctx,
          ['id', 'name', 'role', 'status', 'uses', 'age', 'expires'],
          rows.rows.map((r) => [r.id, r.name, r.role, statusColour(ctx, r.status), r.use_count, humanAge(rows.now - r.created_at), r.expires_at ? humanAge(r.expires_at - rows.now) : 'never']),
        ),
      );
    });
  keys
    .command('show <id>')
    .description('show one key: policy, state, usage, lineage')
    .addHelpText('after', '\nExample:\n  dsk keys show 3f9a2c7d1e8b --json')
    .action(async (id: string, _o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      keyIdArg(id);
      const v = await withHome(ctx, { permission: null, readonly: true }, async (h) => keyView(await getKey(h, id)));
      if (ctx.json) return printJson(v);
      const c = paint(ctx);
      for (const [k, val] of Object.entries(v)) line(`${c.bold(k.padEnd(16))}${k === 'status' ? statusColour(ctx, String(val)) : val ?? '-'}`);
    });
  withUnsealOptions(
    keys
      .command('revoke <id>')
      .description('revoke a key at once (no grace period)')
      .option('--reason <text>', 'why, recorded in the audit log'),
  )
    .addHelpText('after', '\nExample:\n  dsk keys revoke 3f9a2c7d1e8b --reason "leaked in a CI log"')
    .action(async (id: string, o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      keyIdArg(id);
      // Unknown id or a key already out of use: say so before asking custodians to unseal.
      await withHome(ctx, { permission: null, readonly: true }, async (h) => assertRevocable(await getKey(h, id)));
      const r = await withUnsealed(ctx, o, { permission: 'key.manage', sensitive: true }, async (h) => keyView(await revokeKey(h, id, o.reason ?? null)));
      if (ctx.json) return printJson(r);
      line(`${paint(ctx).red('✗')} revoked key ${r.id} (${r.name})`);
    });
}
