/** Helpers for the audit tests: the writer fixture, the sqlite3 CLI, and recomputing chain hashes. */
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT } from './helpers.js';

export const WRITER = path.join(ROOT, 'test', 'fixtures', 'audit-writer.mjs');

/** Runs the writer fixture to completion; returns the seqs it reported committed. */
export function writeRows(home: string, count: number, opts: { batch?: number; tag?: string; env?: NodeJS.ProcessEnv } = {}): number[] {
  const r = spawnSync(process.execPath, [WRITER, home, String(count), String(opts.batch ?? 1), opts.tag ?? 'w'], { env: { ...process.env, ...opts.env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`writer failed: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.startsWith('commit ')).map((l) => Number(l.slice(7)));
}

export function writerProcess(home: string, count: number, opts: { batch?: number; tag?: string; env?: NodeJS.ProcessEnv } = {}) {
  return spawn(process.execPath, [WRITER, home, String(count), String(opts.batch ?? 1), opts.tag ?? 'w'], { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
}

export function writeEvents(home: string, events: unknown[], env: NodeJS.ProcessEnv = {}): void {
  const f = path.join(path.dirname(home), `events-${crypto.randomBytes(4).toString('hex')}.json`);
  fs.writeFileSync(f, JSON.stringify(events));
  const r = spawnSync(process.execPath, [WRITER, home, '--events', f], { env: { ...process.env, ...env }, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`writer failed: ${r.stderr}`);
}

/** The real sqlite3 command-line tool, as an attacker with write access to the file would use it. */
export function sqlite(db: string, sql: string): string {
  const r = spawnSync('sqlite3', [db, sql], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sqlite3 failed: ${r.stderr}`);
  return r.stdout;
}

/** A row as the `sqlite3` CLI returns it: the same shape dsk writes. */
import type { AuditRow as Row } from '../src/store/store.js';
export type { Row };

export function rows(auditDb: string): Row[] {
  const r = spawnSync('sqlite3', ['-json', auditDb, 'SELECT * FROM events ORDER BY seq'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`sqlite3 failed: ${r.stderr}`);
  const out = r.stdout;
  return out.trim() ? (JSON.parse(out) as Row[]) : [];
}

/** The chain's definition, restated independently of src/audit/writer.ts. */
export function chainHash(r: Omit<Row, 'hash' | 'mac'>): string {
  return crypto.createHash('sha256').update(JSON.stringify([r.seq, r.ts, r.action, r.actor, r.source_ip, r.key_id, r.details, r.prev_hash])).digest('hex');
}

export const q = (s: string | null) => (s === null ? 'NULL' : `'${s.replace(/'/g, "''")}'`);
