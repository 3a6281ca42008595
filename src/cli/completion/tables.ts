/**
 * The model as lookup tables in shell syntax: `case` functions for bash and zsh (the same text
 * runs in both), `switch` functions for fish. Each function answers one question about a command
 * path: its subcommands, its options, an option's value spec (status 1: the option is a flag),
 * the value spec of its Nth positional argument.
 */
import type { CompletionNode } from './model.js';

/** A pattern (`*` is the only wildcard; names never contain one) and what its arm prints. */
type Entry = [pattern: string, output: string];

/** Everything in a table is a command or option name or a value word: no quote can appear. */
function lit(s: string): string {
  if (/['\\\n]/.test(s)) throw new Error(`internal: completion text with a quote or newline: ${s}`);
  return `'${s}'`;
}

function entries(nodes: CompletionNode[]) {
  const subs: Entry[] = [];
  const opts: Entry[] = [];
  const values: Entry[] = [];
  const args: { exact: Entry[]; rest: Entry[] } = { exact: [], rest: [] };
  // Global options (the top level's) mean the same under every command: one wildcard arm each.
  const globals = nodes.find((n) => n.path === '')?.values ?? {};
  for (const n of nodes) {
    if (n.subcommands.length) subs.push([n.path, n.subcommands.join(' ')]);
    opts.push([n.path, n.options.join(' ')]);
    if (n.path !== '') for (const [o, spec] of Object.entries(n.values)) if (globals[o] !== spec) values.push([`${n.path}|${o}`, spec]);
    n.args.forEach((spec, i) => {
      const last = i === n.args.length - 1 && n.variadic;
      if (last) args.rest.push([`${n.path}|*`, spec]);
      else args.exact.push([`${n.path}|${i}`, spec]);
    });
  }
  for (const [o, spec] of Object.entries(globals)) values.push([`*|${o}`, spec]);
  return { subs, opts, values, args: [...args.exact, ...args.rest] };
}

function shFunction(name: string, key: string, list: Entry[]): string {
  const pattern = (p: string) => (p === '' ? "''" : p.split('*').map((part) => (part ? lit(part) : '')).join('*'));
  const arms = list.map(([p, out]) => `    ${pattern(p)}) echo ${lit(out)} ;;`).join('\n');
  return `${name}() {\n  case "${key}" in\n${arms}\n    *) return 1 ;;\n  esac\n}\n`;
}

/** bash and zsh: _dsk_subs PATH, _dsk_opts PATH, _dsk_value PATH OPTION, _dsk_arg PATH INDEX. */
export function shTables(nodes: CompletionNode[]): string {
  const e = entries(nodes);
  return [shFunction('_dsk_subs', '$1', e.subs), shFunction('_dsk_opts', '$1', e.opts), shFunction('_dsk_value', '$1|$2', e.values), shFunction('_dsk_arg', '$1|$2', e.args)].join('\n');
}

function fishFunction(name: string, key: string, list: Entry[]): string {
  // fish globs an unquoted * against files; inside quotes, case still treats it as a wildcard
  const arms = list.map(([p, out]) => `    case ${lit(p)}\n      echo ${lit(out)}`).join('\n');
  return `function ${name}\n  switch "${key}"\n${arms}\n    case '*'\n      return 1\n  end\nend\n`;
}

/** fish: __dsk_subs PATH, __dsk_opts PATH, __dsk_value PATH OPTION, __dsk_arg PATH INDEX. */
export function fishTables(nodes: CompletionNode[]): string {
  const e = entries(nodes);
  return [fishFunction('__dsk_subs', '$argv[1]', e.subs), fishFunction('__dsk_opts', '$argv[1]', e.opts), fishFunction('__dsk_value', '$argv[1]|$argv[2]', e.values), fishFunction('__dsk_arg', '$argv[1]|$argv[2]', e.args)].join('\n');
}
