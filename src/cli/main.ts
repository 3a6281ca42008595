/**
 * dsk's entry point. Loads only the command that runs (start-up time matters for cron and
 * scripts), maps every error to the brief's exit codes, and prints `dsk: error: …` / `dsk: hint: …`.
 */
import { Command, Option } from 'commander';
import { reportError } from './errors.js';
import { installSignalHandling } from './signals.js';
import { VERSION } from './version.js';

type Loader = () => Promise<{ register(program: Command): void }>;

/** name → summary and lazy loader. Summaries feed the top-level help without loading modules. */
export const COMMANDS: Record<string, { summary: string; load: Loader }> = {
  init: { summary: 'create a home: master key (Shamir fragments or PKCS#11 HSM), config, stores', load: () => import('./commands/init.js') },
  status: { summary: 'backend, key counts by state, rotations due, audit head', load: () => import('./commands/status.js') },
  keygen: { summary: 'issue an API key and signing secret for a consumer', load: () => import('./commands/keygen.js') },
  keys: { summary: 'list, show and revoke keys', load: () => import('./commands/keys.js') },
  audit: { summary: 'query, tail, verify, export, stats and archive the hash-chained audit log', load: () => import('./commands/audit.js') },
  rotate: { summary: 'rotate keys: one now (with grace), everything due (cron), or an emergency', load: () => import('./commands/rotate.js') },
  export: { summary: 'hand a key to a workload: Kubernetes Secret manifest or env lines', load: () => import('./commands/export.js') },
  cron: { summary: 'print or install the crontab line / systemd timer for dsk rotate --due', load: () => import('./commands/cron.js') },
  operator: { summary: 'operators of this CLI: add, list, remove, confirm, reset-otp (roles and TOTP)', load: () => import('./commands/operator.js') },
  policy: { summary: 'the role matrix (roles × permissions): show and change', load: () => import('./commands/policy.js') },
  derive: { summary: "the seed's generate_api_key(master_key, salt), bit-for-bit", load: () => import('./commands/derive.js') },
  hsm: { summary: 'PKCS#11 module, tokens and master key object; recover the key into a token', load: () => import('./commands/hsm.js') },
  sign: { summary: 'print the signature headers a client must send for a request', load: () => import('./commands/sign.js') },
  serve: { summary: 'the authenticating gateway in front of an OpenAI-compatible upstream', load: () => import('./commands/serve.js') },
  token: { summary: 'issue short-lived bearer tokens (HS256 JWT) for a key', load: () => import('./commands/token.js') },
  store: { summary: 'move a SQLite home into PostgreSQL (a store shared by several nodes)', load: () => import('./commands/store.js') },
  demo: { summary: 'the whole lifecycle in a throwaway home, in seconds', load: () => import('./commands/demo.js') },
};

const EXIT_CODES_HELP = `
Exit codes:
  0  success                 4  not found (home, key id, token, module file)
  1  internal error (a bug)  5  integrity (tampered fragment, broken audit chain, bad permissions)
  2  usage                   6  conflict (home exists, lock held, key state forbids the action)
  3  authentication          7  unavailable (PKCS#11 module, store not writable, upstream down)

Environment: DSK_HOME, DSK_ACTOR, DSK_OTP, DSK_PASSPHRASE_FILES, DSK_HSM_PIN, NO_COLOR, DSK_DEBUG=1`;

function globalOptionsTakingValue(): Set<string> {
  return new Set(['--home', '--actor', '--otp']);
}

/** First token that is not a global option or its value: the command name. */
export function commandName(argv: string[]): string | undefined {
  const withValue = globalOptionsTakingValue();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') return argv[i + 1];
    if (withValue.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return a;
  }
  return undefined;
}

export function buildProgram(): Command {
  const program = new Command('dsk')
    .description('API keys for self-hosted LLMs: master key in an HSM or Shamir fragments, derived keys, rotation, gateway, audit')
    .version(VERSION, '-V, --version')
    .addOption(new Option('--home <dir>', 'dsk home directory').env('DSK_HOME'))
    .option('--json', 'machine-readable JSON output')
    .option('--no-color', 'no colours (also NO_COLOR)')
    .addOption(new Option('--actor <name>', 'who is acting, recorded in the audit log').env('DSK_ACTOR'))
    .addOption(new Option('--otp <code>', "the acting operator's one-time code, for sensitive commands").env('DSK_OTP'))
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText('after', EXIT_CODES_HELP)
    .exitOverride()
    .configureOutput({ outputError: (str, write) => write(`dsk: error: ${str.replace(/^error: /, '')}`) });
  program.enablePositionalOptions(false);
  return program;
}

/** `--json` among the global options or the command's (not after `--`). */
export function wantsJson(argv: string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

export async function main(argv: string[]): Promise<void> {
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    process.stdout.write(VERSION + '\n');
    return;
  }
  // `dsk keys list | head`: a reader that goes away is not an error worth a stack trace.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    process.exit(process.exitCode ?? 0);
  });
  installSignalHandling();
  const program = buildProgram();
  let name = commandName(argv);
  // `dsk help keygen` must load keygen to show its options and examples
  if (name === 'help') name = argv[argv.indexOf('help') + 1];
  try {
    if (name && Object.hasOwn(COMMANDS, name)) {
      (await COMMANDS[name].load()).register(program);
    } else {
      for (const [n, c] of Object.entries(COMMANDS)) program.command(n).description(c.summary);
    }
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    process.exitCode = reportError(e, wantsJson(argv));
  }
}
