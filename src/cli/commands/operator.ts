/**
 * dsk operator: the people and jobs allowed to run this CLI, their roles and TOTP second factors.
 * Thin: parse, pre-check without unsealing, call src/app/operators.ts, render.
 */
import type { Command } from 'commander';
import { ctxOf, type Ctx } from '../context.js';
import { line, paint, printJson, table } from '../render.js';
import { ADMIN_SENSITIVE, preflight, withHome, withUnsealed } from '../session.js';
import { canPrompt, withUnsealOptions } from '../secrets.js';
import { type Home } from '../../app/home.js';
import { addOperator, confirmEnrolment, getOperator, listOperators, operatorSummary, operatorView, preflightAdd, removeOperator, resetOtp, validateOperatorName, type AddedOperator } from '../../app/operators.js';
import { NotFoundError } from '../../kernel/errors.js';


async function mustExist(h: Home, name: string): Promise<void> {
  validateOperatorName(name);
  if (!(await getOperator(h, name))) throw new NotFoundError('ERR_NO_OPERATOR', `no operator '${name}'`, { hint: 'see dsk operator list' });
}

/** The code an operator's authenticator shows: --code, DSK_OTP/--otp when confirming oneself, or a prompt. */
async function confirmationCode(ctx: Ctx, name: string, given: string | undefined, allowOtp: boolean): Promise<string | null> {
  if (given) return given;
  if (allowOtp && ctx.actor === name && ctx.otp) return ctx.otp;
  if (!canPrompt()) return null;
  const { default: input } = await import('@inquirer/input');
  return input({ message: `code now shown by ${name}'s authenticator app:` }, { output: process.stderr });
}

/**
 * Shows the enrolment once. The URI holds the TOTP secret: it goes to this terminal (stdout) only,
 * never to the audit log or stderr.
 */
async function showEnrolment(ctx: Ctx, r: AddedOperator, verb: string): Promise<void> {
  const c = paint(ctx);
  line(`${c.green('✓')} ${verb} operator ${c.bold(r.operator.name)} (role ${r.operator.role})`);
  if (!r.otpauth_uri) {
    line('  no second factor: this role runs no sensitive command');
    return;
  }
  // Half-block characters, two modules per line; the drawn blocks are the light modules, for the
  // usual light-on-dark terminal.
  const { renderUnicodeCompact } = await import('uqr');
  line(`  scan this with ${r.operator.name}'s authenticator app (TOTP, SHA-1, 6 digits, 30 s):`);
  line(renderUnicodeCompact(r.otpauth_uri));
  line(`  or enter this URI by hand: ${r.otpauth_uri}`);
  line(c.yellow('  shown once and it holds the secret: do not paste it into tickets or chat'));
}

async function enrolFlow(ctx: Ctx, h: Home, r: AddedOperator, verb: string) {
  const name = r.operator.name;
  if (!ctx.json) await showEnrolment(ctx, r, verb);
  let confirmed = false;
  let enforcedNow = false;
  if (r.otpauth_uri) {
    const c = await confirmationCode(ctx, name, undefined, false);
    if (c != null) {
      try {
        const done = await confirmEnrolment(h, name, c);
        confirmed = true;
        enforcedNow = done.enforced_now;
      } catch (e) {
        if (!ctx.json) process.stderr.write(`dsk: operator '${name}' is ${verb}, but its second factor is still pending\n`);
        throw e;
      }
    }
  }
  const next = r.otpauth_uri && !confirmed ? `dsk --actor ${name} operator confirm ${name} --code CODE` : null;
  if (ctx.json) return printJson({ ...operatorView(confirmed ? (await getOperator(h, name))! : r.operator, h.env.clock.now()), otpauth_uri: r.otpauth_uri, confirmed, operator_checks_started: enforcedNow, next });
  const p = paint(ctx);
  if (confirmed) line(`${p.green('✓')} second factor confirmed for ${name}`);
  if (enforcedNow) line(`${p.bold('operator checks are now on')}: every command checks the acting operator's role; sensitive ones need a code (dsk policy show)`);
  if (next) line(`  next: ${name} confirms with the code the app shows: ${next}`);
}

export function register(program: Command): void {
  const op = program
    .command('operator')
    .description("operators of this CLI: who may run which command (the seed's role matrix) and their TOTP second factor")
    .addHelpText(
      'after',
      `
Until an admin operator has confirmed a second factor the home is in open mode (no checks).

Examples:
  dsk operator add "$(whoami)" --role admin     # the first admin; scan the QR code, type the code
  dsk operator add bob --role developer --otp 123456
  dsk operator list --json`,
    );

  withUnsealOptions(
    op
      .command('add <name>')
      .description('register an operator; admin and developer roles enrol a TOTP second factor (QR code shown once)')
      .requiredOption('--role <role>', 'admin | developer | auditor | automation (or a custom role)'),
  )
    .addHelpText('after', '\nExamples:\n  dsk operator add alice --role admin\n  dsk --otp 123456 operator add cron --role automation\n  dsk operator add bob --role developer --json   # prints otpauth_uri; bob then runs: dsk --actor bob operator confirm bob --code CODE')
    .action(async (name: string, o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      await preflight(ctx, (h) => preflightAdd(h, name, o.role));
      await withUnsealed(ctx, o, ADMIN_SENSITIVE, async (h) => enrolFlow(ctx, h, await addOperator(h, name, o.role), 'added'));
    });

  withUnsealOptions(
    op
      .command('confirm <name>')
      .description("confirm a pending second factor with the code the operator's authenticator shows")
      .option('--code <code>', 'the 6-digit code (else --otp/DSK_OTP when confirming yourself, or a prompt)'),
  )
    .addHelpText('after', '\nExamples:\n  dsk --actor bob operator confirm bob --code 123456\n  DSK_ACTOR=bob DSK_OTP=123456 dsk operator confirm bob --json')
    .action(async (name: string, o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      await preflight(ctx, (h) => mustExist(h, name));
      const r = await withUnsealed(ctx, o, { permission: null }, async (h) => {
        const done = await confirmEnrolment(h, name, await confirmationCode(ctx, name, o.code, true));
        return { ...operatorView(done.operator, h.env.clock.now()), operator_checks_started: done.enforced_now };
      });
      if (ctx.json) return printJson(r);
      line(`${paint(ctx).green('✓')} second factor confirmed for ${name}`);
      if (r.operator_checks_started) line('operator checks are now on: every command checks the acting operator (dsk policy show)');
    });

  op.command('list')
    .description('list operators, their roles and second-factor state (never a secret)')
    .addHelpText('after', '\nExamples:\n  dsk operator list\n  dsk operator list --json')
    .action(async (_o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const r = await withHome(ctx, { permission: null, readonly: true }, async (h) => {
        const now = h.env.clock.now();
        return { checks: (await operatorSummary(h)).mode, operators: (await listOperators(h)).map((x) => operatorView(x, now)) };
      });
      if (ctx.json) return printJson(r);
      line(`operator checks: ${r.checks === 'open' ? 'off (open mode: no admin has confirmed a second factor yet)' : 'on'}`);
      if (!r.operators.length) return line('no operators; add the first admin: dsk operator add "$(whoami)" --role admin');
      line(table(ctx, ['name', 'role', 'second factor', 'locked until', 'added by', 'added'], r.operators.map((x) => [x.name, x.role, x.second_factor, x.locked_until ?? '', x.created_by, x.created_at.slice(0, 19)])));
    });

  withUnsealOptions(op.command('remove <name>').description('remove an operator (admin + second factor; the last enrolled admin cannot be removed)'))
    .addHelpText('after', '\nExample:\n  dsk --otp 123456 operator remove bob')
    .action(async (name: string, o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      await preflight(ctx, (h) => mustExist(h, name));
      const r = await withUnsealed(ctx, o, ADMIN_SENSITIVE, async (h) => operatorView(await removeOperator(h, name), h.env.clock.now()));
      if (ctx.json) return printJson({ removed: r.name, role: r.role });
      line(`${paint(ctx).red('✗')} removed operator ${r.name} (role ${r.role})`);
    });

  withUnsealOptions(
    op
      .command('reset-otp <name>')
      .description("replace an operator's second factor (the old one stops working now) and clear a lockout"),
  )
    .addHelpText('after', '\nExamples:\n  dsk --otp 123456 operator reset-otp bob          # bob lost his phone\n  dsk --otp 123456 operator reset-otp bob --json   # prints otpauth_uri for bob')
    .action(async (name: string, o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      await preflight(ctx, (h) => mustExist(h, name));
      await withUnsealed(ctx, o, ADMIN_SENSITIVE, async (h) => enrolFlow(ctx, h, await resetOtp(h, name), 'reset'));
    });
}
