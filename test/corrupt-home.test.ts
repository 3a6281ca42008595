/**
 * Damaged homes: each is refused with exit 5, naming the damaged file and pointing at a backup,
 * and nothing is changed (no "repair" that would start an empty store over the damage).
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { dsk, makeHome, snapshot, tmpDir } from './helpers.js';
import { checkConfig } from '../src/domain/config-schema.js';

const base = makeHome();
const goodConfig = JSON.parse(fs.readFileSync(path.join(base.home, 'dsk.json'), 'utf8'));

function damaged(edit: (home: string) => void) {
  const home = path.join(tmpDir('dsk-damaged-'), 'home');
  fs.cpSync(base.home, home, { recursive: true });
  edit(home);
  return { home, env: { ...base.env, DSK_HOME: home } };
}

const setConfig = (home: string, f: (c: any) => void) => {
  const c = structuredClone(goodConfig);
  f(c);
  fs.writeFileSync(path.join(home, 'dsk.json'), JSON.stringify(c), { mode: 0o600 });
};

describe('a damaged home is exit 5, named, and left as it is', () => {
  const cases: [string, (home: string) => void, string[], RegExp][] = [
    ['dsk.json = null', (h) => fs.writeFileSync(path.join(h, 'dsk.json'), 'null'), ['keys', 'list'], /dsk\.json is damaged: expected an object, got null/],
    ['dsk.json: roles is a string', (h) => setConfig(h, (c) => (c.roles = 'admin')), ['keys', 'list'], /dsk\.json is damaged: roles: expected an object, got a string/],
    ['dsk.json: a role is a string, not a list', (h) => setConfig(h, (c) => (c.roles.admin = 'key.manage')), ['status'], /dsk\.json is damaged: roles\.admin: expected a list, got a string/],
    ['metadata.json = null', (h) => fs.writeFileSync(path.join(h, 'key_fragments', 'metadata.json'), 'null'), ['keygen', '--name', 'x', '--role', 'automation'], /metadata\.json is damaged: not a dsk fragment metadata file/],
    ['0-byte keys.db', (h) => fs.truncateSync(path.join(h, 'keys.db'), 0), ['keys', 'list'], /keys\.db is damaged: it is empty \(0 bytes\)/],
    ['0-byte audit.db', (h) => fs.truncateSync(path.join(h, 'audit_log', 'audit.db'), 0), ['audit', 'query'], /audit\.db is damaged: it is empty \(0 bytes\)/],
    ['keys.db is not a database (SQLITE_NOTADB)', (h) => fs.writeFileSync(path.join(h, 'keys.db'), Buffer.alloc(8192, 0x5a)), ['keys', 'list'], /keys\.db is damaged: it is not a SQLite database \(SQLITE_NOTADB\)/],
    ['audit.db is not a database (SQLITE_NOTADB)', (h) => fs.writeFileSync(path.join(h, 'audit_log', 'audit.db'), Buffer.alloc(8192, 0x5a)), ['status'], /audit\.db is damaged: it is not a SQLite database/],
    [
      'keys.db with corrupt pages (SQLITE_CORRUPT)',
      (h) => {
        const f = path.join(h, 'keys.db');
        const b = fs.readFileSync(f);
        b.fill(0xa5, 200, 3000); // the schema table on page 1
        fs.writeFileSync(f, b);
      },
      ['keys', 'list'],
      /keys\.db is damaged: its contents are corrupt \(SQLITE_CORRUPT/,
    ],
  ];

  it.each(cases)('%s', (_name, edit, args, message) => {
    const t = damaged(edit);
    const before = snapshot(t.home);
    for (const json of [false, true]) {
      const r = dsk([...args, ...(json ? ['--json'] : [])], { env: t.env });
      expect(r.code, r.stderr).toBe(5);
      if (json) {
        const e = JSON.parse(r.stderr).error;
        expect(e.message).toMatch(message);
        expect(e.hint).toMatch(/restore .* from a backup/);
      } else {
        expect(r.stderr).toMatch(message);
        expect(r.stderr).toMatch(/hint: .*restore .* from a backup/);
      }
    }
    // A refused unseal is itself audited (UNSEAL_FAILURE); nothing else may change.
    const unaudited = (snap: Record<string, string>) => Object.fromEntries(Object.entries(snap).filter(([f]) => !(args[0] === 'keygen' && f.startsWith('audit_log'))));
    expect(unaudited(snapshot(t.home))).toEqual(unaudited(before));
  });
});

describe('dsk.json schema: every field checked, the field named', () => {
  const bad: [string, (c: any) => void, string][] = [
    ['format', (c) => delete c.format, 'format'],
    ['home_id', (c) => (c.home_id = 42), 'home_id'],
    ['home_id', (c) => (c.home_id = 'not hex'), 'home_id'],
    ['backend', (c) => (c.backend = 'tpm'), 'backend'],
    ['created_at', (c) => (c.created_at = null), 'created_at'],
    ['policy', (c) => (c.policy = []), 'policy'],
    ['policy.grace', (c) => (c.policy.grace = 48), 'policy.grace'],
    ['policy.grace', (c) => (c.policy.grace = '2 days'), 'policy.grace'],
    ['policy.rotate_every', (c) => (c.policy.rotate_every = '0s'), 'policy.rotate_every'],
    ['policy.max_uses', (c) => (c.policy.max_uses = '100000'), 'policy.max_uses'],
    ['policy.max_uses', (c) => (c.policy.max_uses = -1), 'policy.max_uses'],
    ['policy.expires', (c) => (c.policy.expires = 30), 'policy.expires'],
    ['policy.warn_within', (c) => (c.policy.warn_within = {}), 'policy.warn_within'],
    ['roles', (c) => (c.roles = ['admin']), 'roles'],
    ['roles.<name>', (c) => (c.roles['Bad Role'] = []), 'roles.Bad Role'],
    ['roles.<name>[]', (c) => (c.roles.admin = ['model.invoke', 7]), 'roles.admin.1'],
    ['gateway', (c) => (c.gateway = 'on'), 'gateway'],
  ];
  it.each(bad)('%s', (_f, edit, field) => {
    const c = structuredClone(goodConfig);
    edit(c);
    const r = checkConfig(c);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.field).toBe(field);
  });

  it('the config dsk init writes passes, unknown top-level fields are kept, optional ones may be absent', () => {
    expect(checkConfig(goodConfig).ok).toBe(true);
    const extra = checkConfig({ ...goodConfig, future_field: { x: 1 } });
    expect(extra.ok && extra.config.future_field).toEqual({ x: 1 });
    const { policy: _p, roles: _r, ...minimal } = goodConfig;
    expect(checkConfig(minimal).ok).toBe(true);
    expect(checkConfig({ ...goodConfig, policy: { grace: '0s', expires: null } }).ok).toBe(true);
  });

  it('never throws, whatever JSON it is given', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const r = checkConfig(v);
        expect(typeof r.ok).toBe('boolean');
      }),
      { numRuns: 2000 },
    );
  });
});
