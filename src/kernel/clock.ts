/** Time and randomness are injected so schedules and crypto can be tested deterministically. */
import { randomBytes } from 'node:crypto';

export interface Clock {
  now(): number; // epoch milliseconds
}
export const systemClock: Clock = { now: () => Date.now() };

export function fixedClock(start: number): Clock & { advance(ms: number): void; set(ms: number): void } {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
    set: (ms: number) => {
      t = ms;
    },
  };
}

export type RandomSource = (n: number) => Buffer;
export const systemRandom: RandomSource = (n) => randomBytes(n);

export function iso(ms: number | null | undefined): string | null {
  return ms == null ? null : new Date(ms).toISOString();
}
