/**
 * `dsk serve --workers N`: N gateway processes of one host behind one port (node:cluster; the
 * primary accepts connections and hands them to the workers in turn). Each worker is a full
 * gateway with its own store connection, key index and writer thread, so workers keep the same
 * guarantees as replicas on separate hosts: the shared nonce table, usage summed in the store, one
 * audit chain. Per-key rate limits are split: each worker enforces 1/N of the limit (round-robin
 * spreads a key's requests evenly, so the sum stays at or under the limit).
 *
 * Secrets: the primary checks the operator and unseals once (refusing a wrong passphrase before
 * any worker starts), then hands the unseal inputs to each worker over its IPC channel (a private
 * pipe: never argv or the environment) and wipes its copies once every worker is up. A worker that
 * dies is therefore not replaced; its peers go on serving, and the primary reports it.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Passphrase } from '../master/fragments.js';
import type { UnsealInputs } from '../master/unseal.js';
import { wipe } from '../kernel/crypto.js';
import { UnavailableError } from '../kernel/errors.js';

interface WireInputs {
  passphrases: { source: string; value: string }[] | null;
  pin: string | null;
  fragmentDirs: string[];
}

type ToWorker = { type: 'unseal'; inputs: WireInputs } | { type: 'drain' };
export type FromWorker = { type: 'hello' } | { type: 'ready'; url: string; keys: number } | { type: 'failed'; message: string; exitCode: number };

/** Wraps unseal inputs so the primary keeps a copy of what it was given, to hand to the workers. */
export function capturingInputs(inner: UnsealInputs): { inputs: UnsealInputs; captured: () => WireInputs; wipe: () => void } {
  let passphrases: Passphrase[] | null = null;
  let pin: Buffer | null = null;
  return {
    inputs: {
      fragmentDirs: inner.fragmentDirs,
      async passphrases(threshold, shares) {
        const got = await inner.passphrases(threshold, shares);
        passphrases = got.map((p) => ({ source: p.source, value: Buffer.from(p.value) }));
        return got;
      },
      async pin() {
        const got = await inner.pin();
        pin = Buffer.from(got);
        return got;
      },
    },
    captured: () => ({
      passphrases: passphrases?.map((p) => ({ source: p.source, value: p.value.toString('base64') })) ?? null,
      pin: pin?.toString('base64') ?? null,
      fragmentDirs: inner.fragmentDirs ?? [],
    }),
    wipe() {
      for (const p of passphrases ?? []) wipe(p.value);
      if (pin) wipe(pin);
      passphrases = null;
      pin = null;
    },
  };
}

/** In a worker: waits for the unseal inputs the primary sends. */
export function inputsFromPrimary(): Promise<UnsealInputs> {
  return new Promise((resolve) => {
    const on = (m: ToWorker) => {
      if (m?.type !== 'unseal') return;
      process.off('message', on);
      const w = m.inputs;
      resolve({
        fragmentDirs: w.fragmentDirs,
        passphrases: async () => {
          if (!w.passphrases) throw new Error('internal: the primary sent no passphrases');
          return w.passphrases.map((p) => ({ source: p.source, value: Buffer.from(p.value, 'base64') }));
        },
        pin: async () => {
          if (w.pin === null) throw new Error('internal: the primary sent no PIN');
          return Buffer.from(w.pin, 'base64');
        },
      });
    };
    process.on('message', on);
    // Messages that arrive before a listener exists are dropped: ask only now.
    tellPrimary({ type: 'hello' });
  });
}

/** In a worker: calls `drain` when the primary asks (its own SIGTERM handling stays as well). */
export function onDrainRequest(drain: () => void): void {
  process.on('message', (m: ToWorker) => {
    if (m?.type === 'drain') drain();
  });
}

export function tellPrimary(m: FromWorker): void {
  process.send?.(m);
}

export const isWorker = () => cluster.isWorker;

export interface WorkerPool {
  url: string;
  keys: number;
  pids: number[];
  /** Asks every worker to drain and resolves when all have exited. */
  drain(): Promise<void>;
  /** Resolves when every worker has exited (for whatever reason). */
  exited: Promise<void>;
}

/** In the primary: forks N workers, unseals each with `inputs`, resolves once all listen. */
export async function startWorkers(n: number, inputs: WireInputs, report: (line: string) => void): Promise<WorkerPool> {
  const workers: Worker[] = [];
  const alive = new Set<Worker>();
  let draining = false;
  let allExited!: () => void;
  const exited = new Promise<void>((r) => (allExited = r));
  const ready: Promise<{ url: string; keys: number }>[] = [];
  for (let i = 0; i < n; i++) {
    const w = cluster.fork();
    workers.push(w);
    alive.add(w);
    ready.push(
      new Promise((resolve, reject) => {
        w.on('message', (m: FromWorker) => {
          if (m.type === 'hello') w.send({ type: 'unseal', inputs } satisfies ToWorker);
          if (m.type === 'ready') resolve({ url: m.url, keys: m.keys });
          if (m.type === 'failed') reject(Object.assign(new UnavailableError('ERR_WORKER_START', `gateway worker ${w.process.pid} failed to start: ${m.message}`, { hint: 'the error above is what the worker met; fix it and start dsk serve again' }), { workerExitCode: m.exitCode }));
        });
        w.on('exit', (code, signal) => {
          alive.delete(w);
          reject(new UnavailableError('ERR_WORKER_START', `gateway worker ${w.process.pid} exited (${signal ?? code}) before it listened`, { hint: 'run dsk serve without --workers to see its error' }));
          if (!draining) report(`dsk: gateway worker ${w.process.pid} exited (${signal ?? code}); ${alive.size} of ${n} still serving\n`);
          if (alive.size === 0) allExited();
        });
      }),
    );
  }
  let up: { url: string; keys: number }[];
  try {
    up = await Promise.all(ready);
  } catch (e) {
    draining = true;
    for (const w of alive) w.kill('SIGKILL');
    await exited;
    throw e;
  }
  return {
    url: up[0].url,
    keys: up[0].keys,
    pids: workers.map((w) => w.process.pid!),
    exited,
    async drain() {
      draining = true;
      for (const w of alive) if (w.isConnected()) w.send({ type: 'drain' } satisfies ToWorker);
      await exited;
    },
  };
}
