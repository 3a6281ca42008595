/**
 * The gateway's access log: one JSON line per request, for a log shipper (Loki, Elasticsearch,
 * Vector). It records who (the key's public id), what (method, route name, path), the outcome
 * (status, bytes in and out, latency) and from where (the client address). It never records a
 * header, a query string or a body, so no key, token, signature or prompt reaches it; a path
 * that carries something shaped like a key has it cut to the key's id, and any run of 64 hex
 * digits (a secret, however encoded around it) is cut out.
 *
 *   {"time":"2026-11-30T20:00:00.000Z","key_id":"3f9a2c7d1e8b","method":"POST",
 *    "route":"chat.completions","path":"/v1/chat/completions","status":200,
 *    "latency_ms":12.3,"bytes_in":96,"bytes_out":512,"source":"10.0.0.7"}
 *
 * A file is opened for appending (0600) and reopened by `reopen()`: logrotate renames the file,
 * then signals the gateway (SIGHUP, handled in the CLI), and lines go to a new file at the old
 * name. Lines written before the reopen stay whole in the renamed file.
 */
import fs from 'node:fs';
import type http from 'node:http';
import { ioError } from '../kernel/files.js';

export interface AccessEntry {
  time: string;
  key_id: string | null;
  method: string;
  route: string;
  path: string;
  status: number;
  latency_ms: number;
  bytes_in: number;
  bytes_out: number;
  source: string;
}

const MAX_PATH = 512;
const KEY_LIKE = /dsk_([0-9a-f]{12})_[0-9A-Za-z_-]*/g;
/** 64 hex digits or more: a key's secret however it was encoded around it (dsk%5F…), or a signature. */
const SECRET_LIKE = /[0-9A-Fa-f]{64,}/g;

/** The path as logged: no query string, anything key-shaped cut to its id, bounded length. */
export function loggedPath(target: string): string {
  const q = target.indexOf('?');
  const p = (q < 0 ? target : target.slice(0, q)).replace(KEY_LIKE, 'dsk_$1_…').replace(SECRET_LIKE, '…');
  return p.length > MAX_PATH ? `${p.slice(0, MAX_PATH)}…` : p;
}

/** Counts the body bytes a response sends (streamed or not), without buffering anything. */
export function countResponseBytes(res: http.ServerResponse): () => number {
  let n = 0;
  const add = (chunk: unknown, encoding?: unknown) => {
    if (typeof chunk === 'string') n += Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
    else if (chunk instanceof Uint8Array) n += chunk.byteLength;
  };
  const write = res.write;
  const end = res.end;
  res.write = function (this: http.ServerResponse, chunk: unknown, ...rest: unknown[]) {
    add(chunk, rest[0]);
    return (write as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
  } as typeof res.write;
  res.end = function (this: http.ServerResponse, chunk?: unknown, ...rest: unknown[]) {
    if (chunk !== undefined && typeof chunk !== 'function') add(chunk, rest[0]);
    return (end as (...a: unknown[]) => http.ServerResponse).call(this, chunk, ...rest);
  } as typeof res.end;
  return () => n;
}

/** How long a line may wait for others before it is written, and how much may wait. */
const FLUSH_EVERY_MS = 50;
const FLUSH_BYTES = 64 * 1024;

/**
 * Where lines go. Lines are gathered and written together every FLUSH_EVERY_MS (or at
 * FLUSH_BYTES), with one synchronous append: a write per request cost the gateway 12-23 % more CPU
 * per request in bench/operations.mjs (a thread-pool round trip each), an append of a batch to the
 * page cache costs microseconds. The price: a gateway killed with SIGKILL loses the last 50 ms of
 * lines (SIGTERM and SIGHUP write them first).
 */
export class AccessLog {
  #fd: number | null;
  readonly #file: string | null;
  #pending: string[] = [];
  #bytes = 0;
  #timer: NodeJS.Timeout | null = null;
  readonly #onError: (e: Error) => void;

  private constructor(fd: number | null, file: string | null, onError: (e: Error) => void) {
    this.#fd = fd;
    this.#file = file;
    this.#onError = onError;
  }

  /** Lines to stdout (the journal under systemd, or a container's log). */
  static toStdout(): AccessLog {
    return new AccessLog(null, null, () => {});
  }

  /**
   * Lines appended to `file` (created 0600). Fails now, before the gateway starts, if it cannot be
   * opened. A failed write later (a full disk) loses those lines, never a request: `onError` is told.
   */
  static toFile(file: string, onError: (e: Error) => void = () => {}): AccessLog {
    return new AccessLog(openAppend(file), file, onError);
  }

  get file(): string | null {
    return this.#file;
  }

  write(e: AccessEntry): void {
    const line = JSON.stringify(e) + '\n';
    this.#pending.push(line);
    this.#bytes += line.length;
    if (this.#bytes >= FLUSH_BYTES) this.flush();
    else if (!this.#timer) {
      this.#timer = setTimeout(() => this.flush(), FLUSH_EVERY_MS);
      this.#timer.unref();
    }
  }

  /** Writes the lines gathered so far. */
  flush(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    if (!this.#pending.length) return;
    const data = Buffer.from(this.#pending.join(''));
    this.#pending = [];
    this.#bytes = 0;
    if (this.#fd === null) {
      process.stdout.write(data);
      return;
    }
    try {
      for (let off = 0; off < data.length; ) off += fs.writeSync(this.#fd, data, off, data.length - off);
    } catch (e) {
      this.#onError(ioError(e, this.#file!) as Error);
    }
  }

  /** Opens the path again (after a rename by logrotate). If that fails, the old file keeps the lines and the error is thrown. */
  reopen(): void {
    if (!this.#file || this.#fd === null) return;
    const next = openAppend(this.#file);
    this.flush();
    fs.closeSync(this.#fd);
    this.#fd = next;
  }

  /** Writes what is pending and closes the file (stdout is left open). */
  close(): void {
    this.flush();
    if (this.#fd !== null) fs.closeSync(this.#fd);
    this.#fd = null;
  }
}

function openAppend(file: string): number {
  try {
    return fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT, 0o600);
  } catch (e) {
    throw ioError(e, file);
  }
}
