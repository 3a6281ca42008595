/**
 * The skip policy: a test that needs an external tool skips outside CI with a printed reason, and
 * fails under CI=true naming the tool. requireTool (test/helpers.ts) is the one place that decides;
 * the last test checks that every skipIf in test/ goes through it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { requireTool, ROOT } from './helpers.js';

const MISSING = 'dsk-no-such-tool';
const ci = process.env.CI;
afterEach(() => {
  if (ci === undefined) delete process.env.CI;
  else process.env.CI = ci;
});

describe('requireTool', () => {
  it('is true when the tool is on PATH', () => {
    process.env.CI = 'true';
    expect(requireTool('node', 'these tests')).toBe(true);
  });

  it('under CI=true, a missing tool is an error that names it and how to install it', () => {
    process.env.CI = 'true';
    expect(() => requireTool(MISSING, 'the example tests', { install: 'dsk-tools' })).toThrow(`${MISSING} not found (install dsk-tools): CI=true, and the example tests must run in CI`);
    expect(() => requireTool('the example module', 'the example tests', { present: false })).toThrow('the example module not found');
  });

  it('outside CI, a missing tool prints why the tests skip and returns false', () => {
    delete process.env.CI;
    const warned: string[] = [];
    const warn = console.warn;
    console.warn = (m: string) => warned.push(m);
    try {
      expect(requireTool(MISSING, 'the example tests')).toBe(false);
    } finally {
      console.warn = warn;
    }
    expect(warned).toEqual([`skipping the example tests: ${MISSING} not found (install ${MISSING})`]);
  });

  it('every skipIf in test/ takes its condition from requireTool', () => {
    const bad: string[] = [];
    for (const f of fs.readdirSync(path.join(ROOT, 'test')).filter((n) => n.endsWith('.ts'))) {
      const text = fs.readFileSync(path.join(ROOT, 'test', f), 'utf8');
      for (const m of text.matchAll(/\.(?:skipIf|runIf)\(\s*!?\s*([\w$]+)/g)) {
        const name = m[1];
        const viaHelper =
          name === 'requireTool' ||
          new RegExp(`const ${name} = (requireTool|requireSoftHsm|requirePostgres)\\(`).test(text) ||
          // pkcs11-tool is checked by requireSoftHsm, which the file must call.
          (name === 'hasPkcs11Tool' && /requireSoftHsm\(\)/.test(text));
        if (!viaHelper) bad.push(`${f}: skipIf(${name})`);
      }
    }
    expect(bad).toEqual([]);
  });
});
