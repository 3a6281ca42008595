/**
 * dsk policy: the seed's role matrix (roles × permissions) kept in dsk.json; shown to anyone,
 * changed only by an admin with a second factor, each change audited as CONFIG_CHANGE.
 */
import type { Command } from 'commander';
import { ctxOf, type Ctx } from '../context.js';
import { line, paint, printJson, table } from '../render.js';
import { ADMIN_SENSITIVE, preflight, withHome, withUnsealed } from '../session.js';
import { withUnsealOptions } from '../secrets.js';
import { PERMISSIONS } from '../../domain/roles.js';
import { addRole, parseOnOff, policyMatrix, preflightAddRole, preflightRemoveRole, preflightSet, removeRole, setPermission, type MatrixRow } from '../../app/policy.js';
import { operatorSummary } from '../../app/operators.js';


function matrixTable(ctx: Ctx, rows: MatrixRow[]): string {
  const c = paint(ctx);
  return table(
    ctx,
    ['role', ...PERMISSIONS],
    rows.map((r) => [r.builtin ? r.role : `${r.role} *`, ...PERMISSIONS.map((p) => (r.permissions[p] ? c.green('✓') : c.red('✗')))]),
  );
}

function showMatrix(ctx: Ctx, rows: MatrixRow[], note?: string): void {
  if (ctx.json) return printJson({ roles: Object.fromEntries(rows.map((r) => [r.role, PERMISSIONS.filter((p) => r.permissions[p])])), matrix: rows });
  if (note) line(note);
  line(matrixTable(ctx, rows));
}

export function register(program: Command): void {
  const pol = program
    .command('policy')
    .description("the role matrix: which role holds which permission (model.invoke, param.change, audit.view, key.manage)")
    .addHelpText(
      'after',
      `
Roles apply to API keys at the gateway and to operators of this CLI (dsk operator). Commands need:
  key.manage  keygen, rotate, keys revoke, export          audit.view  audit query/tail/verify/export
  admin role  operator add/remove/reset-otp, policy set/add-role/remove-role
Sensitive commands (rotation, revocation, export, operator and policy changes) also need a TOTP code.

Examples:
  dsk policy show
  dsk --otp 123456 policy set auditor model.invoke on
  dsk --otp 123456 policy add-role release-bot --from automation`,
    );

  pol
    .command('show')
    .description('print the matrix as a table (roles × permissions); * marks custom roles')
    .addHelpText('after', '\nExamples:\n  dsk policy show\n  dsk policy show --json | jq .roles')
    .action(async (_o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const r = await withHome(ctx, { permission: null, readonly: true }, async (h) => ({ rows: policyMatrix(h.config), checks: (await operatorSummary(h)).mode }));
      showMatrix(ctx, r.rows);
      if (!ctx.json) line(paint(ctx).dim(`operator checks: ${r.checks === 'open' ? 'off (open mode until an admin operator confirms a second factor)' : 'on'}`));
    });

  withUnsealOptions(pol.command('set <role> <permission> <onoff>').description('grant (on) or withdraw (off) one permission of a role'))
    .addHelpText('after', '\nExamples:\n  dsk --otp 123456 policy set developer audit.view on\n  dsk --otp 123456 policy set automation model.invoke off --json')
    .action(async (role: string, permission: string, onoff: string, o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const on = parseOnOff(onoff);
      await preflight(ctx, (h) => preflightSet(h.config, role, permission));
      const r = await withUnsealed(ctx, o, ADMIN_SENSITIVE, (h) => setPermission(h, role, permission, on));
      showMatrix(ctx, r.matrix, r.changed ? `${paint(ctx).green('✓')} ${role}: ${permission} ${on ? 'on' : 'off'}` : `${role} already has ${permission} ${on ? 'on' : 'off'}; nothing changed`);
    });

  withUnsealOptions(
    pol
      .command('add-role <name>')
      .description('add a custom role, empty or copied from another role')
      .option('--from <role>', 'start from this role\'s permissions'),
  )
    .addHelpText('after', '\nExamples:\n  dsk --otp 123456 policy add-role release-bot --from automation\n  dsk --otp 123456 policy add-role viewer')
    .action(async (name: string, o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      await preflight(ctx, (h) => preflightAddRole(h.config, name, o.from));
      const rows = await withUnsealed(ctx, o, ADMIN_SENSITIVE, (h) => addRole(h, name, o.from));
      showMatrix(ctx, rows, `${paint(ctx).green('✓')} added role ${name}${o.from ? ` (from ${o.from})` : ''}`);
    });

  withUnsealOptions(pol.command('remove-role <name>').description('remove a custom role no operator or live key uses'))
    .addHelpText('after', '\nExample:\n  dsk --otp 123456 policy remove-role viewer')
    .action(async (name: string, o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      await preflight(ctx, (h) => preflightRemoveRole(h, name));
      const rows = await withUnsealed(ctx, o, ADMIN_SENSITIVE, (h) => removeRole(h, name));
      showMatrix(ctx, rows, `${paint(ctx).red('✗')} removed role ${name}`);
    });
}
