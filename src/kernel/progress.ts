/**
 * How a long-running use case reports how far it got, without knowing who listens (a terminal bar
 * in cli/progress.ts, or nothing). `total` may grow while work is discovered; `done` never exceeds it.
 */
export type Progress = (phase: string, done: number, total: number) => void;

export const noProgress: Progress = () => {};
