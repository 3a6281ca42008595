/**
 * The built `dsk` against a damaged home: tampered or foreign fragments, edited metadata, an audit
 * store that refuses writes, fragments moved to other nodes. Exit code, message, and proof that
 * nothing else changed (a refused unseal adds exactly one UNSEAL_FAILURE audit row).
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { beforeAll, describe, expect, it } from 'vitest';
import { dsk, json, makeHome, passphraseFiles, tmpDir } from './helpers.js';
import { AUDIT_DB, copyHome, fails, keyCount, passArgs, unchanged } from './cli-support.js';

describe('a damaged home', () => {
  let H: ReturnType<typeof makeHome>;
  let key: { id: string; api_key: string };
  beforeAll(() => {
    H = makeHome();
    key = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env: H.env }));
  });

  it('fail closed: when the audit row cannot be written, the key is not created either', () => {
    const home = copyHome(H.home);
    const n = keyCount(home);
    const audit = new Database(path.join(home, AUDIT_DB));
    audit.exec("CREATE TRIGGER refuse_audit BEFORE INSERT ON events WHEN NEW.action = 'KEY_CREATE' BEGIN SELECT RAISE(ABORT, 'audit store refuses writes'); END");
    audit.close();
    const r = unchanged([home], () => dsk(['keygen', '--name', 'unaudited', '--role', 'developer'], { env: { DSK_HOME: home, DSK_PASSPHRASE_FILES: H.pass.slice(0, 3).join(':') } }));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('audit store refuses writes');
    expect(r.stdout).not.toContain('dsk_');
    expect(keyCount(home)).toBe(n);
  });

  it('a tampered fragment file: exit 5, names the file', () => {
    const home = copyHome(H.home);
    const frag = path.join(home, 'key_fragments', 'frag2.enc');
    const f = JSON.parse(fs.readFileSync(frag, 'utf8'));
    const sealed = Buffer.from(f.sealed, 'base64');
    sealed[20] ^= 1;
    fs.writeFileSync(frag, JSON.stringify({ ...f, sealed: sealed.toString('base64') }, null, 2) + '\n');
    const r = unchanged([home], () => dsk(['keygen', '--name', 'x', '--role', 'developer'], { env: { DSK_HOME: home, DSK_PASSPHRASE_FILES: H.pass.slice(0, 3).join(':') } }), {
      home,
      action: 'UNSEAL_FAILURE',
      reason: 'ERR_FRAGMENT_TAMPERED',
    });
    fails(r, 5, `fragment ${frag} does not match its checksum in metadata.json: it was modified or replaced`);
    // the other custodians still unseal without it
    expect(dsk(['keygen', '--name', 'x', '--role', 'developer', '--json'], { env: { DSK_HOME: home, DSK_PASSPHRASE_FILES: [H.pass[0], H.pass[2], H.pass[3]].join(':') } }).code).toBe(0);
  });

  it('a fragment from another home copied in: exit 5, names the file', () => {
    const home = copyHome(H.home);
    const other = makeHome(tmpDir(), { shares: 5, threshold: 3 });
    const frag = path.join(home, 'key_fragments', 'frag3.enc');
    fs.copyFileSync(path.join(other.home, 'key_fragments', 'frag3.enc'), frag);
    const r = unchanged([home], () => dsk(['keys', 'revoke', key.id], { env: { DSK_HOME: home, DSK_PASSPHRASE_FILES: [H.pass[0], H.pass[1], other.pass[2]].join(':') } }), {
      home,
      action: 'UNSEAL_FAILURE',
      reason: 'ERR_FRAGMENT_TAMPERED',
    });
    fails(r, 5, `fragment ${frag} does not match its checksum in metadata.json`);

    // with metadata's checksum "fixed", the store id inside still gives it away
    const meta = JSON.parse(fs.readFileSync(path.join(home, 'key_fragments', 'metadata.json'), 'utf8'));
    meta.fragments[2].sha256 = crypto.createHash('sha256').update(fs.readFileSync(frag)).digest('hex');
    fs.writeFileSync(path.join(home, 'key_fragments', 'metadata.json'), JSON.stringify(meta, null, 2));
    const r2 = unchanged([home], () => dsk(['keys', 'revoke', key.id], { env: { DSK_HOME: home, DSK_PASSPHRASE_FILES: [H.pass[0], H.pass[1], other.pass[2]].join(':') } }), {
      home,
      action: 'UNSEAL_FAILURE',
      reason: 'ERR_FRAGMENT_FOREIGN',
    });
    fails(r2, 5, `fragment ${frag} belongs to another store`);
  });

  it('metadata.json with lowered KDF iterations: exit 5 before any passphrase is used', () => {
    const home = copyHome(H.home);
    const p = path.join(home, 'key_fragments', 'metadata.json');
    const meta = JSON.parse(fs.readFileSync(p, 'utf8'));
    meta.kdf.iterations = 1000;
    fs.writeFileSync(p, JSON.stringify(meta, null, 2));
    const r = unchanged([home], () => dsk(['keygen', '--name', 'x', '--role', 'developer'], { env: { DSK_HOME: home, DSK_PASSPHRASE_FILES: H.pass.slice(0, 3).join(':') } }), {
      home,
      action: 'UNSEAL_FAILURE',
      reason: 'ERR_KDF_PARAMS',
    });
    fails(r, 5, `${p}: kdf parameters rejected (iterations out of bounds)`);
  });

  it('a key check value that does not match (metadata edited): exit 5', () => {
    const home = copyHome(H.home);
    const p = path.join(home, 'key_fragments', 'metadata.json');
    const meta = JSON.parse(fs.readFileSync(p, 'utf8'));
    meta.key_check_value = '0000000000000000';
    fs.writeFileSync(p, JSON.stringify(meta, null, 2));
    const r = unchanged([home], () => dsk(['keygen', '--name', 'x', '--role', 'developer'], { env: { DSK_HOME: home, DSK_PASSPHRASE_FILES: H.pass.slice(0, 3).join(':') } }), {
      home,
      action: 'UNSEAL_FAILURE',
      reason: 'ERR_KCV',
    });
    fails(r, 5, 'the rebuilt master key does not match its key check value');
  });
});

describe('--fragment-dir: fragments on other nodes', () => {
  it('init distributes the fragments; unseal finds them there, and with --fragment-dir after they move', () => {
    const dir = tmpDir();
    const pass = passphraseFiles(dir, 3);
    const nodeA = path.join(dir, 'node-a');
    const nodeB = path.join(dir, 'node-b');
    fs.mkdirSync(nodeA, { mode: 0o700 });
    fs.mkdirSync(nodeB, { mode: 0o700 });
    const home = path.join(dir, 'home');
    const init = json(dsk(['init', '--home', home, '--shares', '3', '--threshold', '2', ...passArgs(pass), '--fragment-dir', nodeA, '--fragment-dir', nodeB, '--json']));
    expect(init.fragments).toEqual([path.join(nodeA, 'frag1.enc'), path.join(nodeB, 'frag2.enc'), path.join(nodeA, 'frag3.enc')]);
    expect(fs.readdirSync(path.join(home, 'key_fragments'))).toEqual(['metadata.json']);
    expect(fs.readdirSync(nodeA).sort()).toEqual(['frag1.enc', 'frag3.enc']);
    expect(fs.readdirSync(nodeB)).toEqual(['frag2.enc']);
    for (const f of init.fragments) expect(fs.statSync(f).mode & 0o777).toBe(0o600);

    const env = { DSK_HOME: home, DSK_PASSPHRASE_FILES: [pass[1], pass[2]].join(':') };
    expect(json(dsk(['keygen', '--name', 'a', '--role', 'developer', '--json'], { env })).id).toMatch(/^[0-9a-f]{12}$/);

    // node-b's disk is moved to a new mount point: fragment 2 is missing where metadata says
    const nodeC = path.join(dir, 'node-c');
    fs.renameSync(nodeB, nodeC);
    const r = unchanged([home], () => dsk(['keygen', '--name', 'b', '--role', 'developer'], { env }), { home, action: 'UNSEAL_FAILURE', reason: 'ERR_UNSEAL' });
    fails(
      r,
      3,
      `cannot unseal: #1 (file ${pass[1]}) opens none of the fragments present (a wrong passphrase, or its fragment is missing); missing fragment files: ${path.join(nodeB, 'frag2.enc')}`,
    );
    expect(r.stderr).toContain('dsk: hint: pass --fragment-dir DIR where the missing fragments are now');
    expect(json(dsk(['keygen', '--name', 'b', '--role', 'developer', '--fragment-dir', nodeC, '--json'], { env })).name).toBe('b');
    // a --fragment-dir that does not exist is a mistake, reported before any passphrase is used
    const typo = path.join(dir, 'node-x');
    const t = unchanged([home], () => dsk(['keygen', '--name', 'c', '--role', 'developer', '--fragment-dir', nodeC, '--fragment-dir', typo], { env }));
    fails(t, 2, `--fragment-dir: fragment directory ${typo} is not a directory`);
    expect(t.stderr).toContain('dsk: hint: give the directory that now holds the fragments');
  });
});
