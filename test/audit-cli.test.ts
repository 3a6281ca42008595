/** dsk audit query | tail | export | stats | archive, end to end through the built CLI. */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { beforeAll, describe, expect, it } from 'vitest';
import { dsk, dskAsync, json, makeHome, snapshot, tmpDir } from './helpers.js';
import { writeEvents, writeRows } from './audit-helpers.js';

const T0 = Date.UTC(2026, 0, 10, 12, 0, 0);
const DAY = 86_400_000;
const jsonLines = (s: string) => s.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));

describe('dsk audit (read side)', () => {
  let h: ReturnType<typeof makeHome>;
  let env: NodeJS.ProcessEnv;
  beforeAll(() => {
    h = makeHome();
    env = { ...h.env, TZ: 'UTC' };
    writeEvents(
      h.home,
      [
        { ts_ms: T0, action: 'KEY_CREATE', actor: 'alice', key_id: 'aaaaaaaaaaaa', details: { key_id: 'aaaaaaaaaaaa', name: 'a, "quoted"\nname' } },
        { ts_ms: T0 + DAY, action: 'AUTH_FAILURE', actor: 'gateway', source_ip: '10.1.2.3', key_id: 'aaaaaaaaaaaa' },
        { ts_ms: T0 + DAY + 1000, action: 'AUTH_FAILURE', actor: 'gateway', source_ip: '::ffff:10.1.9.9' },
        { ts_ms: T0 + 2 * DAY, action: 'AUTH_FAILURE', actor: 'gateway', source_ip: '2001:db8::7' },
        { ts_ms: T0 + 2 * DAY + 1000, action: 'KEY_ROTATION', actor: 'cron', key_id: 'bbbbbbbbbbbb', details: { old_key_id: 'aaaaaaaaaaaa', new_key_id: 'bbbbbbbbbbbb', trigger: 'SCHEDULED' } },
        { ts_ms: T0 + 3 * DAY, action: 'KEY_REVOKE', actor: 'alice', source_ip: '192.168.0.5', key_id: 'bbbbbbbbbbbb' },
      ],
      h.env,
    );
  });

  const seqs = (args: string[]) => jsonLines(json0(dsk(['audit', 'query', '--json', ...args], { env }))).map((r) => r.seq);
  function json0(r: { code: number; stdout: string; stderr: string }) {
    expect(r.code, r.stderr).toBe(0);
    return r.stdout;
  }

  it('query: newest first, filters combine, JSON lines carry the seed fields', () => {
    // seq 1 is MASTER_INIT (today), 2..7 the events above
    expect(seqs(['--since', '2026-01-01', '--until', '2026-02-01'])).toEqual([7, 6, 5, 4, 3, 2]);
    expect(seqs(['--action', 'auth_failure'])).toEqual([5, 4, 3]);
    expect(seqs(['--action', 'KEY_REVOKE,KEY_ROTATION'])).toEqual([7, 6]);
    expect(seqs(['--actor', 'alice'])).toEqual([7, 2]);
    // DSK_ACTOR names who is acting; it is not a filter.
    expect(jsonLines(json0(dsk(['audit', 'query', '--json'], { env: { ...env, DSK_ACTOR: 'alice' } }))).length).toBe(7);
    expect(seqs(['--key', 'aaaaaaaaaaaa'])).toEqual([3, 2]);
    expect(seqs(['--ip', '10.1.0.0/16'])).toEqual([4, 3]);
    expect(seqs(['--ip', '2001:db8::/32'])).toEqual([5]);
    expect(seqs(['--ip', '192.168.0.5'])).toEqual([7]);
    expect(seqs(['--since', '2026-01-11T00:00Z', '--until', '2026-01-12T00:00Z'])).toEqual([4, 3]);
    expect(seqs(['--action', 'AUTH_FAILURE', '--limit', '2'])).toEqual([5, 4]);
    const [r] = jsonLines(json0(dsk(['audit', 'query', '--json', '--action', 'KEY_ROTATION'], { env })));
    expect(r).toMatchObject({ seq: 6, timestamp: '2026-01-12T12:00:01.000Z', action: 'KEY_ROTATION', actor: 'cron', source_ip: null, key_id: 'bbbbbbbbbbbb', details: { trigger: 'SCHEDULED' } });
    expect(r.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('query: a table by default (local time, or --utc), CSV with RFC 4180 quoting', () => {
    const t = json0(dsk(['audit', 'query', '--action', 'KEY_CREATE'], { env: { ...env, TZ: 'Asia/Shanghai' } }));
    expect(t).toMatch(/seq\s+time\s+action/);
    expect(t).toContain('2026-01-10 20:00:00'); // 12:00 UTC in UTC+8
    expect(json0(dsk(['audit', 'query', '--action', 'KEY_CREATE', '--utc'], { env }))).toContain('2026-01-10 12:00:00Z');
    const csv = json0(dsk(['audit', 'query', '--csv', '--action', 'KEY_CREATE'], { env }));
    expect(csv.startsWith('seq,timestamp,action,actor,source_ip,key_id,details,prev_hash,hash,mac\r\n')).toBe(true);
    expect(csv).toContain('"{""key_id"":""aaaaaaaaaaaa"",""name"":""a, \\""quoted\\""\\nname""}"');
    expect(json0(dsk(['audit', 'query', '--action', 'NOPE'], { env }))).toBe('no audit rows match\n');
  });

  it('query: bad flags exit 2 before touching the store', () => {
    const snap = snapshot(h.home);
    for (const [args, msg] of [
      [['--ip', '10.0.0.0/33'], "--ip: invalid address filter '10.0.0.0/33'"],
      [['--since', 'yesterday'], "invalid --since 'yesterday'"],
      [['--since', '1d', '--until', '2d'], '--until must be later than --since'],
      [['--key', 'nothex'], "'nothex' is not a key id for --key"],
      [['--action', 'drop table'], '--action: invalid action'],
      [['--limit', '0'], 'invalid --limit'],
      [['--csv', '--json'], 'mutually exclusive'],
    ] as const) {
      const r = dsk(['audit', 'query', ...args], { env });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain(msg);
    }
    expect(snapshot(h.home)).toEqual(snap);
    const missing = dsk(['audit', 'query'], { env: { DSK_HOME: path.join(tmpDir(), 'none') } });
    expect(missing.code).toBe(4);
  });

  it('tail: the last rows; -f follows rows written by another process and exits cleanly on SIGTERM', async () => {
    const last2 = jsonLines(json0(dsk(['audit', 'tail', '-n', '2', '--json'], { env })));
    expect(last2.map((r) => r.seq)).toEqual([6, 7]);
    const p = dskAsync(['audit', 'tail', '-n', '1', '-f', '--json'], { env });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d));
    const waitFor = async (pred: () => boolean) => {
      for (let i = 0; i < 200 && !pred(); i++) await new Promise((r) => setTimeout(r, 50));
      expect(pred()).toBe(true);
    };
    await waitFor(() => out.includes('"seq":7'));
    writeRows(h.home, 2, { tag: 'tailed', env });
    await waitFor(() => out.includes('"seq":9'));
    p.kill('SIGTERM');
    const code = await new Promise((r) => p.on('exit', (c) => r(c)));
    expect(code).toBe(0);
    expect(jsonLines(out).map((r) => r.seq)).toEqual([7, 8, 9]);
    expect(jsonLines(out)[1].actor).toBe('writer-tailed');
  });

  it('export: jsonl and csv, to stdout or a new 0600 file', () => {
    const lines = jsonLines(json0(dsk(['audit', 'export', '--format', 'jsonl', '--since', '2026-01-11', '--until', '2026-01-13'], { env })));
    expect(lines.map((r) => r.seq)).toEqual([3, 4, 5, 6]); // oldest first
    const out = path.join(h.dir, 'export.csv');
    const r = json(dsk(['audit', 'export', '--format', 'csv', '--out', out, '--json'], { env }));
    expect(r).toMatchObject({ rows: 9, file: out, format: 'csv' });
    expect(fs.statSync(out).mode & 0o777).toBe(0o600);
    expect(fs.readFileSync(out, 'utf8').split('\r\n').length).toBe(1 + 9 + 1);
    const again = dsk(['audit', 'export', '--format', 'csv', '--out', out], { env });
    expect(again.code).toBe(6);
    expect(dsk(['audit', 'export', '--format', 'xml'], { env }).code).toBe(2);
  });

  it('stats: counts by action and by day, with a bar chart in the terminal', () => {
    const s = json(dsk(['audit', 'stats', '--since', '2026-01-01', '--json'], { env }));
    expect(s.by_action.find((r: { action: string }) => r.action === 'AUTH_FAILURE').count).toBe(3);
    expect(s.by_day.slice(0, 4)).toEqual([
      { day: '2026-01-10', count: 1 },
      { day: '2026-01-11', count: 2 },
      { day: '2026-01-12', count: 2 },
      { day: '2026-01-13', count: 1 },
    ]);
    const text = json0(dsk(['audit', 'stats', '--since', '2026-01-01'], { env }));
    expect(text).toMatch(/AUTH_FAILURE\s+3\s+█+/);
    expect(text).toContain('by day (UTC)');
  });

  it('every audit subcommand documents examples; status shows the audit head and HEAD', () => {
    for (const sub of ['query', 'tail', 'verify', 'export', 'stats', 'archive']) expect(dsk(['audit', sub, '--help']).stdout).toContain('Example');
    const s = json(dsk(['status', '--json'], { env }));
    expect(s.audit.head_file).toEqual({ seq: s.audit.head_seq, hash: s.audit.head_hash, keyed: true });
    expect(json0(dsk(['status'], { env }))).toContain('HEAD file agrees');
  });
});

describe('dsk audit archive', () => {
  it('moves old rows into a verifiable archive and the live chain verifies from the checkpoint', () => {
    const h = makeHome();
    const env = h.env;
    writeEvents(h.home, [0, 1, 2, 3, 4].map((i) => ({ ts_ms: T0 + i * DAY, action: 'KEY_CREATE', actor: 'alice', details: { n: i } })), env);
    const file = path.join(h.dir, 'old.jsonl.gz');
    // Rows 1 (MASTER_INIT, today) … the prefix older than the cutoff is archived: nothing, since row 1 is newest.
    expect(json(dsk(['audit', 'archive', '--before', '2026-01-12', '--out', file, '--json'], { env }))).toMatchObject({ archived: 0 });
    expect(fs.existsSync(file)).toBe(false);
    expect(json(dsk(['audit', 'archive', '--before', '0s', '--out', file, '--json'], { env }))).toMatchObject({ archived: 6, first_seq: 1, last_seq: 6, checkpoint_seq: 7 });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const [header] = zlib.gunzipSync(fs.readFileSync(file)).toString().split('\n');
    expect(JSON.parse(header)).toMatchObject({ format: 'dsk-audit-archive/1', first_seq: 1, last_seq: 6, first_prev_hash: '0'.repeat(64), rows: 6 });
    expect(json(dsk(['audit', 'verify', '--json'], { env }))).toMatchObject({ ok: true, rows: 1, first_seq: 7, start: { seq: 7 }, authenticated_through: 7 });
    expect(json(dsk(['audit', 'verify', '--archive', file, '--json'], { env }))).toMatchObject({ ok: true, rows: 6, header_mac: 'valid', checkpoint: { seq: 7 }, authenticated_through: 6 });
    // Structure only, without the home at all.
    const alone = dsk(['audit', 'verify', '--archive', file], { env: { DSK_HOME: path.join(h.dir, 'none') } });
    expect(alone.code).toBe(0);
    expect(alone.stdout).toContain('structure only');
    // An existing output file is refused and nothing changes.
    const snap = snapshot(h.home);
    expect(dsk(['audit', 'archive', '--before', '0s', '--out', file], { env }).code).toBe(6);
    expect(snapshot(h.home)).toEqual(snap);
    // Deleting the checkpoint row is detected: the chain no longer starts where it claims.
    // (Tampering with the archive is detected too.)
    const lines = zlib.gunzipSync(fs.readFileSync(file)).toString().split('\n');
    const row3 = JSON.parse(lines[3]);
    lines[3] = JSON.stringify({ ...row3, actor: 'mallory' });
    const bad = path.join(h.dir, 'bad.jsonl.gz');
    fs.writeFileSync(bad, zlib.gzipSync(lines.join('\n')), { mode: 0o600 });
    const v = dsk(['audit', 'verify', '--archive', bad], { env });
    expect(v.code).toBe(5);
    expect(v.stderr).toContain('broken at seq 3 (edited)');
    lines[3] = JSON.stringify(row3);
    fs.writeFileSync(bad, zlib.gzipSync(lines.slice(0, -2).join('\n')), { mode: 0o600 });
    const cut = dsk(['audit', 'verify', '--archive', bad], { env });
    expect(cut.code).toBe(5);
    expect(cut.stderr).toContain('(truncated)');
    // A second archive later: the live chain starts after it.
    writeRows(h.home, 3, { env });
    const file2 = path.join(h.dir, 'old2.jsonl.gz');
    expect(json(dsk(['audit', 'archive', '--before', '0s', '--out', file2, '--json'], { env }))).toMatchObject({ archived: 4, first_seq: 7, last_seq: 10, checkpoint_seq: 11 });
    expect(json(dsk(['audit', 'verify', '--json'], { env }))).toMatchObject({ ok: true, first_seq: 11, start: { seq: 11, from: { archive_row: 11 } } });
    expect(json(dsk(['audit', 'verify', '--archive', file2, '--json'], { env }))).toMatchObject({ ok: true, rows: 4 });
  });

  it('refuses to archive a broken chain (exit 5) and bad dates (exit 2)', () => {
    const h = makeHome();
    writeRows(h.home, 3, { env: h.env });
    fs.rmSync(path.join(h.home, 'audit_log', 'HEAD'));
    const file = path.join(h.dir, 'x.jsonl.gz');
    const r = dsk(['audit', 'archive', '--before', '0s', '--out', file], { env: h.env });
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('refusing to archive a broken chain');
    expect(fs.existsSync(file)).toBe(false);
    expect(dsk(['audit', 'archive', '--before', 'soon', '--out', file], { env: h.env }).code).toBe(2);
  });
});
