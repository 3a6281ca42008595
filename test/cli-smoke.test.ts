import { describe, expect, it } from 'vitest';
import { dsk, json, makeHome } from './helpers.js';

describe('dsk smoke', () => {
  it('prints its version and help with the exit codes', () => {
    expect(dsk(['--version']).stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const help = dsk(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Exit codes');
    expect(help.stdout).toContain('keygen');
  });

  it('issues a key that the list then shows without its secret', () => {
    const { env } = makeHome();
    const k = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env }));
    expect(k.api_key).toMatch(/^dsk_[0-9a-f]{12}_[0-9a-f]{64}_[0-9A-Za-z]{6}$/);
    const list = dsk(['keys', 'list', '--json'], { env });
    expect(json(list)[0].id).toBe(k.id);
    expect(list.stdout).not.toContain(k.api_key);
    expect(list.stdout).not.toContain(k.api_secret);
  });
});
