/**
 * One error hierarchy for the whole of dsk, built one way: `new XError(code, message, { hint, cause })`.
 *
 * `code` is stable (scripts and tests branch on it) and names one failure; each code belongs to one
 * class, and each class to one exit code of the brief, so a code always means the same exit status
 * (test/errors.test.ts checks every code in src/). Messages are one line, lower-case, never contain
 * a secret, and name no command-line flag: wording about flags belongs to the CLI. `hint` says what
 * to do next; `cause` keeps the underlying error for DSK_DEBUG=1.
 */
export const ExitCode = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  AUTH: 3,
  NOT_FOUND: 4,
  INTEGRITY: 5,
  CONFLICT: 6,
  UNAVAILABLE: 7,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

export interface DskErrorOptions {
  /** The next step for the user. */
  hint?: string;
  /** The error this one explains (an errno, an SQLite or PKCS#11 failure). */
  cause?: unknown;
}

export abstract class DskError extends Error {
  abstract readonly exitCode: ExitCodeValue;
  readonly code: string;
  readonly hint?: string;
  constructor(code: string, message: string, opts: DskErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.hint = opts.hint;
  }
}

/** Exit 2: unknown command, bad flag, malformed value. */
export class UsageError extends DskError {
  readonly exitCode = ExitCode.USAGE;
}

/** Exit 3: wrong passphrase or PIN, too few fragments, bad or expired key, missing permission. */
export class AuthError extends DskError {
  readonly exitCode = ExitCode.AUTH;
}

/** Exit 4: home, key id, token, module file. */
export class NotFoundError extends DskError {
  readonly exitCode = ExitCode.NOT_FOUND;
}

/** Exit 5: tampered fragment, broken audit chain, bad checksum, unsafe permissions. */
export class IntegrityError extends DskError {
  readonly exitCode = ExitCode.INTEGRITY;
}

/** Exit 6: home exists, lock held, store busy, key in a state that forbids the action. */
export class ConflictError extends DskError {
  readonly exitCode = ExitCode.CONFLICT;
}

/** Exit 7: PKCS#11 module fails to load, store not writable, upstream down. */
export class UnavailableError extends DskError {
  readonly exitCode = ExitCode.UNAVAILABLE;
}

export function isDskError(e: unknown): e is DskError {
  return e instanceof DskError;
}
