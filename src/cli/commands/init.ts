import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { paint, printJson, line } from '../render.js';
import { canPrompt, collect, passphrasesFromFiles, passphraseFilesFrom, promptNewPassphrase } from '../secrets.js';
import { initSoftwareHome, assertNoHome } from '../../core/home.js';
import { AuthError, UsageError } from '../../core/errors.js';
import { parsePositiveInt } from '../../core/duration.js';
import type { Passphrase } from '../../master/fragments.js';

export function register(program: Command): void {
  program
    .command('init')
    .description('create a home: a 256-bit master key split into K-of-N sealed Shamir fragments (or in a PKCS#11 HSM)')
    .option('--backend <kind>', 'software (Shamir fragments) or pkcs11 (HSM)', 'software')
    .option('--shares <n>', 'number of fragments / custodians (N)', '5')
    .option('--threshold <k>', 'fragments needed to unseal (K)', '3')
    .option('--passphrase-file <file>', "custodian passphrase file, once per fragment in order ('-' = stdin)", collect, [])
    .option('--fragment-dir <dir>', 'write fragments to these directories, round-robin (repeatable)', collect, [])
    .option('--kdf <name>', 'passphrase KDF: pbkdf2 (PBKDF2-HMAC-SHA256) or scrypt', 'pbkdf2')
    .option('--kdf-cost <n>', 'pbkdf2 iterations (>= 600000) or scrypt log2(N) (15..20)')
    .addHelpText(
      'after',
      `
Examples:
  dsk init --home ~/.dsk --shares 5 --threshold 3 \\
    --passphrase-file alice.pass --passphrase-file bob.pass --passphrase-file carol.pass \\
    --passphrase-file dave.pass --passphrase-file erin.pass
  dsk init --shares 3 --threshold 2 --fragment-dir /mnt/node-a --fragment-dir /mnt/node-b   # prompts on a TTY`,
    )
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      if (o.backend !== 'software') {
        if (o.backend === 'pkcs11') throw new UsageError('the pkcs11 backend is not available in this build', undefined, 'ERR_BACKEND');
        throw new UsageError(`unknown --backend '${o.backend}'`, 'use software or pkcs11');
      }
      const shares = parsePositiveInt(o.shares, '--shares', 255);
      const threshold = parsePositiveInt(o.threshold, '--threshold', 255);
      const kdfCost = o.kdfCost === undefined ? undefined : parsePositiveInt(o.kdfCost, '--kdf-cost');
      assertNoHome(ctx.home);
      const files = passphraseFilesFrom(o.passphraseFile);
      let passphrases: Passphrase[];
      if (files.length) passphrases = passphrasesFromFiles(files);
      else if (canPrompt()) {
        passphrases = [];
        for (let i = 1; i <= shares; i++) passphrases.push({ source: `prompt #${i}`, value: await promptNewPassphrase(`custodian ${i} of ${shares}`) });
      } else throw new AuthError('ERR_NO_PASSPHRASE', `init needs ${shares} custodian passphrases and there is no terminal to ask on`, 'give --passphrase-file once per custodian');
      const r = await initSoftwareHome({ home: ctx.home, shares, threshold, passphrases, fragmentDirs: o.fragmentDir, kdf: o.kdf, kdfCost }, ctx.env);
      for (const p of passphrases) p.value.fill(0);
      if (ctx.json) return printJson(r);
      const c = paint(ctx);
      line(`${c.green('✓')} created ${c.bold(r.home)} (software backend, ${r.threshold}-of-${r.shares} Shamir fragments)`);
      for (const f of r.fragments) line(`  fragment ${f}`);
      line(`  key check value ${r.key_check_value}`);
      line('');
      line('Next:');
      line(`  - hand each fragment file to its custodian (or keep them on separate machines); any ${r.threshold} unseal`);
      line('  - back up key_fragments/metadata.json with the home; it holds no secret');
      line('  - issue a key: dsk keygen --name my-service --role developer');
      line(`  - turn on operator checks, with you as the first admin: dsk operator add ${ctx.actor} --role admin`);
    });
}
