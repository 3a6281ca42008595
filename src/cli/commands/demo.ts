/**
 * dsk demo: the whole lifecycle in a throwaway home, non-interactive, in seconds. Each step
 * (src/cli/demo/) calls the same functions the commands use and prints the equivalent command line.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { ctxOf, type Ctx } from '../context.js';
import { paint, printJson } from '../render.js';
import { keyView, listKeys, verifyKeyText } from '../../app/keys.js';
import { parseApiKey } from '../../domain/key-text.js';
import { writePrivateFile } from '../../kernel/files.js';
import { sayer, type DemoContext } from '../demo/context.js';
import { DEMO_STEPS } from '../demo/steps.js';

export function register(program: Command): void {
  program
    .command('demo')
    .description('run the whole key lifecycle in a throwaway home and explain each step')
    .option('--keep', 'keep the demo home and print where it is')
    .addHelpText('after', '\nExamples:\n  dsk demo\n  dsk demo --keep')
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const summary = await runDemo(ctx, !!o.keep);
      if (ctx.json) printJson(summary);
    });
}

export async function runDemo(ctx: Ctx, keep: boolean) {
  const c = paint(ctx);
  const say = sayer(ctx);
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-demo-'));
  fs.chmodSync(root, 0o700);
  const home = path.join(root, 'home');
  const env = ctx.env;
  // Custodian passphrases, as five people would each keep their own.
  const passphraseFiles = ['alice', 'bob', 'carol', 'dave', 'erin'].map((who) => {
    const f = path.join(root, `${who}.pass`);
    writePrivateFile(f, `${who}-demo-passphrase-${env.random(6).toString('hex')}\n`);
    return f;
  });
  const d: DemoContext = {
    ctx,
    c,
    say,
    root,
    home,
    passphraseFiles,
    h: undefined as unknown as DemoContext['h'], // set by the unseal step
    keys: {},
    summary: { home },
    // What the gateway does per request, with a store lookup in place of its in-memory index.
    async present(text) {
      const p = parseApiKey(text);
      const row = p.ok ? await d.h.store.keys.get(p.id) : undefined;
      const r = verifyKeyText(text, () => row, env.clock.now());
      return r.ok ? 'accepted' : `refused (${r.code})`;
    },
  };
  try {
    let n = 0;
    for (const step of DEMO_STEPS) {
      say('');
      say(c.bold.cyan(`${++n}. ${step.title}`));
      say(c.dim(`   $ ${typeof step.command === 'string' ? step.command : step.command(d)}`));
      await step.run(d);
    }
    d.summary.final_keys = (await listKeys(d.h)).map(keyView);
    say('');
    say(keep ? `${c.green('✓')} demo home kept at ${home} (passphrase files beside it)` : `${c.green('✓')} done; the demo home was removed. Try it for real: dsk init --help`);
    return d.summary;
  } finally {
    await d.h?.close();
    if (!keep) fs.rmSync(root, { recursive: true, force: true });
  }
}
