import path from 'node:path';
import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { line, paint, printJson } from '../render.js';
import { collect } from '../secrets.js';
import { loadConfig } from '../../store/config-file.js';
import { gatewayUnit, unitPathProblem, type GatewayUnitSpec } from '../../domain/service-unit.js';
import { UsageError } from '../../kernel/errors.js';

interface Opts {
  user: string;
  listen: string;
  upstream?: string;
  passphraseFile: string[];
  pinFile?: string;
  accessLog?: string;
  readWrite: string[];
}

const EXAMPLES = `
The unit runs dsk serve as a dedicated user with NoNewPrivileges, ProtectSystem=strict and only the
home (and the access log's directory) writable. Unseal material comes through LoadCredential=:
systemd hands the files to the service in $CREDENTIALS_DIRECTORY, where dsk reads passphrase-*
and hsm-pin; nothing secret is in the unit or the environment.

Examples:
  dsk --home /var/lib/dsk service print --passphrase-file /etc/dsk/alice.pass --passphrase-file /etc/dsk/bob.pass --passphrase-file /etc/dsk/carol.pass > dsk-serve.service
  dsk --home /var/lib/dsk service print --pin-file /etc/dsk/hsm.pin --access-log /var/log/dsk/access.log --read-write /var/lib/softhsm/tokens
  sudo cp dsk-serve.service /etc/systemd/system/ && sudo systemctl daemon-reload && sudo systemctl enable --now dsk-serve`;

function checkPath(p: string, flag: string): string {
  const abs = path.resolve(p);
  const problem = unitPathProblem(abs);
  if (problem) throw new UsageError('ERR_UNIT_PATH', `${flag} ${abs} ${problem}: it cannot be written into a unit file`, { hint: 'use a path without white space or quotes' });
  return abs;
}

export function register(program: Command): void {
  const service = program.command('service').description('run the gateway under systemd: print a hardened unit for dsk serve');
  service
    .command('print')
    .description('print a systemd unit (dsk-serve.service) that runs dsk serve for this home')
    .option('--user <name>', 'the dedicated system user the gateway runs as (create it: useradd --system NAME)', 'dsk')
    .option('--listen <host:port>', 'address the gateway listens on', '127.0.0.1:8080')
    .option('--upstream <url>', 'the model server (default: gateway.upstream in dsk.json)')
    .option('--passphrase-file <file>', 'a custodian passphrase file to load as a credential (repeat, K times)', collect, [])
    .option('--pin-file <file>', 'the HSM user PIN file to load as a credential')
    .option('--access-log <file|stdout>', "write JSON access lines to this file (reopened on systemctl reload), or 'stdout' for the journal")
    .option('--read-write <dir>', 'another writable path, e.g. the SoftHSM2 token directory (repeatable)', collect, [])
    .addHelpText('after', EXAMPLES)
    .action((o: Opts, c: Command) => {
      const ctx = ctxOf(c);
      if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(o.user)) throw new UsageError('ERR_UNIT_USER', `invalid --user '${o.user}': a system user name (lower-case letters, digits, - and _)`);
      if (!/^[^\s]+:\d{1,5}$/.test(o.listen)) throw new UsageError('ERR_UNIT_LISTEN', `invalid --listen '${o.listen}': expected host:port`, { hint: 'for example 127.0.0.1:8080 or 0.0.0.0:8443' });
      if (o.passphraseFile.length && o.pinFile) throw new UsageError('ERR_UNIT_SECRETS', '--passphrase-file and --pin-file are for different backends: give one kind');
      if (o.upstream !== undefined && (/\s/.test(o.upstream) || !/^https?:\/\//.test(o.upstream))) throw new UsageError('ERR_UNIT_UPSTREAM', `invalid --upstream '${o.upstream}': expected an http:// or https:// URL`);
      const config = loadConfig(ctx.home);
      const spec: GatewayUnitSpec = {
        node: checkPath(process.execPath, 'node'),
        dsk: checkPath(process.argv[1] ?? 'dsk', 'dsk'),
        home: checkPath(ctx.home, '--home'),
        user: o.user,
        listen: o.listen,
        upstream: o.upstream,
        passphraseFiles: o.passphraseFile.map((f) => checkPath(f, '--passphrase-file')),
        pinFile: o.pinFile ? checkPath(o.pinFile, '--pin-file') : undefined,
        accessLog: o.accessLog === undefined || o.accessLog === 'stdout' ? o.accessLog : checkPath(o.accessLog, '--access-log'),
        readWrite: o.readWrite.map((d) => checkPath(d, '--read-write')),
        devices: config.backend === 'pkcs11',
      };
      const unit = gatewayUnit(spec);
      if (ctx.json) return printJson({ name: 'dsk-serve.service', path: '/etc/systemd/system/dsk-serve.service', unit });
      if (process.stdout.isTTY) line(paint(ctx).bold('# /etc/systemd/system/dsk-serve.service'));
      process.stdout.write(unit);
    });
}
