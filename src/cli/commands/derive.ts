import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { line, printJson } from '../render.js';
import { readSecretFile } from '../secrets.js';
import { generateApiKey } from '../../domain/derivation.js';
import { UsageError } from '../../kernel/errors.js';

export function register(program: Command): void {
  program
    .command('derive')
    .description("compute the seed's generate_api_key(master_key, salt) bit-for-bit, as a reference")
    .requiredOption('--master-key-file <file>', "file holding the raw master key bytes ('-' = stdin); see --hex")
    .requiredOption('--salt <hex>', 'the salt, in hex')
    .option('--hex', 'the master key file holds hex text rather than raw bytes')
    .addHelpText(
      'after',
      `
Example:
  head -c 32 /dev/urandom > mk.bin && chmod 600 mk.bin
  dsk derive --master-key-file mk.bin --salt 00112233445566778899aabbccddeeff

Equivalent Python (the seed's function):
  PBKDF2HMAC(SHA256, length=32, salt=salt, iterations=100000).derive(master_key)
  then hmac.new(key, b'deepseek_api_key', sha256).hexdigest()`,
    )
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      if (!/^([0-9a-fA-F]{2})*$/.test(o.salt)) throw new UsageError('ERR_SALT_HEX', `--salt must be hex (an even number of 0-9a-f characters)`);
      const salt = Buffer.from(o.salt, 'hex');
      let mk = readSecretFile(o.masterKeyFile, 'master key', { raw: !o.hex });
      if (o.hex) {
        const t = mk.toString().trim();
        if (!/^([0-9a-fA-F]{2})+$/.test(t)) throw new UsageError('ERR_MASTER_KEY_HEX', '--hex given but the master key file is not hex');
        mk.fill(0);
        mk = Buffer.from(t, 'hex');
      }
      const out = await generateApiKey(mk, salt);
      mk.fill(0);
      if (ctx.json) return printJson({ salt: salt.toString('hex'), api_key: out });
      line(out);
    });
}
