import { Argument, type Command } from 'commander';
import { ctxOf } from '../context.js';
import { buildProgram, COMMANDS } from '../main.js';
import { completionModel, DYNAMIC_SOURCES, SHELLS, type Shell } from '../completion/model.js';
import { completionScript } from '../completion/scripts.js';
import { completionCandidates, type CandidateSource } from '../../app/completion.js';

const EXAMPLES = `
Commands, subcommands, options and their values complete from the script; key ids, roles and
operators are read from the home (--home, DSK_HOME or ~/.dsk) at TAB time, without unsealing.

Examples:
  source <(dsk completion bash)                                   # bash, this shell
  dsk completion bash | sudo tee /etc/bash_completion.d/dsk       # bash, every shell
  dsk completion zsh > "\${fpath[1]}/_dsk"                          # zsh (then compinit)
  dsk completion fish > ~/.config/fish/completions/dsk.fish       # fish`;

/** A fresh program with every command registered, in help order: completion needs the whole tree. */
async function fullTree(): Promise<Command> {
  const program = buildProgram();
  const loaded = new Set<unknown>();
  for (const c of Object.values(COMMANDS)) {
    if (loaded.has(c.load)) continue;
    loaded.add(c.load);
    (await c.load()).register(program);
  }
  return program;
}

export function register(program: Command): void {
  program
    .command('completion')
    .description('print a shell completion script (bash, zsh or fish)')
    .addArgument(new Argument('<shell>', 'the shell').choices(SHELLS))
    .addHelpText('after', EXAMPLES)
    .action(async (shell: Shell) => {
      process.stdout.write(completionScript(shell, completionModel(await fullTree())));
    });
  program
    .command('__complete', { hidden: true })
    .description('candidates for the completion scripts: one per line, value and description separated by a tab')
    .addArgument(new Argument('<source>').choices(DYNAMIC_SOURCES))
    .action(async (source: CandidateSource, _o, cmd: Command) => {
      const lines = await completionCandidates(ctxOf(cmd).home, source);
      if (lines.length) process.stdout.write(lines.join('\n') + '\n');
    });
}
