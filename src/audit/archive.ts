/**
 * Archiving: old rows move out of the live chain into a gzip-compressed JSON-lines file that can be
 * verified on its own, and an AUDIT_ARCHIVE row (keyed, in the same transaction as the delete)
 * records where the live chain now starts.
 *
 * File layout (one JSON value per line, gzip members concatenated):
 *   {"format":"dsk-audit-archive/1","home_id":…,"first_seq":…,"last_seq":…,"first_prev_hash":…,
 *    "last_hash":…,"rows":…,"created_at":…,"mac":HMAC(K_audit, canonical header without mac)}
 *   {"seq":…,"ts":…,"action":…,"actor":…,"source_ip":…,"key_id":…,"details":"…","prev_hash":…,"hash":…,"mac":…}
 *   …
 *
 * Order of work (src/app/audit-archive.ts): verify the live chain; write the archive (fsync,
 * exclusive create; writeArchive here); then, in one transaction, check the rows are still the ones
 * written, delete them and append AUDIT_ARCHIVE. A crash before the commit leaves the rows in place
 * and a spare archive file; never a gap.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { NotFoundError, UsageError } from '../kernel/errors.js';
import { hmacSha256, sha256Hex } from '../kernel/crypto.js';
import { ioError, writePrivateFile } from '../kernel/files.js';
import { AUDIT_COLUMNS, type AuditTuple, type Store } from '../store/store.js';
import { canonicalJson } from './chain.js';
import { walkChain, type Breach, type VerifyReport } from './verify.js';

export const ARCHIVE_FORMAT = 'dsk-audit-archive/1';
/** Refuse archive files larger than this when reading them back (decompression bomb guard). */
const MAX_ARCHIVE_BYTES = 4 * 1024 ** 3;

export interface ArchiveHeader {
  format: typeof ARCHIVE_FORMAT;
  home_id: string;
  first_seq: number;
  last_seq: number;
  first_prev_hash: string;
  last_hash: string;
  rows: number;
  created_at: string;
  mac: string | null;
}

export function headerMac(auditKey: Buffer, h: Omit<ArchiveHeader, 'mac'>): string {
  return hmacSha256(auditKey, canonicalJson({ ...h, mac: undefined })).toString('hex');
}

export interface ArchiveResult {
  archived: number;
  file: string | null;
  first_seq: number | null;
  last_seq: number | null;
  last_hash: string | null;
  sha256: string | null;
  checkpoint_seq: number | null;
}

const COLS = AUDIT_COLUMNS;

export interface WrittenArchive {
  rows: number;
  first_prev_hash: string;
  last_hash: string;
  sha256: string;
}

/**
 * Writes rows firstSeq..lastSeq of the live chain to a new archive file `out` (exclusive create,
 * fsynced), with a header keyed under `auditKey`. The caller verified the chain first.
 */
export async function writeArchive(store: Store, o: { homeId: string; firstSeq: number; lastSeq: number; out: string; auditKey: Buffer; now: number; progress?: (rows: number) => void }): Promise<WrittenArchive> {
  const members: Buffer[] = [];
  let lines: string[] = [];
  let firstPrev = '';
  let lastHash = '';
  let n = 0;
  for await (const chunk of store.events.chunks(o.firstSeq - 1, o.lastSeq)) {
    for (const r of chunk) {
      if (n === 0) firstPrev = r[7];
      lastHash = r[8];
      n++;
      lines.push(JSON.stringify(Object.fromEntries(COLS.map((c, i) => [c, r[i]]))));
      if (lines.length === 20_000) {
        members.push(zlib.gzipSync(lines.join('\n') + '\n'));
        lines = [];
        o.progress?.(n);
      }
    }
  }
  const header0 = { format: ARCHIVE_FORMAT, home_id: o.homeId, first_seq: o.firstSeq, last_seq: o.lastSeq, first_prev_hash: firstPrev, last_hash: lastHash, rows: n, created_at: new Date(o.now).toISOString() } as const;
  const header: ArchiveHeader = { ...header0, mac: headerMac(o.auditKey, header0) };
  if (lines.length) members.push(zlib.gzipSync(lines.join('\n') + '\n'));
  const data = Buffer.concat([zlib.gzipSync(JSON.stringify(header) + '\n'), ...members]);
  writePrivateFile(o.out, data, { exclusive: true });
  return { rows: n, first_prev_hash: firstPrev, last_hash: lastHash, sha256: sha256Hex(data) };
}

export interface ArchiveReport extends Omit<VerifyReport, 'head_file' | 'start'> {
  file: string;
  header: ArchiveHeader | null;
  header_mac: 'valid' | 'absent' | 'unchecked';
  checkpoint: { seq: number; state: 'match' } | null;
}

/** The longest line (one row) an archive may hold; a longer one is damage, not a row to buffer. */
const MAX_LINE_BYTES = 64 * 1024 ** 2;

class ArchiveDamage extends Error {}

/**
 * The lines of a gzip archive, decompressed and split as they stream in: an archive is never held
 * in memory or turned into one string (V8 strings end at 512 MiB; a year of gateway refusals can
 * be larger). Gzip members are concatenated (one for the header, one per 20,000 rows).
 */
export async function* archiveLines(file: string, maxLineBytes = MAX_LINE_BYTES): AsyncGenerator<string> {
  const gunzip = zlib.createGunzip();
  const input = fs.createReadStream(file);
  input.on('error', (e) => gunzip.destroy(e));
  input.pipe(gunzip);
  let parts: Buffer[] = [];
  let partLen = 0;
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      let from = 0;
      for (let nl = chunk.indexOf(10, from); nl !== -1; nl = chunk.indexOf(10, from)) {
        const piece = chunk.subarray(from, nl);
        if (partLen + piece.length > maxLineBytes) throw new ArchiveDamage(`a line of the archive is longer than ${maxLineBytes} bytes`);
        yield partLen ? Buffer.concat([...parts, piece]).toString('utf8') : piece.toString('utf8');
        parts = [];
        partLen = 0;
        from = nl + 1;
      }
      if (from < chunk.length) {
        parts.push(chunk.subarray(from));
        partLen += chunk.length - from;
        if (partLen > maxLineBytes) throw new ArchiveDamage(`a line of the archive is longer than ${maxLineBytes} bytes`);
      }
    }
  } catch (e) {
    if (e instanceof ArchiveDamage) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'EACCES') throw ioError(e, file);
    throw new ArchiveDamage(`${path.basename(file)} is not a gzip file (or is damaged)`);
  } finally {
    input.destroy();
    gunzip.destroy();
  }
  if (partLen) yield Buffer.concat(parts).toString('utf8');
}

/** Reads and checks an archive file on its own; with the live home, also against its checkpoint row. */
export async function verifyArchive(file: string, auditKey: Buffer | null, live: { homeId: string; store: Store } | null, opts: { maxLineBytes?: number } = {}): Promise<ArchiveReport> {
  try {
    if (fs.statSync(file).size > MAX_ARCHIVE_BYTES) throw new UsageError('ERR_ARCHIVE_TOO_LARGE', `${file} is larger than ${MAX_ARCHIVE_BYTES} bytes; not a dsk audit archive`);
  } catch (e) {
    if ((e as { exitCode?: number }).exitCode) throw e;
    throw ioError(e, file);
  }
  const bad = (message: string, kind: Breach['kind'] = 'edited', seq = 0): ArchiveReport => ({
    file,
    header: null,
    header_mac: 'unchecked',
    checkpoint: null,
    ok: false,
    rows: 0,
    first_seq: null,
    last_seq: null,
    head_hash: '',
    macs_checked: !!auditKey,
    authenticated_through: null,
    unauthenticated: null,
    breach: { seq, kind, message },
  });
  const lines = archiveLines(file, opts.maxLineBytes);
  try {
    let first: IteratorResult<string>;
    try {
      first = await lines.next();
    } catch (e) {
      if (e instanceof ArchiveDamage) return bad(e.message);
      throw e;
    }
    let header: ArchiveHeader;
    try {
      header = JSON.parse(first.done ? '' : first.value);
    } catch {
      return bad('the archive header is not valid JSON');
    }
    if (header?.format !== ARCHIVE_FORMAT || !Number.isSafeInteger(header.first_seq) || !Number.isSafeInteger(header.last_seq) || typeof header.first_prev_hash !== 'string')
      return bad('the archive header is not a dsk-audit-archive/1 header');
    let headerState: ArchiveReport['header_mac'] = 'unchecked';
    if (auditKey) {
      const { mac, ...rest } = header;
      if (!mac) headerState = 'absent';
      else if (headerMac(auditKey, rest) !== mac) return { ...bad('the archive header has a wrong MAC: it was rewritten by someone without the audit key', 'forged', header.first_seq), header };
      else headerState = 'valid';
    }
    let parseError: string | null = null;
    async function* chunks(): AsyncGenerator<AuditTuple[]> {
      let chunk: AuditTuple[] = [];
      let lineNo = 1;
      try {
        for await (const text of lines) {
          lineNo++;
          let o: Record<string, unknown>;
          try {
            o = JSON.parse(text);
          } catch {
            parseError = `line ${lineNo} of the archive is not valid JSON`;
            break;
          }
          if (o === null || typeof o !== 'object') {
            parseError = `line ${lineNo} of the archive is not a row`;
            break;
          }
          chunk.push(COLS.map((c) => o[c] ?? null) as AuditTuple);
          if (chunk.length === 20_000) {
            yield chunk;
            chunk = [];
          }
        }
      } catch (e) {
        if (!(e instanceof ArchiveDamage)) throw e;
        parseError = e.message;
      }
      if (chunk.length) yield chunk;
    }
    const w = await walkChain({ chunks: chunks(), start: { seq: header.first_seq, prev_hash: header.first_prev_hash, from: 'genesis' }, auditKey });
    const rep: ArchiveReport = { ...w, file, header, header_mac: headerState, checkpoint: null };
    if (parseError && !rep.breach) rep.breach = { seq: (w.last_seq ?? header.first_seq - 1) + 1, kind: 'edited', message: parseError };
    if (!rep.breach && (w.last_seq !== header.last_seq || w.head_hash !== header.last_hash || w.rows !== header.rows))
      rep.breach = { seq: (w.last_seq ?? header.first_seq - 1) + 1, kind: 'truncated', message: `the archive holds rows up to ${w.last_seq ?? 'none'} but its header names ${header.first_seq} to ${header.last_seq}` };
    if (!rep.breach && live) {
      if (live.homeId !== header.home_id) throw new UsageError('ERR_ARCHIVE_FOREIGN', `${path.basename(file)} belongs to another home (${header.home_id})`);
      const cps = await live.store.events.withAction('AUDIT_ARCHIVE');
      for (const cp of cps) {
        const d = JSON.parse(cp.details) as { last_seq: number; last_hash: string; first_seq: number; first_prev_hash: string };
        if (d.last_seq === header.last_seq && d.first_seq === header.first_seq) {
          if (d.last_hash !== header.last_hash || d.first_prev_hash !== header.first_prev_hash)
            rep.breach = { seq: cp.seq, kind: 'forged', message: `the archive does not match checkpoint row ${cp.seq} of the live chain` };
          else rep.checkpoint = { seq: cp.seq, state: 'match' };
        }
      }
    }
    rep.ok = rep.breach === null;
    return rep;
  } finally {
    await lines.return(undefined);
  }
}

export function assertArchiveReadable(file: string): void {
  if (!fs.existsSync(file)) throw new NotFoundError('ERR_NOT_FOUND', `${file}: no such file`);
}
