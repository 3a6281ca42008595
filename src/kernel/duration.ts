import { UsageError } from './errors.js';

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d{1,9})(s|m|h|d)$/;

/** Parses `90d`, `48h`, `15m`, `2s` into milliseconds. Rejects negatives, zero-less junk, floats. */
export function parseDuration(text: string, what = 'duration', allowZero = false): number {
  const m = DURATION.exec(text.trim());
  if (!m) {
    throw new UsageError('ERR_DURATION', `invalid ${what} '${text}': expected a whole number followed by s, m, h or d`, { hint: 'for example 90d, 48h, 15m or 30s' });
  }
  const ms = Number(m[1]) * UNIT_MS[m[2]];
  if (!allowZero && ms === 0) throw new UsageError('ERR_DURATION', `invalid ${what} '${text}': must be greater than zero`);
  return ms;
}

/** Renders milliseconds back in the largest unit that divides it exactly. */
export function formatDuration(ms: number): string {
  for (const u of ['d', 'h', 'm', 's']) if (ms % UNIT_MS[u] === 0 && ms >= UNIT_MS[u]) return `${ms / UNIT_MS[u]}${u}`;
  return `${Math.round(ms / 1000)}s`;
}

/** Human "age" for tables: 3d, 5h, 12m, 40s. */
export function humanAge(ms: number): string {
  const abs = Math.abs(ms);
  const sign = ms < 0 ? '-' : '';
  if (abs >= UNIT_MS.d) return `${sign}${Math.floor(abs / UNIT_MS.d)}d`;
  if (abs >= UNIT_MS.h) return `${sign}${Math.floor(abs / UNIT_MS.h)}h`;
  if (abs >= UNIT_MS.m) return `${sign}${Math.floor(abs / UNIT_MS.m)}m`;
  return `${sign}${Math.floor(abs / 1000)}s`;
}

export function parsePositiveInt(text: string, what: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d{1,15}$/.test(text.trim())) throw new UsageError('ERR_NUMBER', `invalid ${what} '${text}': expected a positive whole number`);
  const n = Number(text);
  if (n < 1 || n > max) throw new UsageError('ERR_NUMBER_RANGE', `invalid ${what} '${text}': must be between 1 and ${max}`);
  return n;
}
