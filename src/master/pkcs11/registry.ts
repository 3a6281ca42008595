/**
 * The PKCS#11 modules this process has initialized: one entry per library path, reference-counted,
 * so two masters in one process (the demo, or `hsm recover`) share one C_Initialize and the last
 * release calls C_Finalize.
 *
 * Kept apart from module.ts, and free of pkcs11js at run time (the import below is a type), so
 * that a caller deciding what to do on an interrupt can ask "is a token open?" and finalize it
 * without loading the native library into a process that never touched a token. Nothing here
 * installs a signal handler or ends the process: that is the caller's decision (src/cli/signals.ts),
 * told of every change through observeModules.
 */
import type pkcs11js from 'pkcs11js';

export interface LoadedModule {
  readonly lib: pkcs11js.PKCS11;
  readonly path: string;
  refs: number;
  /** Set once C_Finalize has run (by the last release, or by finalizeAllModules). */
  finalized: boolean;
}

const loaded = new Map<string, LoadedModule>();
const observers = new Set<(open: number) => void>();

/**
 * Calls `fn` with the number of initialized modules each time it changes: the CLI handles
 * interrupts itself only while a module is open (src/cli/signals.ts). Returns the unsubscribe.
 */
export function observeModules(fn: (open: number) => void): () => void {
  observers.add(fn);
  return () => observers.delete(fn);
}

function changed(): void {
  for (const fn of observers) fn(loaded.size);
}

export function findLoaded(path: string): LoadedModule | undefined {
  return loaded.get(path);
}

export function addLoaded(lib: pkcs11js.PKCS11, path: string): LoadedModule {
  const l: LoadedModule = { lib, path, refs: 1, finalized: false };
  loaded.set(path, l);
  changed();
  return l;
}

function finalize(l: LoadedModule): void {
  if (loaded.get(l.path) === l) {
    loaded.delete(l.path);
    changed();
  }
  if (l.finalized) return;
  l.finalized = true;
  try {
    l.lib.C_Finalize();
  } catch {
    // already finalized or the module is broken: nothing more to release
  }
}

/** Drops one reference; the last one finalizes the module. */
export function releaseLoaded(l: LoadedModule): void {
  if (--l.refs > 0) return;
  finalize(l);
}

/** How many modules are initialized in this process right now. */
export function loadedModuleCount(): number {
  return loaded.size;
}

/**
 * C_Finalize on every module still initialized, whoever holds it: for a process about to end
 * abruptly (an interrupt), so the token sees its sessions closed rather than abandoned. Sessions
 * and keys of those modules are unusable afterwards. Returns how many modules it finalized.
 */
export function finalizeAllModules(): number {
  const all = [...loaded.values()];
  for (const l of all) finalize(l);
  return all.length;
}
