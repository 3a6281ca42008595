/**
 * The CLI's handling of SIGINT and SIGTERM (src/cli/signals.ts), in a child process that signals
 * itself at a known point, so nothing depends on timing: with no PKCS#11 module initialized dsk
 * does not listen (the default action, or another listener, decides); with one, it is finalized and
 * the process exits 130 / 143, whoever else listens; a command that takes the next signal (dsk
 * serve) gets the first one, and a second one interrupts.
 * The child runs the built modules (dist/), as the CLI tests do.
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';
import { MODULE, requireSoftHsm, softHsm } from './hsm-helpers.js';

const HSM = requireSoftHsm();
const dist = (p: string) => JSON.stringify(pathToFileURL(path.join(ROOT, 'dist', p)).href);

/** Runs `body` as an ES module after the CLI's signal handling is installed. */
function child(body: string, env: NodeJS.ProcessEnv = {}) {
  const script = `
    import { installSignalHandling, takeNextSignal } from ${dist('cli/signals.js')};
    import { Pkcs11Module } from ${dist('master/pkcs11/module.js')};
    import { loadedModuleCount } from ${dist('master/pkcs11/registry.js')};
    installSignalHandling();
    setTimeout(() => { console.log('not interrupted'); }, 5000);
    ${body}`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

describe('signals', () => {
  it('no module initialized: the default action (the process dies of the signal)', () => {
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      const r = child(`process.kill(process.pid, '${sig}');`);
      expect([r.code, r.signal, r.stdout, r.stderr]).toEqual([null, sig, '', '']);
    }
  });

  it('with no module open, dsk does not listen: another listener (audit tail -f, the prompt library) decides alone', () => {
    const r = child(`console.log(process.listenerCount('SIGINT'), process.listenerCount('SIGTERM'));
      process.on('SIGTERM', () => { console.log('own handler'); process.exit(0); }); process.kill(process.pid, 'SIGTERM');`);
    expect([r.code, r.stdout]).toEqual([0, '0 0\nown handler\n']);
  });

  it('a taker without a module (dsk serve, software backend): the first signal is taken, a second has the default action', () => {
    const r = child(`takeNextSignal((sig) => { console.log('draining on', sig); process.kill(process.pid, 'SIGINT'); });
      process.kill(process.pid, 'SIGTERM');`);
    expect([r.code, r.signal, r.stdout]).toEqual([null, 'SIGINT', 'draining on SIGTERM\n']);
  });

  describe.skipIf(!HSM)('with a PKCS#11 module initialized', () => {
    const h = HSM ? softHsm() : null;
    const load = `const m = Pkcs11Module.load(${JSON.stringify(MODULE)}); Pkcs11Module.load(${JSON.stringify(MODULE)}); console.log('loaded', loadedModuleCount());`;

    it.each([
      ['SIGINT', 130],
      ['SIGTERM', 143],
    ])('%s finalizes it and exits %i', (sig, code) => {
      const r = child(`${load} process.kill(process.pid, '${sig}');`, h!.env);
      expect([r.code, r.signal, r.stdout]).toEqual([code, null, 'loaded 1\n']);
      expect(r.stderr).toBe(`dsk: error: interrupted (${sig}); the PKCS#11 module was finalized\n`);
    });

    it('another listener (a prompt waiting for the PIN) does not stop the interrupt', () => {
      const r = child(`${load} process.on('SIGINT', () => console.log('prompt listener')); process.kill(process.pid, 'SIGINT');`, h!.env);
      expect([r.code, r.stderr]).toEqual([130, 'dsk: error: interrupted (SIGINT); the PKCS#11 module was finalized\n']);
    });

    it('a command that takes the next signal gets the first; a second one interrupts', () => {
      const r = child(`${load}
        takeNextSignal((sig) => { console.log('draining on', sig, loadedModuleCount()); process.kill(process.pid, 'SIGTERM'); });
        process.kill(process.pid, 'SIGTERM');`, h!.env);
      expect([r.code, r.stdout]).toEqual([143, 'loaded 1\ndraining on SIGTERM 1\n']);
      expect(r.stderr).toContain('interrupted (SIGTERM); the PKCS#11 module was finalized');
    });

    it('reference-counted: finalized by the last release, after which a signal has its default action again', () => {
      const held = child(`${load} m.release(); console.log('after one release', loadedModuleCount());
        const again = Pkcs11Module.load(${JSON.stringify(MODULE)}); again.release(); again.release();
        process.kill(process.pid, 'SIGINT');`, h!.env);
      expect([held.code, held.stdout]).toEqual([130, 'loaded 1\nafter one release 1\n']);
      const released = child(`const a = Pkcs11Module.load(${JSON.stringify(MODULE)}); a.release(); console.log('after release', loadedModuleCount());
        process.kill(process.pid, 'SIGINT');`, h!.env);
      expect([released.code, released.signal, released.stdout, released.stderr]).toEqual([null, 'SIGINT', 'after release 0\n', '']);
    });
  });
});
