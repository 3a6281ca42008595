/**
 * The command tree as completion sees it, read from commander after every command module has
 * registered: each command path's subcommands, options (and which take a value) and positional
 * arguments, and where each value's candidates come from. The shell scripts are rendered from this
 * one model, so a new command or flag completes without touching the completion code.
 *
 * A value spec is one token: `@dir`, `@file`, `@dyn:SOURCE` (asked of `dsk __complete SOURCE` at
 * TAB time, read from the home without unsealing), or space-separated words.
 */
import type { Command, Option } from 'commander';
import { KEY_STATUSES } from '../../domain/key.js';
import { PERMISSIONS } from '../../domain/roles.js';

export const DYNAMIC_SOURCES = ['roles', 'keys-all', 'keys-live', 'operators'] as const;
export type DynamicSource = (typeof DYNAMIC_SOURCES)[number];
export const SHELLS = ['bash', 'zsh', 'fish'] as const;
export type Shell = (typeof SHELLS)[number];

export interface CompletionNode {
  /** space-separated command path, '' for the top level */
  path: string;
  description: string;
  subcommands: string[];
  /** every option name valid here, global ones included */
  options: string[];
  /** option name → value spec, for options that take a value */
  values: Record<string, string>;
  /** value spec of each positional argument; the last repeats when variadic */
  args: string[];
  variadic: boolean;
}

const DIR_OPTIONS = ['--home', '--fragment-dir', '--dir', '--out-dir'];
const FILE_OPTIONS = ['--passphrase-file', '--new-passphrase-file', '--pin-file', '--out', '--master-key-file', '--key-file', '--body-file', '--tls-cert', '--tls-key', '--client-ca', '--upstream-key-file', '--environment-file', '--log', '--archive', '--pkcs11-module'];

/** Values of options whose meaning is the same wherever they appear. Choices declared on an Option win. */
const OPTION_VALUES: Record<string, string> = {
  ...Object.fromEntries(DIR_OPTIONS.map((o) => [o, '@dir'])),
  ...Object.fromEntries(FILE_OPTIONS.map((o) => [o, '@file'])),
  '--role': '@dyn:roles',
  '--from': '@dyn:roles',
  '--status': KEY_STATUSES.join(' '),
  '--backend': 'software pkcs11',
  '--kdf': 'pbkdf2 scrypt',
  '--format': 'jsonl csv',
  '--key': '@dyn:keys-all',
  '--method': 'GET POST PUT PATCH DELETE',
};

/** Positional arguments, by command path: key ids, operators, the policy matrix. */
const ARG_VALUES: Record<string, string[]> = {
  'keys show': ['@dyn:keys-all'],
  'keys revoke': ['@dyn:keys-live'],
  rotate: ['@dyn:keys-live'],
  'export k8s': ['@dyn:keys-live'],
  'export env': ['@dyn:keys-live'],
  'token issue': ['@dyn:keys-live'],
  'operator confirm': ['@dyn:operators'],
  'operator remove': ['@dyn:operators'],
  'operator reset-otp': ['@dyn:operators'],
  'policy set': ['@dyn:roles', PERMISSIONS.join(' '), 'on off'],
  'policy remove-role': ['@dyn:roles'],
  completion: [SHELLS.join(' ')],
};

function optionNames(o: Option): string[] {
  return [o.short, o.long].filter((n): n is string => !!n);
}

function valueOf(o: Option): string {
  if (o.argChoices?.length) return o.argChoices.join(' ');
  return (o.long && OPTION_VALUES[o.long]) ?? '';
}

const takesValue = (o: Option) => o.required || o.optional;

/** Every command path of `program`, depth first; `program` must have every command registered. */
export function completionModel(program: Command): CompletionNode[] {
  const globals = program.options.filter((o) => !o.hidden);
  const out: CompletionNode[] = [];
  const visit = (cmd: Command, path: string) => {
    const own = path === '' ? [] : cmd.options.filter((o) => !o.hidden);
    // -V/--version answers only before any command
    const all = [...own, ...(path === '' ? globals : globals.filter((o) => o.long !== '--version'))];
    const values: Record<string, string> = {};
    for (const o of all) if (takesValue(o)) for (const n of optionNames(o)) values[n] = valueOf(o);
    const subs = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
    const args = cmd.registeredArguments;
    out.push({
      path,
      description: cmd.description(),
      subcommands: subs.map((c) => c.name()),
      options: [...new Set([...all.flatMap(optionNames), '--help'])],
      values,
      args: ARG_VALUES[path] ?? args.map((a) => a.argChoices?.join(' ') ?? ''),
      variadic: args.at(-1)?.variadic ?? false,
    });
    for (const s of subs) visit(s, path ? `${path} ${s.name()}` : s.name());
  };
  visit(program, '');
  return out;
}
