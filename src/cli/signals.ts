/**
 * SIGINT and SIGTERM for the whole CLI: the only place below the entry point that ends the process
 * on a signal.
 *
 * A one-shot command interrupted while a PKCS#11 module is initialized (mid-derivation, say)
 * finalizes the module first, so the token sees its sessions closed rather than abandoned, then
 * exits 130 (SIGINT) or 143 (SIGTERM) like a shell reports a process killed by that signal. With no
 * module initialized there is nothing to release: the signal's default action runs, as if dsk had
 * installed no handler.
 *
 * A command that stops cleanly on a signal says so: `dsk serve` takes the next signal with
 * `takeNextSignal` (drain, flush usage and audit rows, close the master key), and a further one
 * interrupts as above, for an operator who will not wait for the drain. A command that listens for
 * the signal on `process` itself (`audit tail -f`) owns it too: the default steps aside.
 */
import { finalizeAllModules } from '../master/pkcs11/registry.js';

type Signal = 'SIGINT' | 'SIGTERM';
const SIGNALS: Signal[] = ['SIGINT', 'SIGTERM'];
const EXIT_CODE: Record<Signal, number> = { SIGINT: 130, SIGTERM: 143 };

let installed = false;
let next: ((sig: Signal) => void) | null = null;

function onSignal(sig: Signal): void {
  if (next) {
    const take = next;
    next = null;
    take(sig);
    return;
  }
  if (process.listenerCount(sig) > 1) return;
  if (finalizeAllModules() === 0) {
    for (const s of SIGNALS) process.off(s, onSignal);
    installed = false;
    process.kill(process.pid, sig);
    return;
  }
  process.stderr.write(`dsk: error: interrupted (${sig}); the PKCS#11 module was finalized\n`);
  process.exit(EXIT_CODE[sig]);
}

/** Installs the CLI's handling of SIGINT and SIGTERM (once per process). */
export function installSignalHandling(): void {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
}

/**
 * Hands the next SIGINT or SIGTERM to `stop` instead of interrupting; returns a function that
 * takes the hand back (when the command ends before any signal came).
 */
export function takeNextSignal(stop: (sig: Signal) => void): () => void {
  installSignalHandling();
  next = stop;
  return () => {
    if (next === stop) next = null;
  };
}
