/**
 * Crash safety of `dsk rotate --due`: SIGKILL a real run at random instants, several times, then
 * rerun to completion. After every kill each key is untouched or fully rotated with its audit row;
 * at the end every original key has exactly one active successor, the audit chain is intact and
 * both SQLite files pass integrity_check.
 *
 * 400 keys (not a few thousand): each successor costs one real PBKDF2 derivation at 100,000
 * iterations (~25 ms of a core), so 400 keys is 5-25 s of the suite's shared 2-core budget per run.
 * The originals are inserted directly (rotation never opens an old key's material).
 */
import path from 'node:path';
import crypto from 'node:crypto';
import fs from 'node:fs';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { dskAsync, makeHome, tmpDir } from './helpers.js';
import { GENESIS_HASH, rowHash } from '../src/audit/chain.js';
import type { AuditRow } from '../src/store/store.js';

const N = 400;

/** Read-write, as the next dsk run opens it: a kill mid-commit leaves a hot journal to roll back. */
function open(home: string) {
  const d = new Database(path.join(home, 'keys.db'));
  d.prepare('ATTACH DATABASE ? AS audit').run(path.join(home, 'audit_log', 'audit.db'));
  return d;
}

/** Checks the invariant; returns how many originals are rotated. */
function check(home: string, originals: Set<string>, final: boolean): number {
  const d = open(home);
  try {
    expect(d.pragma('integrity_check', { simple: true })).toBe('ok');
    expect(d.pragma('audit.integrity_check', { simple: true })).toBe('ok');
    const rows = d.prepare('SELECT id, status, replaces, replaced_by FROM keys').all() as { id: string; status: string; replaces: string | null; replaced_by: string | null }[];
    const byId = new Map(rows.map((r) => [r.id, r]));
    const rotations = (d.prepare("SELECT key_id, details FROM audit.events WHERE action = 'KEY_ROTATION'").all() as { key_id: string; details: string }[]).map((r) => JSON.parse(r.details));
    const audited = new Map<string, string>();
    for (const r of rotations) {
      expect(audited.has(r.old_key_id)).toBe(false); // never rotated twice
      audited.set(r.old_key_id, r.new_key_id);
    }
    let rotated = 0;
    for (const id of originals) {
      const o = byId.get(id)!;
      if (o.status === 'active') {
        expect(o.replaced_by).toBeNull();
        expect(audited.has(id)).toBe(false);
        continue;
      }
      rotated++;
      expect(o.status).toBe('grace');
      const s = byId.get(o.replaced_by!)!;
      expect(s).toMatchObject({ status: 'active', replaces: id, replaced_by: null });
      expect(audited.get(id)).toBe(s.id);
    }
    // no successor without its original's rotation, no stray rows
    const successors = rows.filter((r) => !originals.has(r.id));
    expect(successors.length).toBe(rotated);
    for (const s of successors) expect(byId.get(s.replaces!)?.replaced_by).toBe(s.id);
    expect(audited.size).toBe(rotated);
    // the hash chain is unbroken
    const chain = d.prepare('SELECT * FROM audit.events ORDER BY seq').all() as AuditRow[];
    let prev = GENESIS_HASH;
    chain.forEach((r, i) => {
      expect(r.seq).toBe(i + 1);
      expect(r.prev_hash).toBe(prev);
      expect(rowHash(r)).toBe(r.hash);
      prev = r.hash;
    });
    if (final) expect(rotated).toBe(originals.size);
    return rotated;
  } finally {
    d.close();
  }
}

describe('rotate --due under SIGKILL', () => {
  it(`leaves ${N} keys untouched or fully rotated, and a rerun finishes the job`, async () => {
    const { home, env } = makeHome(tmpDir('dsk-crash-'), { shares: 2, threshold: 2 });
    const d = new Database(path.join(home, 'keys.db'));
    const ins = d.prepare(
      `INSERT INTO keys (id, name, role, status, key_hash, salt, secret_sealed, created_at, rotate_every_ms, updated_at)
       VALUES (?, ?, 'automation', 'active', ?, ?, ?, ?, 90 * 86400000, ?)`,
    );
    const t = Date.now() - 100 * 86_400_000; // due (90 d); their successors are not
    const originals = new Set<string>();
    d.transaction(() => {
      for (let i = 0; i < N; i++) {
        const id = crypto.randomBytes(6).toString('hex');
        originals.add(id);
        ins.run(id, `svc-${i}`, crypto.randomBytes(32).toString('hex'), crypto.randomBytes(16).toString('hex'), crypto.randomBytes(60), t, t);
      }
    })();
    d.close();

    const run = () => {
      const p = dskAsync(['rotate', '--due', '--json'], { env });
      let err = '';
      p.stderr.on('data', (x) => (err += x));
      const done = new Promise<{ code: number | null; signal: string | null; err: string }>((res) => p.on('exit', (code, signal) => res({ code, signal, err })));
      return { p, done };
    };

    let last = 0;
    const kills: number[] = [];
    for (let i = 0; i < 4; i++) {
      const { p, done } = run();
      const delay = 2000 + crypto.randomInt(5000);
      kills.push(delay);
      await new Promise((r) => setTimeout(r, delay));
      p.kill('SIGKILL');
      const r = await done;
      if (r.code !== null) expect(r, r.err).toMatchObject({ code: 0 }); // finished before the kill
      const rotated = check(home, originals, false);
      expect(rotated).toBeGreaterThanOrEqual(last);
      last = rotated;
    }
    console.log(`SIGKILL after ${kills.join(', ')} ms; ${last} of ${N} rotated before the final run`);
    const { done } = run();
    const r = await done;
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    check(home, originals, true);
    expect(fs.existsSync(path.join(home, 'dsk.lock'))).toBe(false);
    // and a further run has nothing left to do
    const again = run();
    expect((await again.done).code).toBe(0);
    check(home, originals, true);
  }, 240_000);
});
