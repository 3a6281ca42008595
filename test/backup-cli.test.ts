/**
 * dsk backup / dsk restore, spawned as an operator runs them: the round trip (plain, with
 * fragments, encrypted with age), and each bad input of issue 14 with its exit code and a proof
 * that nothing was left behind: a newer archive, a truncated or tampered one, a wrong identity, an
 * existing target or output, a full disk.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { dsk, json, makeHome, requireTool, snapshot, tmpDir } from './helpers.js';
import { copyHome, fails, passArgs } from './cli-support.js';
import { tarHeader, tarStream } from '../src/kernel/tar.js';
import { chainHash } from '../src/audit/chain.js';

let t: ReturnType<typeof makeHome>;
let work: string;
let plain: string;
let keyText: string;

beforeAll(() => {
  t = makeHome();
  work = tmpDir();
  keyText = json(dsk(['keygen', '--name', 'chat', '--role', 'developer', '--json'], { env: t.env })).api_key;
  plain = path.join(work, 'plain.tar');
  expect(dsk(['backup', '--out', plain], { env: t.env }).code).toBe(0);
});

/** Lists a directory (and its hidden staging files) to prove a failed restore left nothing. */
const entries = (d: string) => (fs.existsSync(d) ? fs.readdirSync(d).sort() : []);

async function entriesOf(file: string): Promise<{ name: string; data: Buffer }[]> {
  const { untar } = await import('../src/kernel/tar.js');
  const out: { name: string; data: Buffer }[] = [];
  for await (const e of untar((async function* () { yield fs.readFileSync(file); })())) {
    const parts: Buffer[] = [];
    for await (const c of e.body) parts.push(c);
    out.push({ name: e.name, data: Buffer.concat(parts) });
  }
  return out;
}

async function writeTar(file: string, list: { name: string; data: Buffer }[]): Promise<void> {
  const chunks: Uint8Array[] = [];
  for await (const c of tarStream(list.map((e) => ({ name: e.name, size: e.data.length, mode: 0o600, mtime: 0, body: async function* () { yield e.data; } })))) chunks.push(c);
  fs.writeFileSync(file, Buffer.concat(chunks), { mode: 0o600 });
}

describe('dsk backup', () => {
  it('writes a tar any tar tool lists: manifest first, no fragments by default, 0600', () => {
    const r = spawnSync('tar', ['tf', plain], { encoding: 'utf8' });
    expect(r.stdout.trim().split('\n')).toEqual(['dsk-backup.json', 'dsk.json', 'audit_log/HEAD', 'key_fragments/metadata.json', 'keys.db', 'audit_log/audit.db']);
    expect(fs.statSync(plain).mode & 0o777).toBe(0o600);
    expect(entries(work)).toEqual(['plain.tar']); // no staging directory or temporary file left
  });

  it('--json names what it wrote; --include-fragments adds the sealed fragments', () => {
    const out = path.join(work, 'frags.tar');
    const r = json(dsk(['backup', '--out', out, '--include-fragments', '--json'], { env: t.env }));
    expect(r).toMatchObject({ file: out, encrypted: false, fragments_included: true, backend: 'software' });
    expect(r.files.map((f: { path: string }) => f.path)).toEqual(expect.arrayContaining(['key_fragments/frag1.enc', 'key_fragments/frag5.enc']));
    expect(r.audit.last_seq).toBeGreaterThanOrEqual(2);
  });

  it('refuses an existing --out (exit 6) and a bad recipient (exit 2) before any work', () => {
    fails(dsk(['backup', '--out', plain], { env: t.env }), 6, `${plain} already exists`);
    const out = path.join(work, 'never.tar');
    fails(dsk(['backup', '--out', out, '--recipient', 'age1nope'], { env: t.env }), 2, "--recipient: invalid age recipient 'age1nope'");
    fails(dsk(['backup', '--out', path.join(work, 'no', 'dir.tar')], { env: t.env }), 4, /no such directory/);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe('dsk backup of a home that is not fine', () => {
  it('a broken audit chain is refused (exit 5): no archive, no staging left', async () => {
    const home = copyHome(t.home);
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(path.join(home, 'audit_log', 'audit.db'));
    db.prepare("UPDATE events SET actor = 'mallory' WHERE seq = 1").run();
    db.close();
    const dir = tmpDir();
    fails(dsk(['backup', '--out', path.join(dir, 'b.tar')], { env: { ...t.env, DSK_HOME: home } }), 5, /the audit chain in the copy is broken at seq 1 \(edited\)/);
    expect(entries(dir)).toEqual([]);
  });

  it('fragments kept outside the home are named and never archived, even with --include-fragments', () => {
    const dir = tmpDir();
    const nodes = [1, 2, 3].map((i) => path.join(dir, `node${i}`));
    for (const n of nodes) fs.mkdirSync(n, { mode: 0o700 });
    const pass = [1, 2, 3].map((i) => {
      const f = path.join(dir, `p${i}`);
      fs.writeFileSync(f, `custodian-${i}-passphrase\n`, { mode: 0o600 });
      return f;
    });
    const home = path.join(dir, 'home');
    expect(dsk(['init', '--home', home, '--shares', '3', '--threshold', '2', ...passArgs(pass), ...nodes.flatMap((n) => ['--fragment-dir', n])]).code).toBe(0);
    const r = json(dsk(['backup', '--out', path.join(dir, 'b.tar'), '--include-fragments', '--json'], { env: { DSK_HOME: home } }));
    expect(r.fragments_elsewhere).toHaveLength(3);
    expect(r.files.map((f: { path: string }) => f.path).filter((p: string) => p.endsWith('.enc'))).toEqual([]);
  });
});

describe('dsk restore', () => {
  it('restores into a new home that unseals (fragments brought by the custodians) and verifies', () => {
    const home = path.join(tmpDir(), 'restored');
    const r = json(dsk(['restore', plain, '--home', home, '--json']));
    expect(r).toMatchObject({ home, fragments_included: false, encrypted: false });
    expect(fs.statSync(home).mode & 0o777).toBe(0o700);
    for (const f of fs.readdirSync(path.join(t.home, 'key_fragments')).filter((n) => n.endsWith('.enc'))) fs.copyFileSync(path.join(t.home, 'key_fragments', f), path.join(home, 'key_fragments', f));
    const env = { ...t.env, DSK_HOME: home };
    const v = json(dsk(['audit', 'verify', '--json'], { env }));
    expect(v).toMatchObject({ ok: true, mode: 'structure+mac', head_file: { state: 'match', mac: 'valid' } });
    const keys = json(dsk(['keys', 'list', '--json'], { env }));
    expect(keys.map((k: { name: string }) => k.name)).toContain('chat');
    expect(keyText).toMatch(/^dsk_/);
  });

  it('refuses an existing target (exit 6), changing nothing', () => {
    const before = snapshot(t.home);
    fails(dsk(['restore', plain, '--home', t.home]), 6, `${t.home} already exists and is not empty`);
    expect(snapshot(t.home)).toEqual(before);
  });

  it('a truncated archive is exit 5 at every cut, and nothing is written', () => {
    const data = fs.readFileSync(plain);
    const parent = tmpDir();
    for (const cut of [100, 512, 1024 + 7, Math.floor(data.length / 2), data.length - 1024, data.length - 1]) {
      const f = path.join(work, `cut-${cut}.tar`);
      fs.writeFileSync(f, data.subarray(0, cut), { mode: 0o600 });
      fails(dsk(['restore', f, '--home', path.join(parent, 'h')]), 5, /the backup archive is damaged: .*truncated|missing/);
      expect(entries(parent)).toEqual([]);
    }
  });

  it('a tampered archive is exit 5 (file content, manifest entry, a consistent rewrite of the chain)', async () => {
    const parent = tmpDir();
    const list = await entriesOf(plain);
    // one byte of keys.db flipped
    const flipped = list.map((e) => (e.name === 'keys.db' ? { ...e, data: Buffer.from(e.data.map((b, i) => (i === 4000 ? b ^ 1 : b))) } : e));
    await writeTar(path.join(work, 'flip.tar'), flipped);
    fails(dsk(['restore', path.join(work, 'flip.tar'), '--home', path.join(parent, 'h')]), 5, 'the backup archive is damaged: keys.db does not match its SHA-256 in the manifest');
    // an extra file the manifest does not list
    await writeTar(path.join(work, 'extra.tar'), [...list.slice(0, 2), { name: 'key_fragments/frag9.enc', data: Buffer.from('x') }, ...list.slice(2)]);
    fails(dsk(['restore', path.join(work, 'extra.tar'), '--home', path.join(parent, 'h')]), 5, /which its manifest does not list/);
    // a path escaping the home is refused by the tar reader itself
    const evil = Buffer.concat([tarHeader({ name: 'dsk-backup.json', size: 0, mode: 0o600, mtime: 0 })]);
    evil.write('../../etc/x', 0, 'utf8');
    fs.writeFileSync(path.join(work, 'evil.tar'), Buffer.concat([evil, Buffer.alloc(1024)]));
    fails(dsk(['restore', path.join(work, 'evil.tar'), '--home', path.join(parent, 'h')]), 5, /damaged/);
    // audit rows cut off with the manifest rewritten to match: the copied HEAD still names the cut rows
    const Database = (await import('better-sqlite3')).default;
    const auditEntry = list.find((e) => e.name === 'audit_log/audit.db')!;
    const scratch = path.join(tmpDir(), 'audit.db');
    fs.writeFileSync(scratch, auditEntry.data);
    const db = new Database(scratch);
    db.prepare('DELETE FROM events WHERE seq = (SELECT max(seq) FROM events)').run();
    db.close();
    const data = fs.readFileSync(scratch);
    const crypto = await import('node:crypto');
    const manifest = JSON.parse(list[0].data.toString());
    const me = manifest.files.find((f: { path: string }) => f.path === 'audit_log/audit.db');
    me.size = data.length;
    me.sha256 = crypto.createHash('sha256').update(data).digest('hex');
    await writeTar(path.join(work, 'cut-chain.tar'), [{ name: 'dsk-backup.json', data: Buffer.from(JSON.stringify(manifest)) }, ...list.slice(1).map((e) => (e.name === 'audit_log/audit.db' ? { ...e, data } : e))]);
    fails(dsk(['restore', path.join(work, 'cut-chain.tar'), '--home', path.join(parent, 'h')]), 5, /audit chain in the copy is broken at seq \d+ \(truncated\)/);
    expect(entries(parent)).toEqual([]);
  });

  it('with the custodians: MACs checked before the rename; a chain re-hashed without the key is refused (exit 5)', async () => {
    const parent = tmpDir();
    const unseal = ['--fragment-dir', path.join(t.home, 'key_fragments')];
    const ok = json(dsk(['restore', plain, '--home', path.join(parent, 'ok'), ...unseal, '--json'], { env: t.env }));
    expect(ok).toMatchObject({ macs_checked: true, authenticated_through: ok.audit.last_seq });
    // A forger without the audit key edits row 1 and recomputes every hash after it, and HEAD's hash:
    // the structure holds, only the MACs (and HEAD's MAC) tell.
    const list = await entriesOf(plain);
    const scratch = tmpDir();
    fs.writeFileSync(path.join(scratch, 'audit.db'), list.find((e) => e.name === 'audit_log/audit.db')!.data);
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(path.join(scratch, 'audit.db'));
    const rows = db.prepare('SELECT * FROM events ORDER BY seq').all() as { seq: number; ts: string; action: string; actor: string; source_ip: string | null; key_id: string | null; details: string; prev_hash: string; hash: string }[];
    let prev = rows[0].prev_hash;
    const upd = db.prepare('UPDATE events SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?');
    for (const r of rows) {
      const actor = r.seq === 1 ? 'mallory' : r.actor;
      const hash = chainHash(r.seq, r.ts, r.action, actor, r.source_ip, r.key_id, r.details, prev);
      upd.run(actor, prev, hash, r.seq);
      prev = hash;
    }
    db.close();
    const audit = fs.readFileSync(path.join(scratch, 'audit.db'));
    const head = JSON.parse(list.find((e) => e.name === 'audit_log/HEAD')!.data.toString());
    const newHead = Buffer.from(JSON.stringify({ ...head, hash: prev }) + '\n');
    const crypto = await import('node:crypto');
    const manifest = JSON.parse(list[0].data.toString());
    manifest.audit.head_hash = prev;
    for (const f of manifest.files) {
      const data = f.path === 'audit_log/audit.db' ? audit : f.path === 'audit_log/HEAD' ? newHead : null;
      if (data) Object.assign(f, { size: data.length, sha256: crypto.createHash('sha256').update(data).digest('hex') });
    }
    const forged = [{ name: 'dsk-backup.json', data: Buffer.from(JSON.stringify(manifest)) }, ...list.slice(1).map((e) => (e.name === 'audit_log/audit.db' ? { ...e, data: audit } : e.name === 'audit_log/HEAD' ? { ...e, data: newHead } : e))];
    await writeTar(path.join(work, 'forged.tar'), forged);
    // structure alone cannot tell (the archive restores); with the custodians it is refused, nothing written
    expect(dsk(['restore', path.join(work, 'forged.tar'), '--home', path.join(parent, 'structure-only')]).code).toBe(0);
    fails(dsk(['restore', path.join(work, 'forged.tar'), '--home', path.join(parent, 'h'), ...unseal], { env: t.env }), 5, /the audit chain in the backup is broken at seq \d+ \(forged\)/);
    expect(entries(parent)).toEqual(['ok', 'structure-only']);
  });

  it('an archive from a newer dsk is exit 7, naming the version', async () => {
    const list = await entriesOf(plain);
    const m = JSON.parse(list[0].data.toString());
    const parent = tmpDir();
    for (const [k, v] of [['format', 'dsk-backup/2'], ['schema_version', 99]] as const) {
      await writeTar(path.join(work, 'newer.tar'), [{ name: 'dsk-backup.json', data: Buffer.from(JSON.stringify({ ...m, [k]: v, producer: 'dsk 9.0.0' })) }, ...list.slice(1)]);
      fails(dsk(['restore', path.join(work, 'newer.tar'), '--home', path.join(parent, 'h')]), 7, /the backup was made by a newer dsk \(dsk 9\.0\.0/);
      fs.rmSync(path.join(work, 'newer.tar'));
    }
    expect(entries(parent)).toEqual([]);
  });

  it('encrypted to an age recipient: restores with the identity; wrong identity exit 3, none exit 3, tampered exit 5', async () => {
    const id = await generateX25519Identity();
    const other = await generateX25519Identity();
    const idFile = path.join(work, 'id.txt');
    const otherFile = path.join(work, 'other.txt');
    fs.writeFileSync(idFile, `# created: now\n# public key: ${await identityToRecipient(id)}\n${id}\n`, { mode: 0o600 });
    fs.writeFileSync(otherFile, other + '\n', { mode: 0o600 });
    const out = path.join(work, 'enc.tar.age');
    const r = json(dsk(['backup', '--out', out, '--recipient', await identityToRecipient(id), '--json'], { env: t.env }));
    expect(r.encrypted).toBe(true);
    expect(fs.readFileSync(out).subarray(0, 21).toString()).toBe('age-encryption.org/v1');
    const parent = tmpDir();
    fails(dsk(['restore', out, '--home', path.join(parent, 'h')]), 3, /is encrypted \(age\) and no identity was given/);
    fails(dsk(['restore', out, '--home', path.join(parent, 'h'), '--identity', otherFile]), 3, 'the backup is encrypted to another recipient');
    const bad = fs.readFileSync(out);
    bad[bad.length - 200] ^= 1;
    fs.writeFileSync(path.join(work, 'enc-bad.age'), bad, { mode: 0o600 });
    fails(dsk(['restore', path.join(work, 'enc-bad.age'), '--home', path.join(parent, 'h'), '--identity', idFile]), 5, /the encrypted backup is damaged or truncated/);
    fs.writeFileSync(path.join(work, 'enc-cut.age'), bad.subarray(0, bad.length - 300), { mode: 0o600 });
    fails(dsk(['restore', path.join(work, 'enc-cut.age'), '--home', path.join(parent, 'h'), '--identity', idFile]), 5, /damaged or truncated/);
    expect(entries(parent)).toEqual([]);
    const ok = json(dsk(['restore', out, '--home', path.join(parent, 'h'), '--identity', idFile, '--json']));
    expect(ok).toMatchObject({ encrypted: true, home_id: r.home_id });
  });
});

describe.skipIf(!requireTool('mount', 'the full-disk backup and restore tests', { present: canMountTmpfs() }))('a full disk', () => {
  const mnt = path.join(tmpDir(), 'small');
  beforeAll(() => {
    fs.mkdirSync(mnt);
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=96k,mode=700', 'tmpfs', mnt]).status).toBe(0);
  });
  afterAll(() => {
    spawnSync('umount', [mnt]);
  });

  it('backup to a full disk: exit 7, no file and no staging left', () => {
    const r = dsk(['backup', '--out', path.join(mnt, 'b.tar')], { env: t.env });
    fails(r, 7, /no space left on device/);
    expect(entries(mnt)).toEqual([]);
  });

  it('restore onto a full disk: exit 7, nothing left', () => {
    fails(dsk(['restore', plain, '--home', path.join(mnt, 'h')]), 7, /no space left on device/);
    expect(entries(mnt)).toEqual([]);
  });
});

function canMountTmpfs(): boolean {
  if (process.getuid?.() !== 0) return false;
  const d = tmpDir();
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8k', 'tmpfs', d]).status === 0;
  if (ok) spawnSync('umount', [d]);
  return ok;
}
