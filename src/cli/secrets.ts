/**
 * The one place that reads secret inputs: files named by flags ('-' is stdin), files listed in
 * DSK_PASSPHRASE_FILES, DSK_HSM_PIN, systemd credentials ($CREDENTIALS_DIRECTORY: passphrase-*
 * and hsm-pin, from LoadCredential= in the unit of `dsk service print`), or a masked prompt on a
 * terminal, in that order. Never argv. With no terminal and no source, fail at once instead of
 * waiting on a prompt (cron must not hang).
 */
import fs from 'node:fs';
import path from 'node:path';
import { CREDENTIAL_PASSPHRASE_PREFIX, CREDENTIAL_PIN } from '../domain/service-unit.js';
import { AuthError, UsageError } from '../kernel/errors.js';
import { assertPrivate, ioError } from '../kernel/files.js';
import type { Passphrase } from '../master/fragments.js';
import type { UnsealInputs } from '../master/unseal.js';

let stdinUsed = false;

function stripNewline(b: Buffer): Buffer {
  let end = b.length;
  if (end && b[end - 1] === 0x0a) end--;
  if (end && b[end - 1] === 0x0d) end--;
  return b.subarray(0, end);
}

/**
 * Reads a secret from a file ('-' = stdin), refusing files others can read. A trailing newline is
 * dropped (editors add one to passphrase files) unless `raw`: binary key material is taken as is,
 * since a random key ends in 0x0a one time in 256.
 */
export function readSecretFile(file: string, what: string, opts: { raw?: boolean } = {}): Buffer {
  const trim = (b: Buffer) => (opts.raw ? b : stripNewline(b));
  if (file === '-') {
    if (stdinUsed) throw new UsageError('ERR_STDIN_TWICE', `only one secret can come from stdin ('-')`);
    stdinUsed = true;
    const data = trim(fs.readFileSync(0));
    if (!data.length) throw new UsageError('ERR_SECRET_EMPTY', `${what} from stdin is empty`);
    return data;
  }
  try {
    assertPrivate(file, 'file');
    const data = trim(fs.readFileSync(file));
    if (!data.length) throw new UsageError('ERR_SECRET_EMPTY', `${what} file ${file} is empty`);
    return data;
  } catch (e) {
    if ((e as { exitCode?: number }).exitCode) throw e;
    throw ioError(e, file);
  }
}

export function canPrompt(): boolean {
  return !!process.stdin.isTTY && !!process.stderr.isTTY;
}

async function promptSecret(message: string): Promise<Buffer> {
  const { default: password } = await import('@inquirer/password');
  const v = await password({ message, mask: '*' }, { output: process.stderr });
  return Buffer.from(v);
}

export async function promptNewPassphrase(label: string): Promise<Buffer> {
  for (;;) {
    const a = await promptSecret(`${label} passphrase:`);
    const b = await promptSecret(`${label} passphrase (again):`);
    if (a.equals(b)) {
      b.fill(0);
      return a;
    }
    process.stderr.write('dsk: the two entries differ; try again\n');
  }
}

export function passphraseFilesFrom(flags: string[] | undefined): string[] {
  if (flags?.length) return flags;
  const env = process.env.DSK_PASSPHRASE_FILES;
  return env ? env.split(':').filter(Boolean) : credentialFiles().filter((f) => path.basename(f).startsWith(CREDENTIAL_PASSPHRASE_PREFIX));
}

/** The files systemd placed in $CREDENTIALS_DIRECTORY for this service, sorted by name ([] outside systemd). */
function credentialFiles(): string[] {
  const dir = process.env.CREDENTIALS_DIRECTORY;
  if (!dir) return [];
  try {
    return fs.readdirSync(dir).sort().map((f) => path.join(dir, f));
  } catch (e) {
    throw ioError(e, dir);
  }
}

export function passphrasesFromFiles(files: string[]): Passphrase[] {
  return files.map((f) => ({ source: f === '-' ? 'stdin' : `file ${f}`, value: readSecretFile(f, 'passphrase') }));
}

export interface SecretFlags {
  passphraseFile?: string[];
  pinFile?: string;
  fragmentDir?: string[];
}

/** Unseal inputs from flags, environment or prompts, asked for only when the backend needs them. */
export function unsealInputs(flags: SecretFlags): UnsealInputs {
  return {
    fragmentDirs: flags.fragmentDir ?? [],
    async passphrases(threshold, shares) {
      const files = passphraseFilesFrom(flags.passphraseFile);
      if (files.length) return passphrasesFromFiles(files);
      if (!canPrompt())
        throw new AuthError('ERR_NO_PASSPHRASE', `unsealing needs ${threshold} of ${shares} custodian passphrases and there is no terminal to ask on`, { hint: 'use --passphrase-file (repeatable), DSK_PASSPHRASE_FILES=f1:f2:f3, or LoadCredential=passphrase-1:FILE … under systemd' });
      const out: Passphrase[] = [];
      for (let i = 1; i <= threshold; i++) out.push({ source: `prompt #${i}`, value: await promptSecret(`custodian passphrase ${i} of ${threshold}:`) });
      return out;
    },
    async pin() {
      if (flags.pinFile) return readSecretFile(flags.pinFile, 'PIN');
      if (process.env.DSK_HSM_PIN) return Buffer.from(process.env.DSK_HSM_PIN);
      const credential = credentialFiles().find((f) => path.basename(f) === CREDENTIAL_PIN);
      if (credential) return readSecretFile(credential, 'PIN');
      if (!canPrompt()) throw new AuthError('ERR_NO_PIN', 'the HSM needs its user PIN and there is no terminal to ask on', { hint: 'use --pin-file FILE or DSK_HSM_PIN' });
      return promptSecret('HSM user PIN:');
    },
  };
}

/** Adds the unseal flags to a command. */
export function withUnsealOptions<T extends import('commander').Command>(cmd: T): T {
  cmd
    .option('--passphrase-file <file>', "a custodian's passphrase file ('-' = stdin); repeat for each custodian", collect, [])
    .option('--pin-file <file>', "file holding the HSM user PIN ('-' = stdin)")
    .option('--fragment-dir <dir>', 'another directory to look for fragments in (repeatable)', collect, []);
  return cmd;
}

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
