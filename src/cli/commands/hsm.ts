import fs from 'node:fs';
import path from 'node:path';
import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { line, paint, printJson, table } from '../render.js';
import { canPrompt, readSecretFile, unsealInputs, withUnsealOptions } from '../secrets.js';
import { homePath } from '../../kernel/home-layout.js';
import { loadConfig } from '../../store/config-file.js';
import { UsageError } from '../../kernel/errors.js';
import { withSealedHome } from '../session.js';

export function register(program: Command): void {
  const hsm = program
    .command('hsm')
    .description('inspect the PKCS#11 module and token; recover the master key into a token')
    .addHelpText('after', '\nExamples:\n  dsk hsm info --json\n  dsk hsm recover --token-label dsk-new --passphrase-file a.pass --passphrase-file b.pass\n\nSee docs/hsm.md.');
  hsm
    .command('info')
    .description('module version, tokens, supported mechanisms, and the master key object and its attributes')
    .option('--pkcs11-module <path>', "the PKCS#11 library (default: the home's master_key.hsm)")
    .option('--token-label <label>', "the token to inspect (default: the home's)")
    .option('--key-label <label>', "the master key label to look for (default: the home's, else dsk-master)")
    .option('--pin-file <file>', "file holding the user PIN ('-' = stdin), to look at the key object (else DSK_HSM_PIN)")
    .addHelpText(
      'after',
      `
Examples:
  dsk hsm info                                   # the home's module and token; key checked if DSK_HSM_PIN is set
  dsk hsm info --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --json
  dsk hsm info --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label dsk --pin-file pin.txt`,
    )
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      let module = o.pkcs11Module as string | undefined;
      let tokenLabel = o.tokenLabel as string | undefined;
      let keyLabel = o.keyLabel as string | undefined;
      let origin: string | undefined;
      // Defaults come from the home's master_key.hsm when it describes the same module.
      if (fs.existsSync(homePath(ctx.home, 'config')) && loadConfig(ctx.home).backend === 'pkcs11') {
        const { readHsmFile } = await import('../../master/pkcs11/backend.js');
        const f = readHsmFile(ctx.home);
        if (!module || path.resolve(module) === f.module) {
          module = f.module;
          tokenLabel ??= f.token_label;
          keyLabel ??= f.key_label;
          if (tokenLabel === f.token_label && keyLabel === f.key_label) origin = f.origin;
        }
      }
      if (!module) throw new UsageError('ERR_NO_MODULE', 'no PKCS#11 module: give --pkcs11-module PATH (or --home of a pkcs11 home)');
      const pin = async () => {
        if (o.pinFile) return readSecretFile(o.pinFile, 'PIN');
        if (process.env.DSK_HSM_PIN) return Buffer.from(process.env.DSK_HSM_PIN);
        if (canPrompt()) return unsealInputs({}).pin();
        return null;
      };
      const { hsmInfo } = await import('../../master/pkcs11/backend.js');
      const info = await hsmInfo({ module, tokenLabel, keyLabel, pin });
      if (origin) info.key_origin = origin;
      if (ctx.json) return printJson(info);
      const c = paint(ctx);
      const lib = info.library as Record<string, string>;
      line(`${c.bold('module')}    ${info.module}`);
      line(`${c.bold('library')}   ${lib.library_description} ${lib.library_version} (${lib.manufacturer}, Cryptoki ${lib.cryptoki_version})`);
      const toks = info.tokens as Array<Record<string, any>>;
      line(
        table(
          ctx,
          ['slot', 'token label', 'model', 'serial', 'CKM_SHA256_HMAC', 'CKM_GENERIC_SECRET_KEY_GEN', 'pin'],
          toks.map((t) => [t.slot_id, t.label, t.model, t.serial, yes(t.mechanisms.CKM_SHA256_HMAC), yes(t.mechanisms.CKM_GENERIC_SECRET_KEY_GEN), t.user_pin_locked ? 'LOCKED' : t.user_pin_final_try ? 'final try' : 'ok']),
        ),
      );
      const key = info.key as Record<string, any> | undefined;
      if (!key) return line(c.dim('(give --token-label to look for the master key)'));
      if (!key.checked) return line(`${c.bold('key')}       '${key.label}': not checked: ${key.reason}; give --pin-file or DSK_HSM_PIN`);
      if (!key.present) return line(`${c.bold('key')}       '${key.label}': ${c.red('not present')} in token '${info.token_label}'`);
      const a = key.attributes as Record<string, unknown>;
      line(`${c.bold('key')}       '${key.label}' id ${a.id} ${a.key_type} ${a.value_len} bytes${origin ? `, origin ${origin}` : ''}`);
      line(
        `          ${['token', 'private', 'sensitive', 'extractable', 'always_sensitive', 'never_extractable', 'sign', 'verify', 'encrypt', 'decrypt', 'wrap', 'unwrap', 'derive']
          .map((k) => `${k}=${a[k] ? 'yes' : 'no'}`)
          .join(' ')}`,
      );
    });

  withUnsealOptions(
    hsm
      .command('recover')
      .description("rebuild a pkcs11 home's master key from K recovery fragments into a token (after the token was lost or reset)")
      .option('--pkcs11-module <path>', 'the PKCS#11 library of the new token (default: as in master_key.hsm)')
      .option('--token-label <label>', 'the label of the new token (default: as in master_key.hsm)')
      .option('--key-label <label>', 'the label for the key object (default: as in master_key.hsm)'),
  )
    .addHelpText(
      'after',
      `
Examples:
  softhsm2-util --init-token --free --label dsk-new ...     # or your HSM vendor's tool
  DSK_HSM_PIN=... dsk hsm recover --token-label dsk-new --passphrase-file a.pass --passphrase-file b.pass

The home keeps its keys.db and audit log; master_key.hsm is updated to point at the new token.
Every key issued before still verifies, because the rebuilt master key is the same.`,
    )
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const { recoverHsmHome } = await import('../../app/hsm.js');
      // Not withUnsealed: the token that would unseal is the one being replaced (see withSealedHome).
      const r = await withSealedHome(ctx, { permission: 'admin', sensitive: true }, (h, approve) =>
        recoverHsmHome(h, { module: o.pkcs11Module, tokenLabel: o.tokenLabel, keyLabel: o.keyLabel, inputs: unsealInputs(o), authorize: approve }),
      );
      if (ctx.json) return printJson(r);
      const c = paint(ctx);
      line(`${c.green('✓')} restored the master key of ${r.home} into token '${r.token_label}' as '${r.key_label}' (id ${r.key_id}, key check value ${r.key_check_value})`);
      line('  master_key.hsm now points at this token; keys issued before keep working');
      line('  the key object is imported (CKA_NEVER_EXTRACTABLE is false); dsk hsm info reports its origin');
    });
}

function yes(b: boolean): string {
  return b ? 'yes' : 'NO';
}
