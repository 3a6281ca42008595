/**
 * A streaming POSIX ustar writer and a strict reader, for the few regular files of a backup
 * (POSIX.1-1988 ustar: 512-byte header blocks, octal numbers, data padded to 512 bytes, two zero
 * blocks at the end). Any tar tool can list or extract what the writer produces.
 *
 * The reader accepts only what the writer makes: regular files with short relative names, a valid
 * header checksum, and the end-of-archive marker. Anything else (links, devices, `..`, a missing
 * end marker: a truncated file) is an IntegrityError naming what was wrong, so a hostile archive
 * cannot place a file outside the directory it is restored into.
 */
import { IntegrityError } from './errors.js';

const BLOCK = 512;
const NAME_MAX = 100;
/** The largest size the 11-digit octal field holds (8 GiB - 1). */
export const TAR_MAX_FILE = 8 ** 11 - 1;

export interface TarEntry {
  name: string;
  size: number;
  mode: number;
  mtime: number;
  /** the file's bytes, exactly `size` of them */
  body: () => AsyncIterable<Uint8Array>;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

export function tarHeader(e: Pick<TarEntry, 'name' | 'size' | 'mode' | 'mtime'>): Buffer {
  if (!safeName(e.name)) throw new Error(`internal: unsafe tar entry name ${JSON.stringify(e.name)}`);
  if (!Number.isSafeInteger(e.size) || e.size < 0 || e.size > TAR_MAX_FILE) throw new Error(`internal: tar entry ${e.name} too large`);
  const h = Buffer.alloc(BLOCK);
  h.write(e.name, 0, NAME_MAX, 'utf8');
  h.write(octal(e.mode & 0o7777, 8), 100, 'ascii');
  h.write(octal(0, 8), 108, 'ascii');
  h.write(octal(0, 8), 116, 'ascii');
  h.write(octal(e.size, 12), 124, 'ascii');
  h.write(octal(Math.floor(e.mtime / 1000), 12), 136, 'ascii');
  h.write('        ', 148, 'ascii');
  h.write('0', 156, 'ascii');
  h.write('ustar\0' + '00', 257, 'ascii');
  h.write(octal(checksum(h), 7) + ' ', 148, 'ascii');
  return h;
}

function checksum(h: Buffer): number {
  let s = 0;
  for (let i = 0; i < BLOCK; i++) s += i >= 148 && i < 156 ? 32 : h[i];
  return s;
}

/** Relative, no `..`, no empty or dot components, printable ASCII, fits the 100-byte name field. */
export function safeName(name: string): boolean {
  if (!name || name.length >= NAME_MAX || !/^[\x21-\x7e]+$/.test(name) || name.startsWith('/')) return false;
  return name.split('/').every((p) => p !== '' && p !== '.' && p !== '..');
}

/** The archive's bytes, entry after entry; a body shorter or longer than its size is a bug. */
export async function* tarStream(entries: Iterable<TarEntry>): AsyncGenerator<Uint8Array> {
  for (const e of entries) {
    yield tarHeader(e);
    let n = 0;
    for await (const c of e.body()) {
      n += c.length;
      if (n > e.size) throw new Error(`internal: ${e.name} grew while being archived`);
      yield c;
    }
    if (n !== e.size) throw new Error(`internal: ${e.name} shrank while being archived`);
    const pad = (BLOCK - (e.size % BLOCK)) % BLOCK;
    if (pad) yield Buffer.alloc(pad);
  }
  yield Buffer.alloc(2 * BLOCK);
}

function damaged(what: string): IntegrityError {
  return new IntegrityError('ERR_BACKUP_DAMAGED', `the backup archive is damaged: ${what}; nothing was restored`, { hint: 'use another copy of the backup' });
}

/** Pulls exact byte counts out of a stream of chunks of any size. */
class ByteReader {
  #it: AsyncIterator<Uint8Array>;
  #buf: Buffer = Buffer.alloc(0);
  #done = false;
  constructor(src: AsyncIterable<Uint8Array>) {
    this.#it = src[Symbol.asyncIterator]();
  }
  async #fill(): Promise<boolean> {
    if (this.#done) return false;
    const r = await this.#it.next();
    if (r.done) {
      this.#done = true;
      return false;
    }
    this.#buf = this.#buf.length ? Buffer.concat([this.#buf, r.value]) : Buffer.from(r.value);
    return true;
  }
  /** Exactly n bytes, or null at a clean end of stream before any of them. */
  async exact(n: number): Promise<Buffer | null> {
    while (this.#buf.length < n) if (!(await this.#fill())) break;
    if (this.#buf.length === 0) return null;
    if (this.#buf.length < n) throw damaged('it ends in the middle of a block (truncated)');
    const out = this.#buf.subarray(0, n);
    this.#buf = this.#buf.subarray(n);
    return out;
  }
  /** Up to n bytes as they arrive (at least one), for streaming a body. */
  async some(n: number): Promise<Buffer> {
    if (this.#buf.length === 0 && !(await this.#fill())) throw damaged('it ends in the middle of a file (truncated)');
    const k = Math.min(n, this.#buf.length);
    const out = this.#buf.subarray(0, k);
    this.#buf = this.#buf.subarray(k);
    return out;
  }
}

export interface TarReadEntry {
  name: string;
  size: number;
  mode: number;
  /** must be read to the end before the next entry is asked for */
  body: AsyncIterable<Buffer>;
}

function parseOctal(b: Buffer, what: string): number {
  const s = b.toString('ascii').replace(/[\0 ]+$/, '');
  if (!/^[0-7]{1,11}$/.test(s)) throw damaged(`a header has a malformed ${what} field`);
  return parseInt(s, 8);
}

function parseHeader(h: Buffer): Omit<TarReadEntry, 'body'> {
  if (parseOctal(h.subarray(148, 156), 'checksum') !== checksum(h)) throw damaged('a header checksum does not match');
  if (h.toString('ascii', 257, 263) !== 'ustar\0') throw damaged('a header is not in ustar format');
  const type = h.toString('ascii', 156, 157);
  const nul = h.indexOf(0, 0);
  const name = h.toString('utf8', 0, nul < 0 || nul > NAME_MAX ? NAME_MAX : nul);
  if (h[345] !== 0) throw damaged(`entry ${JSON.stringify(name)} uses a name prefix`);
  if (type !== '0' && type !== '\0') throw damaged(`entry ${JSON.stringify(name)} is not a regular file`);
  if (!safeName(name)) throw damaged(`entry name ${JSON.stringify(name)} is not a plain relative path`);
  return { name, size: parseOctal(h.subarray(124, 136), 'size'), mode: parseOctal(h.subarray(100, 108), 'mode') };
}

/**
 * The entries of an archive, in order. Ends at the end-of-archive marker; a stream that stops
 * before it is reported truncated. Data after the marker must be zero padding.
 */
export async function* untar(src: AsyncIterable<Uint8Array>): AsyncGenerator<TarReadEntry> {
  const r = new ByteReader(src);
  for (;;) {
    const h = await r.exact(BLOCK);
    if (!h) throw damaged('it ends without the end-of-archive marker (truncated)');
    if (h.every((b) => b === 0)) {
      const second = await r.exact(BLOCK);
      if (!second || !second.every((b) => b === 0)) throw damaged('the end-of-archive marker is incomplete (truncated)');
      for (let rest = await r.exact(BLOCK); rest; rest = await r.exact(BLOCK)) if (!rest.every((b) => b === 0)) throw damaged('data follows the end-of-archive marker');
      return;
    }
    const e = parseHeader(h);
    let left = e.size;
    const body = (async function* () {
      while (left > 0) {
        const c = await r.some(left);
        left -= c.length;
        yield c;
      }
    })();
    yield { ...e, body };
    for await (const _ of body); // drain what the consumer left unread
    while (left > 0) left -= (await r.some(left)).length;
    const pad = (BLOCK - (e.size % BLOCK)) % BLOCK;
    if (pad && !(await r.exact(pad))) throw damaged('it ends in the middle of a file (truncated)');
  }
}
