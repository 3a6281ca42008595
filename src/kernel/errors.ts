/**
 * One error hierarchy for the whole of dsk. Each class carries a stable `code` (for scripts and
 * tests) and the exit code the brief fixes. Messages are one line, lower-case, and never contain a
 * secret; `hint` says what to do next.
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

export abstract class DskError extends Error {
  abstract readonly exitCode: ExitCodeValue;
  readonly code: string;
  readonly hint?: string;
  constructor(code: string, message: string, hint?: string) {
    super(message);
    this.name = new.target.name;
    this.code = code;
    this.hint = hint;
  }
}

/** Exit 2: unknown command, bad flag, malformed value. */
export class UsageError extends DskError {
  readonly exitCode = ExitCode.USAGE;
  constructor(message: string, hint?: string, code = 'ERR_USAGE') {
    super(code, message, hint);
  }
}

/** Exit 3: wrong passphrase or PIN, too few fragments, bad or expired key, missing permission. */
export class AuthError extends DskError {
  readonly exitCode = ExitCode.AUTH;
  constructor(code: string, message: string, hint?: string) {
    super(code, message, hint);
  }
}

/** Exit 4: home, key id, token, module file. */
export class NotFoundError extends DskError {
  readonly exitCode = ExitCode.NOT_FOUND;
  constructor(code: string, message: string, hint?: string) {
    super(code, message, hint);
  }
}

/** Exit 5: tampered fragment, broken audit chain, bad checksum. */
export class IntegrityError extends DskError {
  readonly exitCode = ExitCode.INTEGRITY;
  constructor(code: string, message: string, hint?: string) {
    super(code, message, hint);
  }
}

/** Exit 6: home exists, lock held, key in a state that forbids the action. */
export class ConflictError extends DskError {
  readonly exitCode = ExitCode.CONFLICT;
  constructor(code: string, message: string, hint?: string) {
    super(code, message, hint);
  }
}

/** Exit 7: PKCS#11 module fails to load, store not writable, upstream down. */
export class UnavailableError extends DskError {
  readonly exitCode = ExitCode.UNAVAILABLE;
  constructor(code: string, message: string, hint?: string) {
    super(code, message, hint);
  }
}

export function isDskError(e: unknown): e is DskError {
  return e instanceof DskError;
}
