import { Option, type Command } from 'commander';
import { ctxOf } from '../context.js';
import { paint, printJson, line } from '../render.js';
import { canPrompt, collect, passphrasesFromFiles, passphraseFilesFrom, promptNewPassphrase } from '../secrets.js';
import { initSoftwareHome, assertNoHome } from '../../app/home.js';
import fs from 'node:fs';
import path from 'node:path';
import { AuthError, NotFoundError, UsageError } from '../../kernel/errors.js';
import type { StoreConfig } from '../../domain/config.js';
import { checkNewStore, redactedStore } from '../../store/open.js';
import { initJoin } from './init-join.js';
import { parsePositiveInt } from '../../kernel/duration.js';
import type { Passphrase } from '../../master/fragments.js';
import type { Ctx } from '../context.js';
import { unsealInputs } from '../secrets.js';

/** --store and --store-password-file, checked before any I/O. */
function storeFlags(o: Record<string, any>): StoreConfig | undefined {
  if (o.store === undefined) {
    if (o.storePasswordFile !== undefined) throw new UsageError('ERR_FLAGS_TOGETHER', '--store-password-file goes with --store or --join');
    return undefined;
  }
  redactedStore(o.store);
  const file = o.storePasswordFile === undefined ? undefined : path.resolve(o.storePasswordFile);
  if (file && !fs.existsSync(file)) throw new NotFoundError('ERR_PASSWORD_FILE_MISSING', `--store-password-file: ${file} does not exist`);
  return { url: o.store, ...(file ? { password_file: file } : {}) };
}

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

async function initHsm(ctx: Ctx, o: Record<string, any>, cmd: Command, store: StoreConfig | undefined): Promise<void> {
  for (const f of ['shares', 'threshold'])
    if (cmd.getOptionValueSource(f) === 'cli') throw new UsageError('ERR_FLAG_BACKEND', `--${f} is for the software backend`, { hint: 'with --backend pkcs11 use --recovery-shares and --recovery-threshold' });
  if (!o.pkcs11Module) throw new UsageError('ERR_FLAG_MISSING', '--backend pkcs11 needs --pkcs11-module PATH', { hint: 'e.g. --pkcs11-module /usr/lib/softhsm/libsofthsm2.so' });
  if (!o.tokenLabel) throw new UsageError('ERR_FLAG_MISSING', '--backend pkcs11 needs --token-label LABEL', { hint: 'list the tokens with: dsk hsm info --pkcs11-module PATH' });
  if ((o.recoveryShares === undefined) !== (o.recoveryThreshold === undefined)) throw new UsageError('ERR_FLAGS_TOGETHER', 'give both --recovery-shares and --recovery-threshold, or neither');
  const { initPkcs11Home, validateLabels } = await import('../../app/hsm.js');
  validateLabels(o.tokenLabel, o.keyLabel);
  if (store) await checkNewStore(store);
  let recovery;
  let passphrases: Passphrase[] = [];
  if (o.recoveryShares !== undefined) {
    const shares = parsePositiveInt(o.recoveryShares, '--recovery-shares', 255);
    const threshold = parsePositiveInt(o.recoveryThreshold, '--recovery-threshold', 255);
    const kdfCost = o.kdfCost === undefined ? undefined : parsePositiveInt(o.kdfCost, '--kdf-cost');
    assertNoHome(ctx.home);
    const files = passphraseFilesFrom(o.passphraseFile);
    if (files.length) passphrases = passphrasesFromFiles(files);
    else if (canPrompt()) {
      for (let i = 1; i <= shares; i++) passphrases.push({ source: `prompt #${i}`, value: await promptNewPassphrase(`recovery custodian ${i} of ${shares}`) });
    } else throw new AuthError('ERR_NO_PASSPHRASE', `recovery needs ${shares} custodian passphrases and there is no terminal to ask on`, { hint: 'give --passphrase-file once per custodian' });
    recovery = { shares, threshold, passphrases, fragmentDirs: o.fragmentDir, kdf: o.kdf, kdfCost };
  } else {
    if (o.passphraseFile.length || o.fragmentDir.length || o.kdfCost !== undefined || cmd.getOptionValueSource('kdf') === 'cli')
      throw new UsageError('ERR_FLAG_BACKEND', '--passphrase-file, --fragment-dir and --kdf/--kdf-cost need --recovery-shares with --backend pkcs11');
    assertNoHome(ctx.home);
  }
  const inputs = unsealInputs({ pinFile: o.pinFile });
  let r;
  try {
    r = await initPkcs11Home({ home: ctx.home, module: o.pkcs11Module, tokenLabel: o.tokenLabel, keyLabel: o.keyLabel, pin: () => inputs.pin(), recovery, store }, ctx.env);
  } finally {
    for (const p of passphrases) p.value.fill(0);
  }
  if (ctx.json) return printJson(r);
  const c = paint(ctx);
  line(`${c.green('✓')} created ${c.bold(r.home)} (pkcs11 backend, token '${r.token_label}', key '${r.key_label}', ${r.origin} in the token)`);
  line(`  module ${r.module}`);
  line(`  key check value ${r.key_check_value}`);
  if (r.recovery) for (const f of r.recovery.fragments) line(`  recovery fragment ${f}`);
  line('');
  line('Next:');
  if (r.recovery) line(`  - hand each recovery fragment to its custodian; any ${r.recovery.threshold} can rebuild the key into a new token (dsk hsm recover)`);
  else line(`  - the key exists only in this token: back the token up with the vendor's tools, or losing it loses every key`);
  line('  - issue a key: dsk keygen --name my-service --role developer   (PIN from --pin-file, DSK_HSM_PIN or a prompt)');
}

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
    .option('--pkcs11-module <path>', 'pkcs11: the PKCS#11 library (e.g. /usr/lib/softhsm/libsofthsm2.so)')
    .option('--token-label <label>', 'pkcs11: the label of the token to hold the master key (slots are found by label)')
    .option('--key-label <label>', 'pkcs11: the label of the master key object', 'dsk-master')
    .option('--pin-file <file>', "pkcs11: file holding the token's user PIN ('-' = stdin; else DSK_HSM_PIN or a prompt)")
    .option('--recovery-shares <n>', 'pkcs11: also write N Shamir recovery fragments (the key is then made outside the token once)')
    .option('--recovery-threshold <k>', 'pkcs11: recovery fragments needed to rebuild the key (K)')
    .option('--store <url>', 'keep keys and the audit chain in PostgreSQL: postgres://USER@HOST:PORT/DB (password never in the address)')
    .option('--store-password-file <file>', 'file holding the PostgreSQL password (else PGPASSWORD, PGPASSFILE or ~/.pgpass)')
    .option('--join <url>', 'add this node to the home kept in that PostgreSQL store (its own copy of the fragments: --fragments-from)')
    .option('--fragments-from <dir>', 'with --join: a copy of the home\'s key_fragments directory (metadata.json and fragment files)')
    .addOption(new Option('--recover').hideHelp())
    .addHelpText(
      'after',
      `
Examples:
  dsk init --home ~/.dsk --shares 5 --threshold 3 \\
    --passphrase-file alice.pass --passphrase-file bob.pass --passphrase-file carol.pass \\
    --passphrase-file dave.pass --passphrase-file erin.pass
  dsk init --shares 3 --threshold 2 --fragment-dir /mnt/node-a --fragment-dir /mnt/node-b   # prompts on a TTY
  dsk init --backend pkcs11 --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label dsk --pin-file pin.txt
  PGPASSFILE=~/.pgpass dsk init --store postgres://dsk@db.internal:5432/dsk --passphrase-file …   # shared store
  dsk init --join postgres://dsk@db.internal:5432/dsk --fragments-from /mnt/copy/key_fragments  # a second node
  DSK_HSM_PIN=... dsk init --backend pkcs11 --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label dsk \
    --recovery-shares 3 --recovery-threshold 2 --passphrase-file a.pass --passphrase-file b.pass --passphrase-file c.pass

With --backend pkcs11 the key is generated inside the token and never leaves it; without recovery
flags there is no other copy: lose the token, lose every key (see docs/hsm.md).`,
    )
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      if (o.recover)
        throw new UsageError('ERR_INIT_RECOVER', 'init creates a new home; to rebuild a lost token key use dsk hsm recover', { hint: 'run it on the existing home: dsk --home DIR hsm recover --token-label NEW --passphrase-file … (docs/hsm.md)' });
      if (o.join !== undefined) return initJoin(ctx, o, cmd);
      if (o.fragmentsFrom !== undefined) throw new UsageError('ERR_FLAGS_TOGETHER', '--fragments-from goes with --join');
      const store = storeFlags(o);
      if (o.backend === 'pkcs11') return initHsm(ctx, o, cmd, store);
      if (o.backend !== 'software') throw new UsageError('ERR_BACKEND_UNKNOWN', `unknown --backend '${o.backend}'`, { hint: 'use software or pkcs11' });
      for (const f of ['pkcs11Module', 'tokenLabel', 'pinFile', 'recoveryShares', 'recoveryThreshold'])
        if (o[f] !== undefined) throw new UsageError('ERR_FLAG_BACKEND', `--${kebab(f)} needs --backend pkcs11`);
      const shares = parsePositiveInt(o.shares, '--shares', 255);
      const threshold = parsePositiveInt(o.threshold, '--threshold', 255);
      const kdfCost = o.kdfCost === undefined ? undefined : parsePositiveInt(o.kdfCost, '--kdf-cost');
      assertNoHome(ctx.home);
      if (store) await checkNewStore(store);
      const files = passphraseFilesFrom(o.passphraseFile);
      let passphrases: Passphrase[];
      if (files.length) passphrases = passphrasesFromFiles(files);
      else if (canPrompt()) {
        passphrases = [];
        for (let i = 1; i <= shares; i++) passphrases.push({ source: `prompt #${i}`, value: await promptNewPassphrase(`custodian ${i} of ${shares}`) });
      } else throw new AuthError('ERR_NO_PASSPHRASE', `init needs ${shares} custodian passphrases and there is no terminal to ask on`, { hint: 'give --passphrase-file once per custodian' });
      const r = await initSoftwareHome({ home: ctx.home, shares, threshold, passphrases, fragmentDirs: o.fragmentDir, kdf: o.kdf, kdfCost, store }, ctx.env);
      for (const p of passphrases) p.value.fill(0);
      if (ctx.json) return printJson(r);
      const c = paint(ctx);
      line(`${c.green('✓')} created ${c.bold(r.home)} (software backend, ${r.threshold}-of-${r.shares} Shamir fragments)`);
      for (const f of r.fragments) line(`  fragment ${f}`);
      line(`  key check value ${r.key_check_value}`);
      if (r.store !== 'sqlite') line(`  store ${r.store}`);
      line('');
      line('Next:');
      line(`  - hand each fragment file to its custodian (or keep them on separate machines); any ${r.threshold} unseal`);
      line('  - back up key_fragments/metadata.json with the home; it holds no secret');
      if (r.store !== 'sqlite') line(`  - add another node: copy key_fragments/ to it, then dsk init --join ${r.store} --fragments-from DIR`);
      line('  - issue a key: dsk keygen --name my-service --role developer');
      line(`  - turn on operator checks, with you as the first admin: dsk operator add ${ctx.actor} --role admin`);
    });
}
