/**
 * A process killed in the middle of a write leaves a hot rollback journal. Read-only commands
 * (status, keys list, doctor's neighbours) must still work afterwards: the store rolls the journal
 * back through a short-lived writable handle, and the half-written change is gone.
 */
import path from 'node:path';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { dsk, json, makeHome, ROOT, tmpDir } from './helpers.js';

// Holds a transaction open with its pages spilled to keys.db (cache_size 1), then waits to be killed.
const WRITER = `
const Database = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'better-sqlite3'))});
const db = new Database(process.argv[1]);
db.pragma('journal_mode = DELETE');
db.pragma('cache_size = 1');
db.exec('BEGIN IMMEDIATE');
db.exec('CREATE TABLE half_written (b BLOB)');
const ins = db.prepare('INSERT INTO half_written VALUES (randomblob(4000))');
for (let i = 0; i < 2000; i++) ins.run();
process.stdout.write('ready\\n');
setInterval(() => {}, 1000);
`;

describe('a write cut by kill -9', () => {
  it('leaves a hot journal that read-only commands roll back instead of failing', async () => {
    const { home, env } = makeHome(tmpDir('dsk-hot-'), { shares: 2, threshold: 2 });
    const before = json(dsk(['keys', 'list', '--json'], { env }));
    const keysDb = path.join(home, 'keys.db');
    const p = spawn(process.execPath, ['-e', WRITER, keysDb], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      p.stdout.on('data', (d) => String(d).includes('ready') && resolve());
      p.on('exit', (c) => reject(new Error(`writer exited ${c} before it was ready`)));
    });
    p.kill('SIGKILL');
    await new Promise((r) => p.on('exit', r));
    expect(fs.statSync(keysDb + '-journal').size).toBeGreaterThan(0); // hot: the crash left it behind

    const st = dsk(['status', '--json'], { env });
    expect(st.code, st.stderr).toBe(0);
    expect(json(dsk(['keys', 'list', '--json'], { env }))).toEqual(before);
    expect(fs.existsSync(keysDb + '-journal')).toBe(false);
    const tables = dsk(['audit', 'verify', '--json'], { env });
    expect(tables.code, tables.stderr).toBe(0);
  });
});
