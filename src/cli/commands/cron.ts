import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ctxOf, osUser, type Ctx } from '../context.js';
import { line, paint, printJson } from '../render.js';
import { crontabLine, envFileTemplate, parseEvery, serviceUnit, timerUnit, type CronSpec } from '../../domain/schedule.js';
import { writePrivateFile } from '../../kernel/files.js';
import { UsageError } from '../../kernel/errors.js';

interface Opts {
  every: string;
  environmentFile?: string;
  log?: string;
  dir?: string;
  force?: boolean;
}

function spec(ctx: Ctx, o: Opts, envFileDefault: string): CronSpec {
  const everyMs = parseEvery(o.every);
  const envFile = path.resolve(o.environmentFile ?? envFileDefault);
  return {
    everyMs,
    home: ctx.home,
    node: process.execPath,
    dsk: path.resolve(process.argv[1] ?? 'dsk'),
    envFile,
    logFile: path.resolve(o.log ?? path.join(path.dirname(envFile), 'dsk-rotate.log')),
    user: osUser(),
  };
}

const EXAMPLES_PRINT = `
Examples:
  dsk cron print
  dsk cron print --every 6h --environment-file /etc/dsk/rotate.env --json`;

const EXAMPLES_INSTALL = `
Examples:
  dsk cron install --dir ~/dsk-units
  sudo cp ~/dsk-units/dsk-rotate.{service,timer} /etc/systemd/system/ && sudo systemctl enable --now dsk-rotate.timer`;

export function register(program: Command): void {
  const cron = program.command('cron').description('print or install the crontab line / systemd timer for dsk rotate --due');
  cron
    .command('print')
    .description('print a crontab line and a systemd service + timer that run dsk rotate --due --json')
    .option('--every <duration>', 'how often to run (rotation itself follows each key policy)', '1h')
    .option('--environment-file <file>', 'environment file with DSK_PASSPHRASE_FILES or DSK_HSM_PIN', '/etc/dsk/dsk-rotate.env')
    .option('--log <file>', 'where the crontab line appends output (default: beside the env file)')
    .addHelpText('after', EXAMPLES_PRINT)
    .action((o: Opts, c: Command) => {
      const ctx = ctxOf(c);
      const s = spec(ctx, o, o.environmentFile!);
      const files = { crontab: crontabLine(s), service: serviceUnit(s), timer: timerUnit(s), env_file: envFileTemplate(s) };
      if (ctx.json) return printJson({ every: o.every, env_file_path: s.envFile, ...files });
      const p = paint(ctx);
      line(p.bold('# crontab (crontab -e):'));
      process.stdout.write(files.crontab);
      line('');
      line(p.bold('# /etc/systemd/system/dsk-rotate.service'));
      process.stdout.write(files.service);
      line('');
      line(p.bold('# /etc/systemd/system/dsk-rotate.timer'));
      process.stdout.write(files.timer);
      line('');
      line(p.bold(`# ${s.envFile} (0600; fill in, no secret goes in the units)`));
      process.stdout.write(files.env_file);
    });
  cron
    .command('install')
    .description('write dsk-rotate.service, dsk-rotate.timer, dsk-rotate.crontab and an env-file template into DIR')
    .requiredOption('--dir <dir>', 'directory to write into (created 0700 if missing)')
    .option('--every <duration>', 'how often to run', '1h')
    .option('--environment-file <file>', 'environment file the units name (default: DIR/dsk-rotate.env)')
    .option('--log <file>', 'where the crontab line appends output (default: DIR/dsk-rotate.log)')
    .option('--force', 'overwrite existing unit and crontab files (the env file is never overwritten)')
    .addHelpText('after', EXAMPLES_INSTALL)
    .action((o: Opts, c: Command) => {
      const ctx = ctxOf(c);
      const dir = path.resolve(o.dir!);
      const s = spec(ctx, o, path.join(dir, 'dsk-rotate.env'));
      if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new UsageError('ERR_NOT_A_DIRECTORY', `--dir ${dir} is not a directory`);
      const units: [string, string][] = [
        ['dsk-rotate.service', serviceUnit(s)],
        ['dsk-rotate.timer', timerUnit(s)],
        ['dsk-rotate.crontab', crontabLine(s)],
      ];
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      const written: string[] = [];
      for (const [name, text] of units) {
        writePrivateFile(path.join(dir, name), text, { exclusive: !o.force });
        written.push(path.join(dir, name));
      }
      let envWritten = false;
      if (!fs.existsSync(s.envFile)) {
        writePrivateFile(s.envFile, envFileTemplate(s), { exclusive: true });
        written.push(s.envFile);
        envWritten = true;
      }
      if (ctx.json) return printJson({ dir, written, env_file: s.envFile, env_file_created: envWritten });
      const p = paint(ctx);
      for (const f of written) line(`${p.green('✓')} wrote ${f}`);
      if (!envWritten) line(`  kept the existing ${s.envFile}`);
      line('');
      line('Next:');
      line(`  1. fill in ${s.envFile}: DSK_PASSPHRASE_FILES (any K custodian files, each 0600) or DSK_HSM_PIN`);
      line(`  2. systemd: sudo cp ${dir}/dsk-rotate.{service,timer} /etc/systemd/system/ && sudo systemctl daemon-reload && sudo systemctl enable --now dsk-rotate.timer`);
      line(`     or cron:  (crontab -l; cat ${dir}/dsk-rotate.crontab) | crontab -`);
      line(`  3. check: dsk rotate --due --dry-run`);
    });
}
