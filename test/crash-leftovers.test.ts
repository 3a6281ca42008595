/**
 * What kill -9 leaves behind: a `keygen --out` file whose key never committed, and temporary files
 * of interrupted atomic writes. The next run that opens the home removes them.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { dsk, dskAsync, json, makeHome } from './helpers.js';

describe('leftovers of killed runs', () => {
  const base = makeHome();

  it('kill -9 between writing the --out file and the commit: the next run removes the file; the key does not exist', async () => {
    const out = path.join(base.dir, 'new.key');
    // A reader holding a shared lock keeps keygen's COMMIT waiting (rollback journal: the commit
    // needs an exclusive lock) after it wrote --out, so the kill lands in exactly that window.
    const reader = new Database(path.join(base.home, 'keys.db'), { readonly: true });
    reader.exec('BEGIN');
    reader.prepare('SELECT count(*) FROM keys').get();
    const p = dskAsync(['keygen', '--name', 'crashy', '--role', 'automation', '--out', out], { env: { ...base.env, DSK_BUSY_TIMEOUT_MS: '60000' } });
    let stderr = '';
    p.stderr.on('data', (d: Buffer) => (stderr += d));
    const exited = new Promise<number | null>((r) => p.on('exit', (c) => r(c)));
    try {
      for (let i = 0; i < 600 && !fs.existsSync(out); i++) await new Promise((r) => setTimeout(r, 50));
      expect(fs.existsSync(out), stderr).toBe(true);
      const leaked = JSON.parse(fs.readFileSync(out, 'utf8')).id;
      expect(fs.readdirSync(base.home).some((n) => n.startsWith(`.pending-file-${leaked}.`))).toBe(true);
      p.kill('SIGKILL');
      await exited;
    } finally {
      reader.exec('ROLLBACK');
      reader.close();
    }
    // The next run (any command that opens the home) settles it.
    const list = json(dsk(['keys', 'list', '--json'], { env: base.env }));
    expect(list).toEqual([]);
    expect(fs.existsSync(out)).toBe(false);
    expect(fs.readdirSync(base.home).filter((n) => n.startsWith('.pending-file-'))).toEqual([]);
    expect(dsk(['audit', 'verify'], { env: base.env }).code).toBe(0);
  });

  it('a committed key keeps its file; a file rewritten since is never removed', () => {
    const out = path.join(base.dir, 'kept.key');
    expect(dsk(['keygen', '--name', 'kept', '--role', 'automation', '--out', out], { env: base.env }).code).toBe(0);
    const id = JSON.parse(fs.readFileSync(out, 'utf8')).id;
    // A marker as a killed run would leave it, for a committed key and for a file reused since.
    const other = path.join(base.dir, 'reused.key');
    fs.writeFileSync(other, '{"id":"notthatkey"}\n', { mode: 0o600 });
    fs.writeFileSync(path.join(base.home, `.pending-file-${id}.4194303.json`), JSON.stringify({ key_id: id, file: out, pid: 4194303 }), { mode: 0o600 });
    fs.writeFileSync(path.join(base.home, `.pending-file-aaaaaaaaaaaa.4194303.json`), JSON.stringify({ key_id: 'aaaaaaaaaaaa', file: other, pid: 4194303 }), { mode: 0o600 });
    expect(dsk(['status'], { env: base.env }).code).toBe(0);
    expect(fs.existsSync(out)).toBe(true);
    expect(fs.existsSync(other)).toBe(true);
    expect(fs.readdirSync(base.home).filter((n) => n.startsWith('.pending-file-'))).toEqual([]);
  });

  it('temporary files of dead writers are removed at open; a live writer\'s stays', () => {
    const audit = path.join(base.home, 'audit_log');
    const dead = path.join(audit, '.HEAD.4194303-0123456789ab.tmp');
    const legacy = path.join(audit, '.HEAD.abcdefabcdef.tmp');
    const fresh = path.join(audit, '.HEAD.fedcbafedcba.tmp');
    const live = path.join(base.home, `.dsk.json.${process.pid}-0123456789ab.tmp`);
    for (const f of [dead, legacy, fresh, live]) fs.writeFileSync(f, '{}', { mode: 0o600 });
    const hourAgo = new Date(Date.now() - 3_600_000);
    fs.utimesSync(legacy, hourAgo, hourAgo);
    expect(dsk(['status'], { env: base.env }).code).toBe(0);
    expect([dead, legacy, fresh, live].map((f) => fs.existsSync(f))).toEqual([false, false, true, true]);
    fs.rmSync(fresh);
    fs.rmSync(live);
  });
});
