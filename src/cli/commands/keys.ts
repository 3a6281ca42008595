import type { Command } from 'commander';
import { keyIdArg } from '../key-id.js';
import { ctxOf } from '../context.js';
import { line, listTable, paint, printJson, statusColour } from '../render.js';
import { withHome, withUnsealed } from '../session.js';
import { withUnsealOptions } from '../secrets.js';
import { assertRevocable, getKey, keyView, KEY_STATUSES, listKeys, revokeKey, type KeyStatus } from '../../app/keys.js';
import { UsageError } from '../../kernel/errors.js';
import { humanAge } from '../../kernel/duration.js';
import { changeKeyLimits, quotasLeft } from '../../app/key-settings.js';
import { keyLimitsFromFlags } from '../keyopts.js';

export function register(program: Command): void {
  const keys = program.command('keys').description('list, show, set limits on (models, quotas) and revoke keys');
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
      const { v, quotas } = await withHome(ctx, { permission: null, readonly: true }, async (h) => {
        const row = await getKey(h, id);
        return { v: keyView(row), quotas: await quotasLeft(h, row, h.env.clock.now()) };
      });
      if (ctx.json) return printJson(quotas.length ? { ...v, quota_left: quotas } : v);
      const c = paint(ctx);
      for (const [k, val] of Object.entries(v)) line(`${c.bold(k.padEnd(16))}${k === 'status' ? statusColour(ctx, String(val)) : k === 'options' && val ? JSON.stringify(val) : val ?? '-'}`);
      for (const q of quotas) line(`${c.bold(`${q.kind} left`.padEnd(16))}${q.left} of ${q.quota} (used ${q.used}; resets ${q.resets_at})`);
    });
  withUnsealOptions(
    keys
      .command('set <id>')
      .description("change a key's model list and quotas (dsk serve applies them within a second)")
      .option('--models <list>', "only these models, * for any characters: 'deepseek-r1,deepseek-v3*'")
      .option('--all-models', 'remove the model list: every model')
      .option('--token-quota <amount/period>', 'tokens per UTC day or month (2M/month), or none')
      .option('--request-quota <amount/period>', 'requests per UTC day or month (10k/day), or none'),
  )
    .addHelpText('after', "\nExamples:\n  dsk keys set 3f9a2c7d1e8b --models 'deepseek-r1,deepseek-v3*' --token-quota 2M/month\n  dsk keys set 3f9a2c7d1e8b --all-models --request-quota none")
    .action(async (id: string, o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      keyIdArg(id);
      const changes = keyLimitsFromFlags(o);
      if (!Object.keys(changes).length) throw new UsageError('ERR_NOTHING_TO_SET', 'nothing to change', { hint: 'give --models, --all-models, --token-quota or --request-quota' });
      await withHome(ctx, { permission: null, readonly: true }, async (h) => getKey(h, id));
      const r = await withUnsealed(ctx, o, { permission: 'key.manage' }, async (h) => keyView(await changeKeyLimits(h, id, changes)));
      if (ctx.json) return printJson(r);
      line(`${paint(ctx).green('✓')} key ${r.id} (${r.name}): ${JSON.stringify(r.options ?? {})}`);
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
