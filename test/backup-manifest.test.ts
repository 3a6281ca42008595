/** The backup manifest parser (src/app/backup-manifest.ts): hostile input is exit 5 or 7, never a crash or a foreign path. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BACKUP_FORMAT, parseManifest } from '../src/app/backup-manifest.js';
import { IntegrityError, UnavailableError } from '../src/kernel/errors.js';

const sha = 'a'.repeat(64);
const good = {
  format: BACKUP_FORMAT,
  producer: 'dsk 0.1.0',
  schema_version: 1,
  home_id: '0123456789abcdef0123456789abcdef',
  backend: 'software',
  created_at: '2026-11-30T00:00:00.000Z',
  fragments_included: false,
  audit: { rows: 1, first_seq: 1, last_seq: 1, head_hash: sha },
  files: ['dsk.json', 'keys.db', 'audit_log/audit.db'].map((path) => ({ path, size: 1, sha256: sha })),
};

describe('backup manifest', () => {
  it('accepts what backup writes', () => {
    expect(parseManifest(JSON.stringify(good)).home_id).toBe(good.home_id);
  });

  it('refuses, with its exit code, each way a manifest can be wrong', () => {
    const cases: [unknown, number, RegExp][] = [
      [{ ...good, format: 'dsk-backup/2' }, 7, /made by a newer dsk/],
      [{ ...good, schema_version: 999 }, 7, /made by a newer dsk/],
      [{ ...good, format: 'tar' }, 5, /not a dsk backup/],
      [{ ...good, files: [...good.files, { path: '../etc/passwd', size: 1, sha256: sha }] }, 5, /not part of a home/],
      [{ ...good, files: [...good.files, good.files[0]] }, 5, /lists dsk\.json twice/],
      [{ ...good, files: good.files.slice(1) }, 5, /does not list dsk\.json/],
      [{ ...good, files: [{ ...good.files[0], sha256: 'x' }, ...good.files.slice(1)] }, 5, /malformed/],
      [{ ...good, home_id: 'nope' }, 5, /home id/],
      [null, 5, /not an object/],
      [{ ...good, audit: 1 }, 5, /no audit summary/],
    ];
    for (const [m, code, msg] of cases) {
      let err: unknown;
      try {
        parseManifest(JSON.stringify(m));
      } catch (e) {
        err = e;
      }
      expect(err, JSON.stringify(m).slice(0, 80)).toMatchObject({ exitCode: code });
      expect((err as Error).message).toMatch(msg);
    }
  });

  it('hostile values: only exit 5 or 7, and an accepted manifest names only home files', () => {
    const mutated = fc.record({ key: fc.constantFrom(...Object.keys(good)), value: fc.jsonValue() }).map(({ key, value }) => JSON.stringify({ ...good, [key]: value }));
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.jsonValue().map((v) => JSON.stringify(v)), mutated), (text) => {
        try {
          const m = parseManifest(text);
          expect(typeof m.audit.head_hash).toBe('string');
          for (const f of m.files) expect(f.path).toMatch(/^(dsk\.json|keys\.db|master_key\.hsm|audit_log\/(audit\.db|HEAD)|key_fragments\/[a-z0-9.]+)$/);
        } catch (e) {
          expect(e instanceof IntegrityError || e instanceof UnavailableError).toBe(true);
        }
      }),
      { numRuns: 500 },
    );
  });
});
