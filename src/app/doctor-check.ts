/** What a `dsk doctor` check reports, and how failures add up to an exit status (see doctor.ts). */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';
export type Failure = 'damage' | 'unavailable';

export interface Check {
  name: string;
  status: CheckStatus;
  /** for a failure: damage (exit 5) or unavailable (exit 7) */
  failure?: Failure;
  detail: string;
  fix?: string;
}

export interface DoctorOptions {
  now: number;
  /** a key due for rotation longer than this means the scheduled job is not running */
  overdueAfterMs: number;
  /** how far ahead expiring keys are reported */
  expiringWithinMs: number;
  /** how long to wait for the upstream to answer */
  upstreamTimeoutMs: number;
}

export const DOCTOR_DEFAULTS = { overdueAfterMs: 24 * 3_600_000, expiringWithinMs: 7 * 24 * 3_600_000, upstreamTimeoutMs: 3_000 } as const;

export interface DoctorReport {
  home: string;
  healthy: boolean;
  failure: Failure | null;
  checks: Check[];
}

/** Damage outweighs unavailability: a damaged home stays damaged once the service is back. */
export function worstFailure(checks: Check[]): Failure | null {
  const fails = checks.filter((c) => c.status === 'fail');
  if (fails.some((c) => c.failure === 'damage')) return 'damage';
  return fails.length ? 'unavailable' : null;
}

/** A DskError's exit code as a doctor failure: 7 is unavailable, anything else in a home is damage. */
export function failureOf(e: unknown): Failure {
  return (e as { exitCode?: number }).exitCode === 7 ? 'unavailable' : 'damage';
}

export const errorText = (e: unknown) => (e as Error).message ?? String(e);

