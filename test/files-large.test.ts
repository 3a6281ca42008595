/**
 * Sizes that break naive I/O: a short write(2) must never leave a silently truncated file, and an
 * archive larger than the longest V8 string (512 MiB) must still verify, read as a stream.
 */
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ROOT, tmpDir } from './helpers.js';
import { chainHash, rowMac, canonicalJson, GENESIS_HASH } from '../src/audit/chain.js';
import { ARCHIVE_FORMAT, headerMac, verifyArchive } from '../src/audit/archive.js';

describe('writePrivateFile and short writes', () => {
  it('under a file-size limit (write(2) returns short, then EFBIG) it fails and leaves no file, never a truncated one', () => {
    const dir = tmpDir('dsk-short-');
    const dest = path.join(dir, 'out.bin');
    const script = `
      const { writePrivateFile } = await import(${JSON.stringify(path.join(ROOT, 'dist/kernel/files.js'))});
      try { writePrivateFile(${JSON.stringify(dest)}, Buffer.alloc(64 * 1024, 7)); console.log('wrote'); }
      catch (e) { console.log('error', e.code, e.exitCode); }`;
    // ulimit -f counts 1024-byte blocks: the first write(2) stops at 4 KiB, the next one fails.
    const r = spawnSync('bash', ['-c', `ulimit -f 4; exec "${process.execPath}" --input-type=module -e "$0"`, script], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toBe('error ERR_DISK_FULL 7');
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

/** Writes a keyed archive of `rows` rows whose details are `pad` bytes each, without holding it in memory. */
function writeLargeArchive(file: string, key: Buffer, rows: number, pad: number): { bytes: number } {
  const rowsFile = file + '.rows';
  const fd = fs.openSync(rowsFile, 'w', 0o600);
  const details = canonicalJson({ pad: 'a'.repeat(pad) });
  let prev = GENESIS_HASH;
  let bytes = 0;
  const ts = new Date(Date.UTC(2026, 0, 1)).toISOString();
  for (let i = 0; i < rows; i += 32) {
    const lines: string[] = [];
    for (let seq = i + 1; seq <= Math.min(rows, i + 32); seq++) {
      const r = { seq, ts, action: 'TEST_EVENT', actor: 'bulk', source_ip: null, key_id: null, details, prev_hash: prev };
      const hash = chainHash(r.seq, r.ts, r.action, r.actor, r.source_ip, r.key_id, r.details, r.prev_hash);
      lines.push(JSON.stringify({ ...r, hash, mac: rowMac(key, hash) }));
      prev = hash;
    }
    const text = lines.join('\n') + '\n';
    bytes += Buffer.byteLength(text);
    fs.writeSync(fd, zlib.gzipSync(text, { level: 1 }));
  }
  fs.closeSync(fd);
  const h0 = { format: ARCHIVE_FORMAT, home_id: 'f'.repeat(32), first_seq: 1, last_seq: rows, first_prev_hash: GENESIS_HASH, last_hash: prev, rows, created_at: new Date().toISOString() } as const;
  fs.writeFileSync(file, Buffer.concat([zlib.gzipSync(JSON.stringify({ ...h0, mac: headerMac(key, h0) }) + '\n'), fs.readFileSync(rowsFile)]), { mode: 0o600 });
  fs.rmSync(rowsFile);
  return { bytes };
}

describe('verifyArchive reads the archive as a stream', () => {
  it('a valid archive over 512 MiB (decompressed) verifies, and a damaged one is named', async () => {
    const dir = tmpDir('dsk-bigarch-');
    const file = path.join(dir, 'big.jsonl.gz');
    const key = crypto.randomBytes(32);
    const { bytes } = writeLargeArchive(file, key, 544, 1024 * 1024);
    expect(bytes).toBeGreaterThan(512 * 1024 ** 2 + 16 * 1024 ** 2);
    const rep = await verifyArchive(file, key, null);
    expect(rep.breach).toBeNull();
    expect(rep).toMatchObject({ ok: true, rows: 544, first_seq: 1, last_seq: 544, header_mac: 'valid', authenticated_through: 544 });
    // A row longer than the line limit is damage, reported rather than buffered.
    const capped = await verifyArchive(file, key, null, { maxLineBytes: 512 * 1024 });
    expect(capped.breach).toMatchObject({ seq: 1, kind: 'edited' });
    expect(capped.breach!.message).toMatch(/longer than 524288 bytes/);
  }, 120_000);

  it('an archive cut short inside a gzip member is named, not a crash', async () => {
    const dir = tmpDir('dsk-cutarch-');
    const file = path.join(dir, 'small.jsonl.gz');
    const key = crypto.randomBytes(32);
    writeLargeArchive(file, key, 100, 1000);
    expect((await verifyArchive(file, key, null)).ok).toBe(true);
    const cut = path.join(dir, 'cut.jsonl.gz');
    fs.writeFileSync(cut, fs.readFileSync(file).subarray(0, fs.statSync(file).size - 40), { mode: 0o600 });
    const c = await verifyArchive(cut, key, null);
    expect(c.ok).toBe(false);
    expect(c.breach!.kind).toMatch(/edited|truncated/);
  }, 120_000);
});
