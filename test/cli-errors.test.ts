/**
 * The built `dsk`, end to end, on bad input: each case checks the exit code, the one-line message,
 * and that the home (and any fragment directory) is exactly as it was. A refused unseal is itself
 * recorded (UNSEAL_FAILURE, brief: "every refused request is a row"), so for those the audit store
 * gains exactly that one row and nothing else changes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { dsk, json, makeHome, passphraseFiles, tmpDir } from './helpers.js';
import { auditRows, fails, keyCount, passArgs, unchanged, writePass } from './cli-support.js';

describe('dsk init: refuses, and leaves nothing behind when it fails', () => {
  it('refuses to overwrite an existing home (exit 6), which stays as it was', () => {
    const { dir, home, pass } = makeHome(tmpDir(), { shares: 2, threshold: 2 });
    const fresh = passphraseFiles(dir, 2, 'other');
    const r = unchanged([home], () => dsk(['init', '--home', home, '--shares', '2', '--threshold', '2', ...passArgs(fresh)]));
    fails(r, 6, `${home} already exists and is not empty`);
    expect(r.stderr).toContain('dsk: hint: choose another --home');
    expect(pass).toHaveLength(2);
    // a non-empty directory that is not a home is refused the same way
    const other = path.join(dir, 'not-a-home');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'notes.txt'), 'mine');
    fails(
      unchanged([other], () => dsk(['init', '--home', other, '--shares', '2', '--threshold', '2', ...passArgs(fresh)])),
      6,
      `${other} already exists and is not empty`,
    );
  });

  describe('bad input before any work', () => {
    const dir = tmpDir();
    const pass = passphraseFiles(dir, 5);
    const home = path.join(dir, 'home');
    const aFile = path.join(dir, 'a-file');
    fs.writeFileSync(aFile, '');
    const short = writePass(dir, 'short.pass', 'short');
    const loose = writePass(dir, 'loose.pass', 'a-long-enough-passphrase', 0o644);
    it.each([
      ['a --fragment-dir that is a file', [...passArgs(pass), '--fragment-dir', aFile], 2, `--fragment-dir: fragment directory ${aFile} is not a directory`],
      ['a too-short passphrase', [...passArgs([...pass.slice(0, 4), short])], 2, `passphrase #5 (file ${short}) is shorter than 8 characters`],
      ['4 passphrases for 5 shares', passArgs(pass.slice(0, 4)), 2, '--passphrase-file: need 5 custodian passphrases (one per fragment), got 4'],
      ['6 passphrases for 5 shares', passArgs([...pass, short]), 2, '--passphrase-file: need 5 custodian passphrases (one per fragment), got 6'],
      ['the same passphrase for two custodians', passArgs([...pass.slice(0, 4), pass[0]]), 2, 'custodians #1 and #5 have the same passphrase'],
      ['a group-readable passphrase file', passArgs([...pass.slice(0, 4), loose]), 5, `${loose} is accessible by group or others (mode 644); refusing to use it`],
      ['a missing passphrase file', passArgs([...pass.slice(0, 4), path.join(dir, 'nope')]), 4, `${path.join(dir, 'nope')}: no such file or directory`],
      ['threshold above shares', ['--shares', '3', '--threshold', '4', ...passArgs(pass.slice(0, 3))], 2, '--threshold: threshold must be between 2 and the number of shares (3), got 4'],
      ['a non-numeric share count', ['--shares', 'five', ...passArgs(pass)], 2, "invalid --shares 'five'"],
      ['a KDF cost below the floor', ['--kdf-cost', '100000', ...passArgs(pass)], 2, '--kdf-cost: the pbkdf2 cost must be between 600000 and 10000000 iterations'],
      ['an unknown KDF', ['--kdf', 'md5', ...passArgs(pass)], 2, "--kdf: unknown kdf 'md5'"],
      ['an unknown backend', ['--backend', 'tpm', ...passArgs(pass)], 2, "unknown --backend 'tpm'"],
      ['an unknown flag', ['--sharez', '5', ...passArgs(pass)], 2, "unknown option '--sharez'"],
    ])('%s → exit %i', (_n, args, code, message) => {
      const r = unchanged([dir], () => dsk(['init', '--home', home, ...(args as string[])]));
      fails(r, code as number, message as string);
      expect(fs.existsSync(home)).toBe(false);
    });
  });

  it('a failure half-way (a fragment directory already holding frag2.enc) removes the staging dir, created parents and the fragments already written', () => {
    const dir = tmpDir();
    const pass = passphraseFiles(dir, 5);
    const fd1 = path.join(dir, 'node-a');
    const fd2 = path.join(dir, 'node-b');
    fs.mkdirSync(fd1, { mode: 0o700 });
    fs.mkdirSync(fd2, { mode: 0o700 });
    fs.writeFileSync(path.join(fd2, 'frag2.enc'), 'someone else’s fragment\n', { mode: 0o600 });
    const home = path.join(dir, 'new', 'deeper', 'home');
    const r = unchanged([dir], () => dsk(['init', '--home', home, ...passArgs(pass), '--fragment-dir', fd1, '--fragment-dir', fd2]));
    fails(r, 6, `${path.join(fd2, 'frag2.enc')} already exists`);
    // frag1 had already been sealed into node-a: it is gone, and so are the staging dir and new/
    expect(fs.readdirSync(fd1)).toEqual([]);
    expect(fs.readdirSync(fd2)).toEqual(['frag2.enc']);
    expect(fs.readdirSync(dir).sort()).toEqual([...pass.map((p) => path.basename(p)), 'node-a', 'node-b'].sort());
  });

  it('a --home under a file is a usage error (exit 2) and creates nothing', () => {
    const dir = tmpDir();
    const pass = passphraseFiles(dir, 2);
    fs.writeFileSync(path.join(dir, 'file'), '');
    const home = path.join(dir, 'file', 'home');
    fails(
      unchanged([dir], () => dsk(['init', '--home', home, '--shares', '2', '--threshold', '2', ...passArgs(pass)])),
      2,
      `cannot create ${home}: a parent path is not a directory`,
    );
  });

  it('with no terminal and no passphrase source it fails at once (exit 3), it does not hang', () => {
    const dir = tmpDir();
    const t = Date.now();
    const r = unchanged([dir], () => dsk(['init', '--home', path.join(dir, 'home')]));
    fails(r, 3, 'init needs 5 custodian passphrases and there is no terminal to ask on');
    expect(Date.now() - t).toBeLessThan(30_000);
  });
});

describe('a home and its keys', () => {
  let H: ReturnType<typeof makeHome>;
  let key: { id: string; api_key: string };
  beforeAll(() => {
    H = makeHome();
    key = json(dsk(['keygen', '--name', 'svc', '--role', 'developer', '--json'], { env: H.env }));
  });
  const unsealWith = (files: string[]) => ({ DSK_HOME: H.home, DSK_PASSPHRASE_FILES: files.join(':') });

  it('permissions: the home and its directories are 0700, every file 0600', () => {
    const walk = (d: string): [string, number][] => [
      [d, fs.statSync(d).mode & 0o777],
      ...fs.readdirSync(d, { withFileTypes: true }).flatMap((e): [string, number][] => (e.isDirectory() ? walk(path.join(d, e.name)) : [[path.join(d, e.name), fs.statSync(path.join(d, e.name)).mode & 0o777]])),
    ];
    const modes = walk(H.home);
    expect(modes.map(([p]) => path.relative(H.home, p)).sort()).toEqual(
      ['', 'audit_log', 'audit_log/HEAD', 'audit_log/audit.db', 'dsk.json', 'key_fragments', 'keys.db', 'key_fragments/metadata.json', ...[1, 2, 3, 4, 5].map((i) => `key_fragments/frag${i}.enc`)].sort(),
    );
    for (const [p, mode] of modes) expect([path.relative(H.home, p), mode.toString(8)]).toEqual([path.relative(H.home, p), fs.statSync(p).isDirectory() ? '700' : '600']);
  });

  it('a wrong passphrase: exit 3, names the source, audited, nothing else changed', () => {
    const wrong = writePass(H.dir, 'mallory.pass', 'not-a-custodian-at-all');
    const r = unchanged([H.home], () => dsk(['keygen', '--name', 'x', '--role', 'developer', ...passArgs([H.pass[0], wrong, H.pass[2]])], { env: { DSK_HOME: H.home } }), {
      home: H.home,
      action: 'UNSEAL_FAILURE',
      reason: 'ERR_UNSEAL',
    });
    fails(r, 3, `cannot unseal: wrong passphrase: #2 (file ${wrong}) opens none of the fragments`);
    expect(r.stderr).toContain('dsk: hint: 3 of 5 custodians must each give their passphrase');
    expect(r.stderr).not.toContain('not-a-custodian');
  });

  it('fewer than K passphrases: exit 3', () => {
    const r = unchanged([H.home], () => dsk(['keygen', '--name', 'x', '--role', 'developer'], { env: unsealWith(H.pass.slice(3)) }), { home: H.home, action: 'UNSEAL_FAILURE', reason: 'ERR_UNSEAL' });
    fails(r, 3, 'cannot unseal: only 2 of the 3 needed fragments opened');
  });

  it('a duplicate passphrase: exit 3', () => {
    const r = unchanged([H.home], () => dsk(['keygen', '--name', 'x', '--role', 'developer'], { env: unsealWith([H.pass[1], H.pass[4], H.pass[1]]) }), {
      home: H.home,
      action: 'UNSEAL_FAILURE',
      reason: 'ERR_DUPLICATE_FRAGMENT',
    });
    fails(r, 3, `passphrases #1 and #3 (file ${H.pass[1]}) both open fragment #2; each must be a different custodian's`);
  });

  it('no terminal and no passphrase source: exit 3 at once, no prompt, nothing changed', () => {
    const t = Date.now();
    const r = unchanged([H.home], () => dsk(['keygen', '--name', 'x', '--role', 'developer'], { env: { DSK_HOME: H.home } }), { home: H.home, action: 'UNSEAL_FAILURE', reason: 'ERR_NO_PASSPHRASE' });
    fails(r, 3, 'unsealing needs 3 of 5 custodian passphrases and there is no terminal to ask on');
    expect(Date.now() - t).toBeLessThan(30_000);
  });

  it('a group-readable passphrase file is refused (exit 5); the refused unseal is audited', () => {
    const loose = path.join(H.dir, 'loose.pass');
    fs.copyFileSync(H.pass[2], loose);
    fs.chmodSync(loose, 0o640);
    const r = unchanged([H.home], () => dsk(['keygen', '--name', 'x', '--role', 'developer'], { env: unsealWith([H.pass[0], H.pass[1], loose]) }), {
      home: H.home,
      action: 'UNSEAL_FAILURE',
      reason: 'ERR_UNSAFE_PERMISSIONS',
    });
    fails(r, 5, `${loose} is accessible by group or others (mode 640); refusing to use it`);
    expect(r.stderr).toContain(`dsk: hint: run: chmod 600 ${loose}`);
  });

  it('a group-readable home is refused (exit 5) by every command', () => {
    fs.chmodSync(H.home, 0o750);
    try {
      for (const args of [['keys', 'list'], ['status'], ['keygen', '--name', 'x', '--role', 'developer']]) {
        const r = unchanged([H.home], () => dsk(args, { env: H.env }));
        fails(r, 5, `${H.home} is accessible by group or others (mode 750); refusing to use it`);
        expect(r.stderr).toContain(`dsk: hint: run: chmod 700 ${H.home}`);
      }
    } finally {
      fs.chmodSync(H.home, 0o700);
    }
    fs.chmodSync(path.join(H.home, 'keys.db'), 0o644);
    try {
      fails(unchanged([H.home], () => dsk(['keys', 'list'], { env: H.env })), 5, `${path.join(H.home, 'keys.db')} is accessible by group or others (mode 644)`);
    } finally {
      fs.chmodSync(path.join(H.home, 'keys.db'), 0o600);
    }
  });

  it.each([
    ['an unknown role', ['keygen', '--name', 'x', '--role', 'superuser'], 4, "unknown role 'superuser'"],
    ['a bad --expires', ['keygen', '--name', 'x', '--role', 'developer', '--expires', '30days'], 2, "invalid --expires '30days': expected a whole number followed by s, m, h or d"],
    ['a negative --expires', ['keygen', '--name', 'x', '--role', 'developer', '--expires', '-1d'], 2, "invalid --expires '-1d'"],
    ['a zero --rotate-every', ['keygen', '--name', 'x', '--role', 'developer', '--rotate-every', '0d'], 2, "invalid --rotate-every '0d': must be greater than zero"],
    ['a bad --max-uses', ['keygen', '--name', 'x', '--role', 'developer', '--max-uses', '1e5'], 2, "invalid --max-uses '1e5'"],
    ['a missing --role', ['keygen', '--name', 'x'], 2, "required option '--role <role>' not specified"],
    ['an unknown key id (show)', ['keys', 'show', '0123456789ab'], 4, 'no key with id 0123456789ab'],
    ['an unknown key id (revoke)', ['keys', 'revoke', '0123456789ab'], 4, 'no key with id 0123456789ab'],
    ['a malformed key id (show)', ['keys', 'show', 'xyz'], 2, "'xyz' is not a key id (12 hex characters, as shown by dsk keys list)"],
    ['a malformed key id (revoke)', ['keys', 'revoke', '../../etc'], 2, "'../../etc' is not a key id"],
    ['an unknown --status', ['keys', 'list', '--status', 'alive'], 2, "unknown --status 'alive'"],
    ['an unknown command', ['keyz'], 2, "unknown command 'keyz'"],
  ])('%s → exit %i, nothing changed, no unseal', (_n, args, code, message) => {
    const r = unchanged([H.home], () => dsk(args as string[], { env: H.env }));
    fails(r, code as number, message as string);
  });

  it('a home that does not exist: exit 4', () => {
    const missing = path.join(H.dir, 'nowhere');
    fails(dsk(['keys', 'list'], { env: { DSK_HOME: missing } }), 4, `no dsk home at ${missing}`);
    expect(fs.existsSync(missing)).toBe(false);
  });

  it('revoking twice: the second is exit 6 and changes nothing', () => {
    const k = json(dsk(['keygen', '--name', 'to-revoke', '--role', 'automation', '--json'], { env: H.env }));
    const first = dsk(['keys', 'revoke', k.id, '--reason', 'test', '--json'], { env: H.env });
    expect(json(first)).toMatchObject({ id: k.id, status: 'revoked', revoke_reason: 'test' });
    const r = unchanged([H.home], () => dsk(['keys', 'revoke', k.id], { env: H.env }));
    fails(r, 6, `key ${k.id} is already revoked`);
    expect(auditRows(H.home).filter((x) => x.action === 'KEY_REVOKE' && x.key_id === k.id)).toHaveLength(1);
  });

  it('a leaked key pasted into --reason is refused (exit 2), never recorded, and the key stays active', () => {
    const r = unchanged([H.home], () => dsk(['keys', 'revoke', key.id, '--reason', `leaked: ${key.api_key}`], { env: H.env }));
    fails(r, 2, 'refusing to record something shaped like an API key or signing secret in the audit log');
    expect(r.stderr).not.toContain(key.api_key.slice(17, 81));
    expect(json(dsk(['keys', 'show', key.id, '--json'], { env: H.env })).status).toBe('active');
  });

  it('keygen --out FILE writes the key 0600 and prints no secret; an existing FILE is refused (exit 6) with no key created', () => {
    const out = path.join(H.dir, 'issued.json');
    const r = dsk(['keygen', '--name', 'batch', '--role', 'automation', '--out', out, '--json'], { env: H.env });
    const shown = json(r);
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    const written = JSON.parse(fs.readFileSync(out, 'utf8'));
    expect(written).toMatchObject({ id: shown.id, name: 'batch', role: 'automation' });
    expect(written.api_key).toMatch(/^dsk_/);
    expect(r.stdout).not.toContain(written.api_key);
    expect(r.stdout).not.toContain(written.api_secret);
    expect(shown.written_to).toBe(out);

    const n = keyCount(H.home);
    const fileBefore = fs.readFileSync(out);
    const again = unchanged([H.home], () => dsk(['keygen', '--name', 'batch2', '--role', 'automation', '--out', out], { env: H.env }));
    fails(again, 6, `${out} already exists`);
    expect(fs.readFileSync(out)).toEqual(fileBefore);
    expect(keyCount(H.home)).toBe(n);
  });

  it('keygen --out into a missing directory fails (exit 4) after unsealing, and the key is rolled back', () => {
    const out = path.join(H.dir, 'no-such-dir', 'k.json');
    const n = keyCount(H.home);
    const rows = auditRows(H.home).length;
    const r = unchanged([H.home], () => dsk(['keygen', '--name', 'lost', '--role', 'automation', '--out', out], { env: H.env }));
    fails(r, 4, `${path.dirname(out)}: no such file or directory`);
    expect(keyCount(H.home)).toBe(n);
    expect(auditRows(H.home)).toHaveLength(rows);
  });
});
