/** Helpers shared by the CLI end-to-end tests (cli-errors, cli-integrity). */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { expect } from 'vitest';
import { snapshot, tmpDir, type RunResult } from './helpers.js';

export const AUDIT_DB = path.join('audit_log', 'audit.db');

export function auditRows(home: string): { seq: number; action: string; key_id: string | null; details: string }[] {
  const db = new Database(path.join(home, AUDIT_DB), { readonly: true });
  try {
    return db.prepare('SELECT seq, action, key_id, details FROM events ORDER BY seq').all() as never;
  } finally {
    db.close();
  }
}
export function keyCount(home: string): number {
  const db = new Database(path.join(home, 'keys.db'), { readonly: true });
  try {
    return (db.prepare('SELECT count(*) AS n FROM keys').get() as { n: number }).n;
  } finally {
    db.close();
  }
}

/** Asserts the exit code and stderr of a failed command; stdout must be empty. */
export function fails(r: RunResult, code: number, message: string | RegExp): void {
  expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code });
  if (typeof message === 'string') expect(r.stderr).toContain(`dsk: error: ${message}`);
  else expect(r.stderr).toMatch(message);
  expect(r.stderr.split('\n')[0]).toMatch(/^dsk: error: /);
  expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace without DSK_DEBUG
  expect(r.stdout).toBe('');
}

/** Runs `run` and proves it changed nothing in `dirs`; `audited`: the one audit row it may add (and the HEAD file that follows it). */
export function unchanged(dirs: string[], run: () => RunResult, audited?: { home: string; action: string; reason?: string }): RunResult {
  const before = dirs.map((d) => snapshot(d));
  const rowsBefore = audited ? auditRows(audited.home) : [];
  const r = run();
  const after = dirs.map((d) => snapshot(d));
  if (!audited) {
    expect(after).toEqual(before);
    return r;
  }
  const strip = (s: Record<string, string>[]) => s.map((m) => Object.fromEntries(Object.entries(m).filter(([k]) => !k.endsWith(AUDIT_DB) && !k.endsWith('audit_log/HEAD'))));
  expect(strip(after)).toEqual(strip(before));
  const rowsAfter = auditRows(audited.home);
  expect(rowsAfter.slice(0, rowsBefore.length)).toEqual(rowsBefore);
  expect(rowsAfter.slice(rowsBefore.length).map((x) => x.action)).toEqual([audited.action]);
  if (audited.reason) expect(JSON.parse(rowsAfter[rowsAfter.length - 1].details)).toEqual({ reason: audited.reason });
  return r;
}

export function writePass(dir: string, name: string, value: string, mode = 0o600): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, value + '\n', { mode });
  fs.chmodSync(f, mode);
  return f;
}
export const passArgs = (files: string[]) => files.flatMap((f) => ['--passphrase-file', f]);

/** A copy of a home (for tests that damage it), modes preserved. */
export function copyHome(home: string): string {
  const d = tmpDir();
  const dest = path.join(d, 'home');
  expect(spawnSync('cp', ['-a', home, dest]).status).toBe(0);
  return dest;
}
