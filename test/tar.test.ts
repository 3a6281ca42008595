/**
 * The ustar writer and its strict reader (src/kernel/tar.ts): what the writer makes reads back
 * (and GNU tar reads it); any truncation is reported; hostile bytes never escape as anything but
 * an IntegrityError, and never yield a name outside the directory.
 */
import { describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { safeName, tarStream, untar } from '../src/kernel/tar.js';
import { IntegrityError } from '../src/kernel/errors.js';
import { tmpDir } from './helpers.js';

const name = fc.array(fc.stringMatching(/^[a-zA-Z0-9_.-]{1,12}$/).filter((s) => s !== '.' && s !== '..'), { minLength: 1, maxLength: 3 }).map((p) => p.join('/'));
const files = fc.uniqueArray(fc.record({ name, data: fc.uint8Array({ maxLength: 2000 }) }), { selector: (f) => f.name, maxLength: 5 });

async function pack(list: { name: string; data: Uint8Array }[]): Promise<Buffer> {
  const out: Uint8Array[] = [];
  for await (const c of tarStream(list.map((f) => ({ name: f.name, size: f.data.length, mode: 0o600, mtime: 1_700_000_000_000, body: async function* () { yield f.data; } })))) out.push(c);
  return Buffer.concat(out);
}

/** Feeds `buf` in chunks of the given sizes, as a slow pipe would. */
async function* chunked(buf: Buffer, sizes: number[]): AsyncGenerator<Uint8Array> {
  let off = 0;
  for (let i = 0; off < buf.length; i++) {
    const n = Math.max(1, sizes.length ? sizes[i % sizes.length] : buf.length);
    yield buf.subarray(off, off + n);
    off += n;
  }
}

async function unpack(src: AsyncIterable<Uint8Array>): Promise<{ name: string; data: Buffer }[]> {
  const out: { name: string; data: Buffer }[] = [];
  for await (const e of untar(src)) {
    const parts: Buffer[] = [];
    for await (const c of e.body) parts.push(c);
    out.push({ name: e.name, data: Buffer.concat(parts) });
  }
  return out;
}

describe('tar', () => {
  it('round trip at any chunking', async () => {
    await fc.assert(
      fc.asyncProperty(files, fc.array(fc.integer({ min: 1, max: 1500 }), { maxLength: 4 }), async (list, sizes) => {
        const got = await unpack(chunked(await pack(list), sizes));
        expect(got).toEqual(list.map((f) => ({ name: f.name, data: Buffer.from(f.data) })));
      }),
      { numRuns: 150 },
    );
  });

  it('every truncation is an IntegrityError, never a short file or a silent end', async () => {
    const whole = await pack([{ name: 'a.db', data: new Uint8Array(1300).fill(7) }, { name: 'dir/b', data: new Uint8Array(10) }]);
    for (let cut = 0; cut < whole.length; cut += 97) {
      await expect(unpack(chunked(whole.subarray(0, cut), [333])), `cut at ${cut}`).rejects.toBeInstanceOf(IntegrityError);
    }
  });

  it('hostile bytes: only IntegrityError, and only safe names come out', async () => {
    const base = await pack([{ name: 'x/y.json', data: new Uint8Array(600).fill(1) }]);
    await fc.assert(
      fc.asyncProperty(fc.array(fc.record({ at: fc.nat(base.length - 1), v: fc.integer({ min: 0, max: 255 }) }), { minLength: 1, maxLength: 6 }), async (edits) => {
        const b = Buffer.from(base);
        for (const e of edits) b[e.at] = e.v;
        try {
          for (const f of await unpack(chunked(b, [512]))) expect(safeName(f.name)).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(IntegrityError);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('names that leave the directory or are not plain files are refused', async () => {
    for (const bad of ['../x', '/etc/passwd', 'a/../../b', 'a//b', './a', '']) expect(safeName(bad), bad).toBe(false);
    const good = await pack([{ name: 'ok', data: new Uint8Array(1) }]);
    const symlink = Buffer.from(good);
    symlink.write('2', 156); // typeflag: symbolic link
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : symlink[i];
    symlink.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    await expect(unpack(chunked(symlink, []))).rejects.toThrow(/is not a regular file/);
    const trailing = Buffer.concat([good, Buffer.from('junk'.repeat(128))]);
    await expect(unpack(chunked(trailing, []))).rejects.toThrow(/data follows the end-of-archive marker/);
  });

  it('GNU tar reads what the writer makes', async () => {
    const d = tmpDir();
    const f = path.join(d, 'a.tar');
    fs.writeFileSync(f, await pack([{ name: 'audit_log/HEAD', data: Buffer.from('head\n') }, { name: 'keys.db', data: new Uint8Array(5000).fill(3) }]));
    const r = spawnSync('tar', ['xf', f, '-C', d], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(fs.readFileSync(path.join(d, 'audit_log/HEAD'), 'utf8')).toBe('head\n');
    expect(fs.statSync(path.join(d, 'keys.db')).size).toBe(5000);
  });
});
