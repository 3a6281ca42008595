/**
 * The audit store under crashes, concurrent writers and failing storage, and a check that no secret
 * ever reaches a row.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { dsk, json, makeHome, requireTool, ROOT, snapshot } from './helpers.js';
import { rows, sqlite, writeRows, writerProcess } from './audit-helpers.js';

const SQLITE = requireTool('sqlite3', 'the audit durability tests');

function auditDb(home: string) {
  return path.join(home, 'audit_log', 'audit.db');
}

function keyCount(home: string): number {
  return Number(sqlite(path.join(home, 'keys.db'), 'SELECT count(*) FROM keys').trim());
}

describe.skipIf(!SQLITE)('audit durability', () => {
  it('crash: SIGKILL at random moments loses no reported commit and leaves a valid chain', async () => {
    const { home, env } = makeHome();
    const reported: number[] = [];
    for (let round = 0; round < 4; round++) {
      const child = writerProcess(home, 100_000, { env, tag: `crash${round}`, batch: round % 2 ? 5 : 1 });
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) if (l.startsWith('commit ')) reported.push(Number(l.slice(7)));
      });
      // Wait for the first commit, then kill at a random moment while it keeps writing.
      const seen = reported.length;
      await new Promise<void>((resolve, reject) => {
        const t = setInterval(() => {
          if (reported.length > seen) (clearInterval(t), resolve());
        }, 10);
        child.on('exit', (code) => (clearInterval(t), code === null ? resolve() : reject(new Error(`writer exited ${code}`))));
      });
      await new Promise((r) => setTimeout(r, 20 + Math.floor(Math.random() * 250)));
      child.kill('SIGKILL');
      await new Promise((r) => child.on('exit', r));
    }
    expect(reported.length).toBeGreaterThan(5);
    expect(sqlite(path.join(home, 'keys.db'), 'PRAGMA integrity_check').trim()).toBe('ok');
    expect(sqlite(auditDb(home), 'PRAGMA integrity_check').trim()).toBe('ok');
    const v = dsk(['audit', 'verify', '--json'], { env });
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, macs_checked: true });
    const seqs = new Set(rows(auditDb(home)).map((r) => r.seq));
    for (const s of reported) expect(seqs.has(s)).toBe(true);
    // HEAD is never ahead of the database, and a later writer brings it up to date.
    writeRows(home, 1, { env });
    expect(JSON.parse(v.stdout).head_file.state).toMatch(/match|behind/);
    expect(json(dsk(['audit', 'verify', '--json'], { env })).head_file.state).toBe('match');
  });

  it('concurrency: several processes append at once into one chain, no fork, no duplicate', async () => {
    const { home, env } = makeHome();
    const writers = 3;
    const each = 30;
    const done = await Promise.all(
      Array.from({ length: writers }, (_, i) => {
        const p = writerProcess(home, each, { env, tag: `c${i}`, batch: i % 2 ? 4 : 1 });
        let out = '';
        let err = '';
        p.stdout.on('data', (d: Buffer) => (out += d));
        p.stderr.on('data', (d: Buffer) => (err += d));
        return new Promise<{ code: number | null; commits: number[]; err: string }>((resolve) =>
          p.on('exit', (code) => resolve({ code, err, commits: out.split('\n').filter((l) => l.startsWith('commit ')).map((l) => Number(l.slice(7))) })),
        );
      }),
    );
    for (const d of done) expect(d.code, d.err).toBe(0);
    const all = rows(auditDb(home));
    expect(all.length).toBe(1 + writers * each);
    expect(all.map((r) => r.seq)).toEqual(Array.from({ length: all.length }, (_, i) => i + 1));
    for (let i = 0; i < writers; i++) expect(all.filter((r) => r.actor === `writer-c${i}`).length).toBe(each);
    const v = json(dsk(['audit', 'verify', '--json'], { env }));
    expect(v).toMatchObject({ ok: true, rows: 1 + writers * each, authenticated_through: 1 + writers * each, head_file: { state: 'match' } });
  });

  it('fail closed: when the audit journal cannot be created, keygen exits 7 and no key is created', () => {
    const { home, env } = makeHome();
    const before = keyCount(home);
    // Root ignores file modes, so make the store unwritable in a way root cannot bypass: a
    // directory where SQLite must create audit.db's rollback journal.
    fs.mkdirSync(path.join(home, 'audit_log', 'audit.db-journal'));
    const snap = snapshot(home);
    const r = dsk(['keygen', '--name', 'blocked', '--role', 'developer'], { env });
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toMatch(/dsk: error: cannot use the store \(keys\.db \+ audit_log\/audit\.db\): I\/O error \(SQLITE_[A-Z_]+\); nothing was changed/);
    expect(r.stdout).toBe('');
    expect(snapshot(home)).toEqual(snap);
    fs.rmdirSync(path.join(home, 'audit_log', 'audit.db-journal'));
    expect(keyCount(home)).toBe(before);
    expect(json(dsk(['audit', 'verify', '--json'], { env })).ok).toBe(true);
  });

  it('fail closed: when audit.db stays locked past the busy timeout, the commit fails, exit 6 (lock held), no key', async () => {
    const { home, env } = makeHome();
    const before = keyCount(home);
    const rowsBefore = rows(auditDb(home)).length;
    // Another process holds a read transaction on audit.db: keygen can write its journal but cannot
    // commit (it needs the exclusive lock), so the failure comes at COMMIT, after the INSERTs.
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const D = require(${JSON.stringify(path.join(ROOT, 'node_modules', 'better-sqlite3'))});
         const db = new D(process.argv[1]); db.exec('BEGIN'); db.prepare('SELECT count(*) FROM events').get();
         process.stdout.write('locked\\n'); setTimeout(() => {}, 60000);`,
        auditDb(home),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve) => holder.stdout.on('data', (d: Buffer) => d.toString().includes('locked') && resolve()));
      const r = dsk(['keygen', '--name', 'blocked', '--role', 'developer', '--json'], { env: { ...env, DSK_BUSY_TIMEOUT_MS: '300' } });
      expect(r.code, r.stderr).toBe(6);
      expect(r.stderr).toContain('stayed locked by another process');
      expect(r.stdout).toBe('');
    } finally {
      holder.kill('SIGKILL');
      await new Promise((r) => holder.on('exit', r));
    }
    expect(keyCount(home)).toBe(before);
    expect(rows(auditDb(home)).length).toBe(rowsBefore);
    expect(json(dsk(['audit', 'verify', '--json'], { env })).ok).toBe(true);
  });

  it('no secret in any row: a full lifecycle, then every row, HEAD, exports and archives are searched', () => {
    const h = makeHome();
    const env = h.env;
    const secrets: string[] = [];
    for (const p of h.pass) secrets.push(fs.readFileSync(p, 'utf8').trim());
    const k1 = json(dsk(['keygen', '--name', 'svc-one', '--role', 'developer', '--json'], { env }));
    const outFile = path.join(h.dir, 'k2.key');
    json(dsk(['keygen', '--name', 'svc-two', '--role', 'automation', '--out', outFile, '--json'], { env }));
    const k2 = JSON.parse(fs.readFileSync(outFile, 'utf8'));
    for (const k of [k1, k2]) secrets.push(k.api_key, k.api_key.split('_')[2], k.api_secret, k.api_secret.slice(4));
    expect(dsk(['keys', 'revoke', k1.id, '--reason', 'rotation drill', '--json'], { env }).code).toBe(0);
    // A failed unseal is audited too (without a MAC); its wrong passphrase must not be recorded.
    const wrong = path.join(h.dir, 'wrong.pass');
    fs.writeFileSync(wrong, 'wrong-passphrase-6c1e2f\n', { mode: 0o600 });
    secrets.push('wrong-passphrase-6c1e2f');
    expect(dsk(['keygen', '--name', 'x', '--role', 'developer'], { env: { ...env, DSK_PASSPHRASE_FILES: [wrong, wrong, wrong].join(':') } }).code).not.toBe(0);
    const master = path.join(h.dir, 'mk.bin');
    fs.writeFileSync(master, Buffer.alloc(32, 0x5a), { mode: 0o600 });
    secrets.push('5a'.repeat(32));
    dsk(['derive', '--master-key-file', master, '--salt', '00112233445566778899aabbccddeeff'], { env });
    expect(dsk(['status'], { env }).code).toBe(0);
    const exported = dsk(['audit', 'export', '--format', 'jsonl'], { env });
    expect(exported.code).toBe(0);
    const csv = dsk(['audit', 'export', '--format', 'csv'], { env }).stdout;
    const all = rows(auditDb(h.home));
    const dump = sqlite(auditDb(h.home), '.dump');
    const file = fs.readFileSync(auditDb(h.home)).toString('latin1');
    const archive = path.join(h.dir, 'a.jsonl.gz');
    expect(dsk(['audit', 'archive', '--before', '0s', '--out', archive], { env }).code).toBe(0);
    expect(all.map((r) => r.action)).toEqual(expect.arrayContaining(['MASTER_INIT', 'KEY_CREATE', 'KEY_REVOKE', 'UNSEAL_FAILURE']));
    const haystacks = {
      rows: JSON.stringify(all),
      dump,
      file,
      export: exported.stdout,
      csv,
      archive: zlib.gunzipSync(fs.readFileSync(archive)).toString('utf8'),
    };
    // The haystacks are the real thing: they hold the key ids and the actions of the run.
    for (const text of Object.values(haystacks)) expect(text).toContain(k2.id);
    Object.assign(haystacks, { head: fs.readFileSync(path.join(h.home, 'audit_log', 'HEAD'), 'utf8'), after_archive: sqlite(auditDb(h.home), '.dump') });
    for (const s of secrets) {
      expect(s.length).toBeGreaterThan(8);
      for (const [where, text] of Object.entries(haystacks)) expect(text.includes(s), `${where} contains a secret`).toBe(false);
    }
  });
});
