/**
 * The error contract: every DskError in src/ is built as `new XError('ERR_CODE', message, …)`, each
 * code belongs to exactly one class (so one code is always one exit code), and the CLI prints an
 * error as two lines for a person or one JSON object on stderr under --json.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, dsk, passphraseFiles, tmpDir } from './helpers.js';
import { ConflictError, ExitCode, NotFoundError, UsageError } from '../src/kernel/errors.js';

const CLASSES = ['Usage', 'Auth', 'NotFound', 'Integrity', 'Conflict', 'Unavailable'];

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

function errorSites() {
  const sites: { file: string; cls: string; code: string | null }[] = [];
  const re = new RegExp(`new (${CLASSES.join('|')})Error\\(\\s*('ERR_[A-Z0-9_]+'|[^,]*)`, 'g');
  for (const file of sources(path.join(ROOT, 'src'))) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(re)) sites.push({ file: path.relative(ROOT, file), cls: m[1], code: m[2].startsWith("'ERR_") ? m[2].slice(1, -1) : null });
  }
  return sites;
}

describe('error contract', () => {
  it('each error code in src/ belongs to one class, so one code is one exit code', () => {
    const owner = new Map<string, Set<string>>();
    for (const s of errorSites()) if (s.code) owner.set(s.code, (owner.get(s.code) ?? new Set()).add(s.cls));
    const shared = [...owner].filter(([, c]) => c.size > 1).map(([code, c]) => `${code}: ${[...c].join(', ')}`);
    expect(shared).toEqual([]);
    expect(owner.size).toBeGreaterThan(100);
  });

  it('codes are literal except where a value is passed through on purpose', () => {
    const dynamic = errorSites().filter((s) => !s.code).map((s) => s.file);
    // operators picks one of two literals; audit verify names the breach kind
    expect(new Set(dynamic)).toEqual(new Set(['src/app/operator-otp.ts', 'src/cli/commands/audit/integrity.ts']));
  });

  it('keeps code, message, hint and cause; the class fixes the exit code', () => {
    const cause = new Error('ENOSPC');
    const e = new ConflictError('ERR_X', 'something held', { hint: 'wait', cause });
    expect([e.code, e.message, e.hint, e.cause, e.exitCode, e.name]).toEqual(['ERR_X', 'something held', 'wait', cause, ExitCode.CONFLICT, 'ConflictError']);
    expect(new UsageError('ERR_Y', 'bad').exitCode).toBe(2);
    expect(new NotFoundError('ERR_Z', 'gone').hint).toBeUndefined();
  });

  it('the CLI prints dsk: error / dsk: hint, or one JSON object on stderr under --json', () => {
    const home = path.join(tmpDir(), 'nohome');
    const plain = dsk(['--home', home, 'keys', 'list']);
    expect(plain.code).toBe(4);
    expect(plain.stderr).toBe(`dsk: error: no dsk home at ${home}\ndsk: hint: run dsk init, or point --home / DSK_HOME at an existing home\n`);
    const json = dsk(['--home', home, 'keys', 'list', '--json']);
    expect(json.code).toBe(4);
    expect(json.stdout).toBe('');
    expect(JSON.parse(json.stderr)).toEqual({ error: { code: 'ERR_NO_HOME', message: `no dsk home at ${home}`, hint: 'run dsk init, or point --home / DSK_HOME at an existing home' } });
    const usage = dsk(['--json', 'keys', 'list', '--no-such-flag']);
    expect(usage.code).toBe(2);
    expect(JSON.parse(usage.stderr.trim().split('\n').pop()!).error.code).toBe('ERR_USAGE');
  });

  it('a refused flag value is named by its flag in the CLI, not by the layer that refused it', () => {
    const dir = tmpDir();
    const pass = passphraseFiles(dir, 3).flatMap((f) => ['--passphrase-file', f]);
    const r = dsk(['--home', path.join(dir, 'h'), 'init', '--shares', '3', '--threshold', '4', ...pass]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('dsk: error: --threshold: threshold must be between 2 and the number of shares (3), got 4');
  });
});
