import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { line, paint, printJson } from '../render.js';
import { DOCTOR_DEFAULTS, runDoctor, type Check } from '../../app/doctor.js';
import { parseDuration } from '../../kernel/duration.js';
import { ExitCode } from '../../kernel/errors.js';

const EXAMPLES = `
Checks, without unsealing or writing: file modes, dsk.json, schema version, the run lock,
fragments reachable for the threshold (or the PKCS#11 module and token), audit_log/HEAD against
the chain, keys expiring soon, rotations overdue (the scheduled job not running), and the
gateway's upstream when dsk.json names one. Exit 0 when healthy (warnings allowed), 5 when the
home is damaged, 7 when something it needs is unavailable.

Examples:
  dsk doctor
  dsk doctor --json | jq '.checks[] | select(.status != "ok")'
  dsk doctor --overdue-after 2d     # the rotation job runs daily`;

const MARK: Record<Check['status'], string> = { ok: '✓', warn: '!', fail: '✗', skip: '-' };

export function register(program: Command): void {
  program
    .command('doctor')
    .description('check a home without unsealing it: a checklist, with the fix for each problem')
    .option('--overdue-after <duration>', 'a key due for rotation longer than this means the rotation job is not running', '1d')
    .option('--expiring-within <duration>', 'report active keys that expire within this', '7d')
    .addHelpText('after', EXAMPLES)
    .action(async (o: { overdueAfter: string; expiringWithin: string }, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const opts = {
        ...DOCTOR_DEFAULTS,
        now: ctx.env.clock.now(),
        overdueAfterMs: parseDuration(o.overdueAfter, '--overdue-after', true),
        expiringWithinMs: parseDuration(o.expiringWithin, '--expiring-within', true),
      };
      const r = await runDoctor(ctx.home, opts);
      const exit = r.failure === 'damage' ? ExitCode.INTEGRITY : r.failure === 'unavailable' ? ExitCode.UNAVAILABLE : ExitCode.OK;
      process.exitCode = exit;
      if (ctx.json) return printJson({ ...r, exit_code: exit });
      const c = paint(ctx);
      const colour = { ok: c.green, warn: c.yellow, fail: c.red, skip: c.dim };
      const width = Math.max(...r.checks.map((x) => x.name.length));
      line(`${c.bold('dsk doctor')} ${r.home}`);
      for (const x of r.checks) {
        line(`  ${colour[x.status](MARK[x.status])} ${x.name.padEnd(width)}  ${x.detail}`);
        if (x.fix && x.status !== 'ok') line(`${' '.repeat(width + 6)}${c.dim('fix:')} ${x.fix}`);
      }
      const problems = r.checks.filter((x) => x.status === 'fail').length;
      const warnings = r.checks.filter((x) => x.status === 'warn').length;
      line(r.healthy ? c.green(`healthy${warnings ? ` (${warnings} warning(s))` : ''}`) : c.red(`${problems} problem(s): ${r.failure === 'damage' ? 'the home is damaged (exit 5)' : 'something it needs is unavailable (exit 7)'}`));
    });
}
