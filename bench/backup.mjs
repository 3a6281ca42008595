// Backup and restore of a large home: 100,000 keys and 1,000,000 audit rows (real chain hashes and
// MACs), `dsk backup` and `dsk restore` (the real CLI, spawned) next to the sqlite3 shell's
// `.backup` and `.restore` of the same two files in the same run. The baseline copies pages only;
// dsk also takes both files at one instant, runs integrity_check and the chain walk on the copy,
// hashes, archives and reads the archive back (backup), and checks all of that again (restore).
// Run after `npx tsc -p .`:
//   node bench/backup.mjs                        # 100,000 keys, 1,000,000 audit rows
//   node bench/backup.mjs --keys 10000 --rows 100000   # quicker
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DSK = path.join(root, 'bin', 'dsk.js');
const { default: Database } = await import('better-sqlite3');
const { openUnsealed, defaultEnv } = await import(path.join(root, 'dist/app/home.js'));
const { passphrasesFromFiles } = await import(path.join(root, 'dist/cli/secrets.js'));
const { rowMac, chainHash } = await import(path.join(root, 'dist/audit/chain.js'));
const { publishHead } = await import(path.join(root, 'dist/audit/head.js'));

const argv = process.argv.slice(2);
const arg = (name, dflt) => (argv.includes(name) ? Number(argv[argv.indexOf(name) + 1]) : dflt);
const KEYS = arg('--keys', 100_000);
const ROWS = arg('--rows', 1_000_000);
const ROUNDS = arg('--rounds', 2);
const REUSE = argv.includes('--home') ? argv[argv.indexOf('--home') + 1] : null;
const fmt = (n) => Math.round(n).toLocaleString('en-US');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-bench-backup-'));
fs.chmodSync(tmp, 0o700);

const q = (a) => `'${String(a).replace(/'/g, `'\\''`)}'`;

/** Runs a command line under bash; wall time, and the CPU time (user + sys) of what it ran (`times`). */
function run(line) {
  const t0 = performance.now();
  const r = spawnSync('bash', ['-c', `${line} >/dev/null; s=$?; times; exit $s`], { env: { ...process.env, NO_COLOR: '1' }, encoding: 'utf8', maxBuffer: 1 << 26 });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${line} exited ${r.status}: ${r.stderr}`);
  const sec = (t) => { const m = /(\d+)m([\d.]+)s/.exec(t); return Number(m[1]) * 60 + Number(m[2]); };
  const [u, sy] = r.stdout.trim().split('\n').pop().split(/\s+/);
  return { ms, cpu: (sec(u) + sec(sy)) * 1000 };
}
const dskLine = (...args) => [process.execPath, DSK, ...args].map(q).join(' ');

// --- the home ------------------------------------------------------------------------------------
const home = REUSE ?? path.join(tmp, 'home');
const pass = [1, 2, 3].map((i) => {
  const f = path.join(tmp, `p${i}`);
  fs.writeFileSync(f, `bench-passphrase-${i}-${crypto.randomBytes(4).toString('hex')}\n`, { mode: 0o600 });
  return f;
});
if (!REUSE) run(dskLine('init', '--home', home, '--shares', '3', '--threshold', '2', '--kdf', 'scrypt', '--kdf-cost', '15', ...pass.flatMap((p) => ['--passphrase-file', p])));
const h = REUSE ? null : await openUnsealed(home, defaultEnv('bench'), { passphrases: async () => passphrasesFromFiles(pass.slice(0, 2)), pin: async () => Buffer.alloc(0) });
const t0 = performance.now();
if (h) {
  const auditKey = Buffer.from(h.auditKey);
  // Bench data only: journals off and no fsync while loading.
  const db = new Database(path.join(home, 'keys.db'));
  db.prepare('ATTACH DATABASE ? AS audit').run(path.join(home, 'audit_log', 'audit.db'));
  for (const p of ['journal_mode = OFF', 'audit.journal_mode = OFF', 'synchronous = OFF', 'audit.synchronous = OFF']) db.pragma(p);
  const last = db.prepare('SELECT seq, hash FROM audit.events ORDER BY seq DESC LIMIT 1').get();
  const insKey = db.prepare("INSERT INTO keys (id, name, owner, role, status, key_hash, salt, secret_sealed, created_at, updated_at, options) VALUES (?, ?, 'bench', 'developer', 'active', ?, ?, ?, ?, ?, '{}')");
  const insRow = db.prepare('INSERT INTO audit.events VALUES (?,?,?,?,?,?,?,?,?,?)');
  let prev = last.hash;
  let seq = last.seq;
  const now = Date.now();
  db.exec('BEGIN');
  for (let i = 0; i < ROWS; i++) {
    seq++;
    const ts = new Date(now - (ROWS - i) * 1000).toISOString();
    const isKey = i < KEYS;
    const id = isKey ? i.toString(16).padStart(12, '0') : null;
    if (isKey) insKey.run(id, `svc-${i}`, crypto.randomBytes(32).toString('hex'), crypto.randomBytes(16).toString('hex'), crypto.randomBytes(60), now, now);
    const action = isKey ? 'KEY_CREATE' : 'AUTH_FAILURE';
    const details = isKey ? `{"name":"svc-${i}","role":"developer"}` : `{"reason":"NOT_FOUND","n":${i}}`;
    const ip = isKey ? null : `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    const actor = isKey ? 'bench' : 'gateway';
    const hash = chainHash(seq, ts, action, actor, ip, id, details, prev);
    insRow.run(seq, ts, action, actor, ip, id, details, prev, hash, rowMac(auditKey, hash));
    prev = hash;
    if (i % 100_000 === 99_999) db.exec('COMMIT; BEGIN');
  }
  db.exec('COMMIT');
  for (const p of ['journal_mode = DELETE', 'audit.journal_mode = DELETE']) db.pragma(p);
  db.close();
  await publishHead(h.store, home, auditKey, Date.now());
  await h.close();
}
const sizeOf = (f) => fs.statSync(f).size;
const mib = (b) => (b / 1024 / 1024).toFixed(0);
console.log(`home: ${fmt(KEYS)} keys, ${fmt(ROWS)} audit rows; keys.db ${mib(sizeOf(path.join(home, 'keys.db')))} MiB, audit.db ${mib(sizeOf(path.join(home, 'audit_log', 'audit.db')))} MiB (built in ${(performance.now() - t0) / 1000 | 0} s)`);

// --- backup and restore, alternating with the baseline ---------------------------------------------
const best = {};
const keep = (name, r) => {
  const b = (best[name] ??= { ms: Infinity, cpu: Infinity });
  b.ms = Math.min(b.ms, r.ms);
  b.cpu = Math.min(b.cpu, r.cpu);
};
let archiveBytes = 0;
const pauses = [];

/**
 * What a gateway sees during a backup: another process's writer (here a worker thread with its own
 * connection) commits a usage bump every 20 ms, as the gateway's flush does, and records how long
 * each commit waited. The longest wait is the pause the snapshot imposes on writers.
 */
function startWriter(dir) {
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const Database = require(workerData.bs3);
    const db = new Database(workerData.db);
    db.pragma('busy_timeout = 60000');
    db.pragma('journal_mode = DELETE');
    db.pragma('synchronous = FULL');
    const bump = db.prepare("UPDATE keys SET use_count = use_count + 1 WHERE id = (SELECT id FROM keys LIMIT 1)");
    let stop = false, max = 0, n = 0;
    parentPort.on('message', () => (stop = true));
    (async () => {
      while (!stop) {
        const t = performance.now();
        db.transaction(() => bump.run()).immediate();
        max = Math.max(max, performance.now() - t);
        n++;
        await new Promise((r) => setTimeout(r, 20));
      }
      db.close();
      parentPort.postMessage({ max, n });
    })();`;
  const wk = new Worker(code, { eval: true, workerData: { db: path.join(dir, 'keys.db'), bs3: path.join(root, 'node_modules', 'better-sqlite3') } });
  let failed = null;
  wk.on('error', (e) => (failed = e));
  return {
    stop: () =>
      new Promise((resolve, reject) => {
        if (failed) return reject(failed);
        wk.once('error', reject);
        wk.once('message', resolve);
        wk.postMessage('stop');
      }),
  };
}
for (let r = 0; r < ROUNDS; r++) {
  const dir = path.join(tmp, `round${r}`);
  fs.mkdirSync(dir, { mode: 0o700 });
  const tar = path.join(dir, 'home.tar');
  const base = (n) => q(path.join(dir, n));
  const writer = startWriter(home);
  keep('dsk backup', run(dskLine('--home', home, 'backup', '--out', tar)));
  const w = await writer.stop();
  pauses.push(w);
  archiveBytes = sizeOf(tar);
  keep('sqlite3 .backup', run(`sqlite3 ${q(home + '/keys.db')} ".backup ${base('keys.bak')}" && sqlite3 ${q(home + '/audit_log/audit.db')} ".backup ${base('audit.bak')}"`));
  keep('dsk restore', run(dskLine('restore', tar, '--home', path.join(dir, 'restored'))));
  keep('sqlite3 .restore', run(`sqlite3 ${base('k.db')} ".restore ${base('keys.bak')}" && sqlite3 ${base('a.db')} ".restore ${base('audit.bak')}"`));
  fs.rmSync(dir, { recursive: true, force: true });
}
const s = (ms) => `${(ms / 1000).toFixed(2)} s`;
const row = (what, a, b) => console.log(`| ${what} | ${s(best[a].ms)} / ${s(best[a].cpu)} | ${s(best[b].ms)} / ${s(best[b].cpu)} | ${(best[a].ms / best[b].ms).toFixed(1)}× / ${(best[a].cpu / best[b].cpu).toFixed(1)}× |`);
if (ROUNDS) {
  console.log('\n| operation | dsk (wall / CPU) | sqlite3 shell (wall / CPU) | ratio (wall / CPU) |');
  console.log('|---|---|---|---|');
  row('backup: dsk backup vs .backup of both files', 'dsk backup', 'sqlite3 .backup');
  row('restore: dsk restore vs .restore of both files', 'dsk restore', 'sqlite3 .restore');
  console.log(`\narchive ${mib(archiveBytes)} MiB; best of ${ROUNDS} rounds, alternating dsk and the baseline`);
  console.log(`a writer committing every 20 ms during dsk backup waited at most ${pauses.map((p) => `${fmt(p.max)} ms (${p.n} commits)`).join(', ')}`);
}
if (argv.includes('--keep')) console.log(`kept ${tmp}`);
else fs.rmSync(tmp, { recursive: true, force: true });
