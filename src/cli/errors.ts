/**
 * The one place an error becomes output and an exit code. Lower layers throw DskError with a
 * stable code and a message that names no flag; this module adds the flag a code is about (so
 * `--threshold` is the CLI's word, not the master-key layer's) and prints
 *
 *   dsk: error: <message>          dsk: hint: <next step>
 *
 * or, under --json, one line on stderr: {"error":{"code","message","hint"}}. The stack (and the
 * chain of causes) only with DSK_DEBUG=1.
 */
import { CommanderError } from 'commander';
import { ExitCode, isDskError, type DskError } from '../kernel/errors.js';

/** The flag whose value a lower layer refused, by error code. */
export const FLAG_OF_CODE: Record<string, string> = {
  ERR_SHARES: '--shares',
  ERR_THRESHOLD: '--threshold',
  ERR_KDF_COST: '--kdf-cost',
  ERR_KDF_UNKNOWN: '--kdf',
  ERR_TOKEN_LABEL: '--token-label',
  ERR_KEY_LABEL: '--key-label',
  ERR_FRAGMENT_DIR: '--fragment-dir',
  ERR_KEY_NAME: '--name',
  ERR_GRACE: '--grace',
  ERR_SCHEDULE_TOO_SHORT: '--every',
  ERR_SCHEDULE_UNEVEN: '--every',
  ERR_TOKEN_TTL: '--ttl',
  ERR_CIDR: '--ip',
  ERR_ACTION: '--action',
  ERR_PASSPHRASE_COUNT: '--passphrase-file',
  ERR_EMERGENCY_TARGET_MISSING: '--emergency',
  ERR_EMERGENCY_TARGET_MANY: '--emergency',
  ERR_RECIPIENT: '--recipient',
  ERR_IDENTITY: '--identity',
};

/** Hints that name flags, replacing the lower layer's neutral one. */
const HINT_OF_CODE: Record<string, string> = {
  ERR_PASSPHRASE_COUNT: 'give --passphrase-file once per custodian',
  ERR_EMERGENCY_TARGET_MISSING: 'give --all, key ids, --role R or --owner O; for example: dsk rotate --emergency --role automation',
  ERR_EMERGENCY_TARGET_MANY: 'give only one of --all, key ids, --role or --owner',
  ERR_HOME_EXISTS: 'choose another --home, or remove it if you really mean to start over',
  ERR_FRAGMENT_MISSING: "pass --fragment-dir DIR where the missing fragments are now, or another custodian's passphrase",
  ERR_WRONG_IDENTITY: 'give --identity FILE: the age identity whose public key the backup was encrypted to',
  ERR_BACKUP_ENCRYPTED: 'add --identity FILE: the age identity whose public key the backup was encrypted to',
  ERR_NO_UPSTREAM: 'for example --upstream http://127.0.0.1:11434',
  ERR_UPSTREAM_USERINFO: "give --upstream without user:pass@, and the upstream's own key in a file named by --upstream-key-file",
  ERR_TLS: 'check that --tls-cert and --tls-key (or gateway.tls_cert and gateway.tls_key in dsk.json) are PEM files that belong together',
};

/** A flag-naming hint for the error, else for the failure that caused it (ERR_UNSEAL with fragments missing). */
function hintOf(e: DskError): string | undefined {
  const cause = (e as { cause?: unknown }).cause;
  return HINT_OF_CODE[e.code] ?? (isDskError(cause) ? HINT_OF_CODE[cause.code] : undefined);
}

export interface Reported {
  code: string;
  message: string;
  hint: string | null;
}

export function describeError(e: DskError): Reported {
  const flag = FLAG_OF_CODE[e.code];
  return { code: e.code, message: flag ? `${flag}: ${e.message}` : e.message, hint: hintOf(e) ?? e.hint ?? null };
}

function causes(e: unknown): string {
  let out = '';
  for (let c = (e as { cause?: unknown })?.cause, depth = 0; c !== undefined && depth < 5; c = (c as { cause?: unknown })?.cause, depth++)
    out += `caused by: ${(c as Error)?.stack ?? String(c)}\n`;
  return out;
}

/** Prints `e` for a person or a script and returns the exit code. */
export function reportError(e: unknown, json = false): number {
  const debug = process.env.DSK_DEBUG === '1';
  if (e instanceof CommanderError) {
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.exitCode === 0) return ExitCode.OK;
    // commander already printed its message for a person; a script gets the JSON line too
    if (json) write({ code: 'ERR_USAGE', message: e.message.replace(/^error: /, ''), hint: 'run with --help for usage' }, true);
    return ExitCode.USAGE;
  }
  if (isDskError(e)) {
    write(describeError(e), json);
    if (debug) process.stderr.write(`${e.stack}\n${causes(e)}`);
    return e.exitCode;
  }
  const err = e as Error;
  if (err?.name === 'ExitPromptError' || err?.name === 'AbortPromptError') {
    write({ code: 'ERR_CANCELLED', message: 'cancelled', hint: null }, json);
    return ExitCode.USAGE;
  }
  write({ code: 'ERR_INTERNAL', message: `internal error: ${err?.message ?? String(e)}`, hint: debug ? null : 'this is a bug; rerun with DSK_DEBUG=1 for the stack trace and report it' }, json);
  if (debug) process.stderr.write(`${err?.stack}\n${causes(e)}`);
  return ExitCode.INTERNAL;
}

function write(r: Reported, json: boolean): void {
  if (json) {
    process.stderr.write(JSON.stringify({ error: r }) + '\n');
    return;
  }
  process.stderr.write(`dsk: error: ${r.message}\n`);
  if (r.hint) process.stderr.write(`dsk: hint: ${r.hint}\n`);
}
