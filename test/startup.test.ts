/**
 * Start-up cost: `dsk --version` loads nothing but its version, and a command loads only its own
 * module (no prompt library, no other commands). Timing itself lives in bench/foundation.mjs.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DSK, ROOT, makeHome, tmpDir } from './helpers.js';

const TRACER = path.join(ROOT, 'test', 'fixtures', 'trace-loads.mjs');

/** Runs the built dsk with a module-resolution tracer; returns stdout and the modules it loaded. */
function loads(args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; modules: string[] } {
  const trace = path.join(tmpDir(), 'trace.txt');
  const r = spawnSync(process.execPath, ['--import', TRACER, DSK, ...args], { env: { ...process.env, NO_COLOR: '1', DSK_TRACE_LOADS: trace, ...env }, encoding: 'utf8', input: '' });
  const modules = fs.existsSync(trace) ? [...new Set(fs.readFileSync(trace, 'utf8').split('\n').filter(Boolean))] : [];
  return { code: r.status, stdout: r.stdout, modules: modules.map((u) => u.replace(/^file:\/\/.*?\/(node_modules|dist|bin)\//, '$1/')) };
}

describe('lazy loading', () => {
  it('dsk --version loads only the entry point and the version module', () => {
    const r = loads(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    expect(r.modules).toEqual(['bin/dsk.js', 'dist/cli/version.js']);
  });

  it('dsk --help loads the CLI framework but no command module', () => {
    const r = loads(['--help']);
    expect(r.code).toBe(0);
    expect(r.modules.some((m) => m.startsWith('node_modules/commander/'))).toBe(true);
    expect(r.modules.filter((m) => m.startsWith('dist/cli/commands/'))).toEqual([]);
    expect(r.modules.some((m) => m.includes('better-sqlite3'))).toBe(false);
  });

  it('dsk help keygen loads keygen, so its options and examples show', () => {
    const r = loads(['help', 'keygen']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--rotate-every <duration>');
    expect(r.stdout).toContain('Examples:');
    expect(r.modules.filter((m) => m.startsWith('dist/cli/commands/'))).toEqual(['dist/cli/commands/keygen.js']);
  });

  it('dsk keys list loads its own command only, and no prompt library', () => {
    const { env } = makeHome(tmpDir(), { shares: 2, threshold: 2 });
    const r = loads(['keys', 'list', '--json'], env);
    expect(r.code).toBe(0);
    expect(r.modules.filter((m) => m.startsWith('dist/cli/commands/'))).toEqual(['dist/cli/commands/keys.js']);
    expect(r.modules.some((m) => m.includes('@inquirer'))).toBe(false);
  });
});
