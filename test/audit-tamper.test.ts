/**
 * Tampering done the way an attacker with write access to audit_log/audit.db would do it: with the
 * sqlite3 command-line tool. Each case must make `dsk audit verify` exit 5 naming the seq and kind.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dsk, json, makeHome, requireTool, tmpDir } from './helpers.js';
import { chainHash, q, rows, sqlite, writeRows } from './audit-helpers.js';

const SQLITE = requireTool('sqlite3', 'the audit tampering tests');

describe.skipIf(!SQLITE)('dsk audit verify detects tampering', () => {
  let base: ReturnType<typeof makeHome>;
  beforeAll(() => {
    base = makeHome();
    writeRows(base.home, 10, { env: base.env }); // keyed rows 2..11 after MASTER_INIT
  });

  /** A fresh copy of the base home to tamper with. */
  function copy() {
    const dir = tmpDir('dsk-tamper-');
    const home = path.join(dir, 'home');
    fs.cpSync(base.home, home, { recursive: true });
    const db = path.join(home, 'audit_log', 'audit.db');
    return { home, db, keyed: { ...base.env, DSK_HOME: home }, unkeyed: { DSK_HOME: home } };
  }

  function expectBreach(env: NodeJS.ProcessEnv, seq: number, kind: string) {
    const j = dsk(['audit', 'verify', '--json'], { env });
    expect(j.code, j.stderr).toBe(5);
    expect(j.stderr).toContain(`broken at seq ${seq} (${kind})`);
    expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, breach: { seq, kind } });
  }

  it('an untouched chain verifies, with and without unsealing, and says which it did', () => {
    const t = copy();
    const keyed = dsk(['audit', 'verify'], { env: t.keyed });
    expect(keyed.code, keyed.stderr).toBe(0);
    expect(keyed.stdout).toMatch(/audit chain OK: 11 rows/);
    expect(keyed.stdout).toContain('MACs checked: authenticated through seq 11');
    expect(keyed.stdout).toContain('audit_log/HEAD matches (seq 11, MAC valid)');
    const plain = dsk(['audit', 'verify'], { env: t.unkeyed });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('structure only; MACs not checked: unseal to check');
    expect(json(dsk(['audit', 'verify', '--json'], { env: t.unkeyed }))).toMatchObject({ ok: true, rows: 11, macs_checked: false, mode: 'structure' });
  });

  it('edited: a details field changed', () => {
    const t = copy();
    sqlite(t.db, `UPDATE events SET details = '{"key_id":"000000000000"}' WHERE seq = 5`);
    expectBreach(t.keyed, 5, 'edited');
    expectBreach(t.unkeyed, 5, 'edited');
  });

  it('deleted: a middle row removed', () => {
    const t = copy();
    sqlite(t.db, 'DELETE FROM events WHERE seq = 6');
    expectBreach(t.keyed, 6, 'deleted');
  });

  it('deleted: the first rows removed', () => {
    const t = copy();
    sqlite(t.db, 'DELETE FROM events WHERE seq <= 2');
    expectBreach(t.unkeyed, 1, 'deleted');
  });

  it('truncated: the last rows cut off (HEAD remembers the head)', () => {
    const t = copy();
    sqlite(t.db, 'DELETE FROM events WHERE seq >= 9');
    expectBreach(t.keyed, 9, 'truncated');
    expectBreach(t.unkeyed, 9, 'truncated');
    // HEAD must not follow the truncated chain forward when new rows arrive.
    writeRows(t.home, 3, { env: t.keyed });
    expectBreach(t.keyed, 11, 'truncated');
  });

  it('truncated: HEAD itself deleted', () => {
    const t = copy();
    fs.rmSync(path.join(t.home, 'audit_log', 'HEAD'));
    expectBreach(t.unkeyed, 12, 'truncated');
  });

  it('inserted: rows renumbered and a well-formed row slipped in', () => {
    const t = copy();
    const before = rows(t.db);
    const r3 = before.find((r) => r.seq === 3)!;
    const fake = { seq: 4, ts: r3.ts, action: 'KEY_CREATE', actor: 'mallory', source_ip: null, key_id: null, details: '{}', prev_hash: r3.hash };
    sqlite(t.db, 'UPDATE events SET seq = seq + 1000 WHERE seq >= 4; UPDATE events SET seq = seq - 999 WHERE seq >= 1004;');
    sqlite(t.db, `INSERT INTO events VALUES (4, ${q(fake.ts)}, 'KEY_CREATE', 'mallory', NULL, NULL, '{}', ${q(fake.prev_hash)}, ${q(chainHash(fake))}, NULL)`);
    expectBreach(t.keyed, 4, 'inserted');
    expectBreach(t.unkeyed, 4, 'inserted');
  });

  it('reordered: two rows swapped', () => {
    const t = copy();
    sqlite(t.db, 'UPDATE events SET seq = -1 WHERE seq = 5; UPDATE events SET seq = 5 WHERE seq = 6; UPDATE events SET seq = 6 WHERE seq = -1;');
    expectBreach(t.keyed, 5, 'reordered');
    expectBreach(t.unkeyed, 5, 'reordered');
  });

  it('forged: an edited row with its hash recomputed (and the next prev_hash) fails its MAC', () => {
    const t = copy();
    const r = rows(t.db);
    const r5 = { ...r[4], details: '{"key_id":"000000000000","name":"forged"}' };
    const h5 = chainHash(r5);
    sqlite(t.db, `UPDATE events SET details = ${q(r5.details)}, hash = ${q(h5)} WHERE seq = 5; UPDATE events SET prev_hash = ${q(h5)} WHERE seq = 6;`);
    expectBreach(t.keyed, 5, 'forged');
    // Without the key the break shows at the next row, whose own hash no longer matches.
    expectBreach(t.unkeyed, 6, 'edited');
  });

  it('forged: the whole tail re-hashed and HEAD rewritten; only the MACs can tell', () => {
    const t = copy();
    const r = rows(t.db);
    let prev = r[3].hash;
    const stmts: string[] = [];
    for (const row of r.slice(4)) {
      const edited = { ...row, prev_hash: prev, details: row.seq === 5 ? '{"forged":true}' : row.details };
      const h = chainHash(edited);
      stmts.push(`UPDATE events SET details = ${q(edited.details)}, prev_hash = ${q(prev)}, hash = ${q(h)} WHERE seq = ${row.seq};`);
      prev = h;
    }
    sqlite(t.db, stmts.join('\n'));
    const headFile = path.join(t.home, 'audit_log', 'HEAD');
    const head = JSON.parse(fs.readFileSync(headFile, 'utf8'));
    fs.writeFileSync(headFile, JSON.stringify({ ...head, hash: prev, mac: null }) + '\n', { mode: 0o600 });
    expectBreach(t.keyed, 5, 'forged');
    const plain = dsk(['audit', 'verify'], { env: t.unkeyed });
    expect(plain.code).toBe(0);
    expect(plain.stdout).toContain('structure only; MACs not checked');
  });

  it('forged: a HEAD file with a MAC made without the key', () => {
    const t = copy();
    const headFile = path.join(t.home, 'audit_log', 'HEAD');
    const head = JSON.parse(fs.readFileSync(headFile, 'utf8'));
    fs.writeFileSync(headFile, JSON.stringify({ ...head, seq: 20, mac: 'ab'.repeat(32) }) + '\n', { mode: 0o600 });
    expectBreach(t.keyed, 20, 'forged');
    expectBreach(t.unkeyed, 12, 'truncated');
  });

  it('unkeyed rows: covered by a later keyed row, else reported as unauthenticated (and --strict fails)', () => {
    const t = copy();
    writeRows(t.home, 2, { env: t.unkeyed, tag: 'nokey' }); // rows 12, 13 without MAC (UNSEAL_FAILURE)
    const tail = json(dsk(['audit', 'verify', '--json'], { env: t.keyed }));
    expect(tail).toMatchObject({ ok: true, authenticated_through: 11, unauthenticated: { from: 12, to: 13, rows: 2 } });
    expect(dsk(['audit', 'verify'], { env: t.keyed }).stdout).toContain('rows 12–13 (2) were written without the key');
    const strict = dsk(['audit', 'verify', '--strict'], { env: t.keyed });
    expect(strict.code).toBe(5);
    expect(strict.stderr).toContain('rows 12–13 are not covered by a MAC');
    writeRows(t.home, 1, { env: t.keyed }); // row 14 keyed: covers 12 and 13
    expect(json(dsk(['audit', 'verify', '--json'], { env: t.keyed }))).toMatchObject({ ok: true, authenticated_through: 14, unauthenticated: null });
    // A NULL mac on a row that was written keyed is not a way around the MAC: only the closed
    // list of actions may be unkeyed, so the row is named as forged.
    sqlite(t.db, 'UPDATE events SET mac = NULL WHERE seq = 14');
    expectBreach(t.keyed, 14, 'forged');
    expectBreach(t.unkeyed, 14, 'forged');
  });

  it('wrong passphrases: verify does not fall back silently, it fails with exit 3', () => {
    const t = copy();
    const bad = path.join(path.dirname(t.home), 'bad.pass');
    fs.writeFileSync(bad, 'not-a-custodian\n', { mode: 0o600 });
    const r = dsk(['audit', 'verify', '--passphrase-file', bad, '--passphrase-file', bad, '--passphrase-file', bad], { env: t.unkeyed });
    expect(r.code).not.toBe(0);
    expect([3, 5]).toContain(r.code);
  });
});
