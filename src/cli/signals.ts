/**
 * SIGINT and SIGTERM for the whole CLI: the only place below the entry point that ends the process
 * on a signal.
 *
 * While a PKCS#11 module is initialized, an interrupted command (mid-derivation, say) finalizes the
 * module first, so the token sees its sessions closed rather than abandoned, then exits 130
 * (SIGINT) or 143 (SIGTERM), the status a shell reports for a process killed by that signal. With
 * no module open dsk listens for neither signal, so the default action, or whoever else listens
 * (the prompt library, `audit tail -f`), decides as if this module did not exist: a listener that
 * is always installed would stop the default action and confuse libraries that count listeners.
 *
 * `dsk serve` stops cleanly on a signal: it takes the next one with `takeNextSignal` (drain, flush
 * usage and audit rows, close the master key), and a further one interrupts as above, for an
 * operator who will not wait for the drain.
 */
import { finalizeAllModules, loadedModuleCount, observeModules } from '../master/pkcs11/registry.js';

type Signal = 'SIGINT' | 'SIGTERM';
const SIGNALS: Signal[] = ['SIGINT', 'SIGTERM'];
const EXIT_CODE: Record<Signal, number> = { SIGINT: 130, SIGTERM: 143 };

let modulesOpen = 0;
let next: ((sig: Signal) => void) | null = null;
let listening = false;
let observing = false;

/** Listens exactly while there is something to do on a signal: a module to finalize, or a taker. */
function sync(): void {
  const want = modulesOpen > 0 || next !== null;
  if (want === listening) return;
  listening = want;
  for (const s of SIGNALS) (want ? process.on : process.off).call(process, s, onSignal);
}

function onSignal(sig: Signal): void {
  if (next) {
    const take = next;
    next = null;
    sync();
    take(sig);
    return;
  }
  if (finalizeAllModules() === 0) {
    // nothing left to release (the module closed as the signal arrived): the default action
    sync();
    process.kill(process.pid, sig);
    return;
  }
  process.stderr.write(`dsk: error: interrupted (${sig}); the PKCS#11 module was finalized\n`);
  process.exit(EXIT_CODE[sig]);
}

/** Installs the CLI's handling of SIGINT and SIGTERM (once per process). */
export function installSignalHandling(): void {
  if (observing) return;
  observing = true;
  modulesOpen = loadedModuleCount();
  sync();
  observeModules((open) => {
    modulesOpen = open;
    sync();
  });
}

/**
 * Hands the next SIGINT or SIGTERM to `stop` instead of interrupting; returns a function that
 * takes the hand back (when the command ends before any signal came).
 */
export function takeNextSignal(stop: (sig: Signal) => void): () => void {
  installSignalHandling();
  next = stop;
  sync();
  return () => {
    if (next !== stop) return;
    next = null;
    sync();
  };
}

/**
 * SIGHUP while `dsk serve` runs: `fn` runs on each one (the access log reopens its file after
 * logrotate moved it) instead of the default action, which would end the gateway. Returns the
 * function that removes the handler.
 */
export function onHangup(fn: () => void): () => void {
  process.on('SIGHUP', fn);
  return () => process.off('SIGHUP', fn);
}
