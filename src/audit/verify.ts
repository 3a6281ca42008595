/**
 * Over 300 lines: the walk, the HEAD comparison and the recorded-head comparison name breaches in one vocabulary.
 *
 * Verifies the audit chain (see chain.ts for its definition) and names the first thing wrong.
 *
 * Structure (anyone can check): every row's hash is SHA-256 over its own fields and its
 * predecessor's hash, sequence numbers have no gaps, the chain starts at genesis (or at the point
 * the newest archive checkpoint names), and a row without a MAC is one of the few actions ever
 * written unkeyed (chain.ts UNKEYED_ACTIONS; any other is `forged`). Keys (only after unsealing):
 * every MAC matches; an unkeyed row of an allowed action is accepted when a later row with a valid
 * MAC covers it through the chain; the rows after the last keyed row are reported as
 * unauthenticated. Without the key, a writer of the file can recompute every hash after an edit,
 * so a structure-only pass says so.
 *
 * Kinds of breach, for the first bad row:
 *   edited     the row's content does not match its hash (or its hash was replaced)
 *   deleted    a sequence number is missing (rows removed from the middle or the start)
 *   inserted   a row that does not belong sits between two rows that linked to each other
 *   reordered  the row's hash is right for another sequence number
 *   truncated  the chain ends before the head recorded in audit_log/HEAD
 *   forged     the hashes are consistent but a MAC is wrong or missing where one is required
 */
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { chainHash, ChainMac, GENESIS_HASH, UNKEYED_ACTIONS } from './chain.js';
import { headMac, type HeadRead } from './head.js';
import type { AuditTuple, Store } from '../store/store.js';

export type BreachKind = 'edited' | 'deleted' | 'inserted' | 'reordered' | 'truncated' | 'forged';

export interface Breach {
  seq: number;
  kind: BreachKind;
  message: string;
}

export interface ChainStart {
  seq: number;
  prev_hash: string;
  /** 'genesis', or the seq of the AUDIT_ARCHIVE row that moved older rows into an archive */
  from: 'genesis' | { archive_row: number };
}

export interface VerifyReport {
  ok: boolean;
  rows: number;
  first_seq: number | null;
  last_seq: number | null;
  head_hash: string;
  start: ChainStart;
  /** false: structure only, MACs not checked */
  macs_checked: boolean;
  /** highest seq covered by a valid MAC (null when none, or MACs not checked) */
  authenticated_through: number | null;
  unauthenticated: { from: number; to: number; rows: number } | null;
  head_file: {
    state: 'match' | 'behind' | 'ahead' | 'missing' | 'unreadable' | 'archived';
    seq: number | null;
    rows_behind: number;
    mac: 'valid' | 'absent' | 'unchecked';
    /** a finding that is not a breach; `dsk audit verify --strict` fails on it (an unkeyed HEAD naming a keyed row) */
    finding: string | null;
  } | null;
  breach: Breach | null;
}

/** Where the live chain starts: genesis, or after the rows the newest archive checkpoint moved out. */
export async function chainStart(store: Store): Promise<ChainStart> {
  const cps = await store.events.withAction('AUDIT_ARCHIVE');
  const r = cps[cps.length - 1];
  if (r) {
    try {
      const d = JSON.parse(r.details) as { last_seq?: unknown; last_hash?: unknown };
      if (Number.isSafeInteger(d.last_seq) && typeof d.last_hash === 'string') return { seq: (d.last_seq as number) + 1, prev_hash: d.last_hash, from: { archive_row: r.seq } };
    } catch {
      // an unparsable checkpoint row fails its own hash check below
    }
  }
  return { seq: 1, prev_hash: GENESIS_HASH, from: 'genesis' };
}

export interface ChainInput {
  /** rows in seq order, in chunks (the store's chunks(), or an archive's lines) */
  chunks: AsyncIterable<AuditTuple[]> | Iterable<AuditTuple[]>;
  start: ChainStart;
  auditKey?: Buffer | null;
  /** accept the first row's prev_hash as it is (a slice, or a tail starting at a keyed row) */
  trustFirstLink?: boolean;
}

export type WalkResult = Omit<VerifyReport, 'head_file' | 'start'>;

/**
 * Walks rows in seq order. The core both `dsk audit verify` and archives use. Stops at the first
 * breach; the caller adds the HEAD comparison. The loop over a chunk is synchronous on purpose:
 * awaiting per row would cost more than hashing it.
 */
export async function walkChain(input: ChainInput): Promise<WalkResult> {
  const mac = input.auditKey ? new ChainMac(input.auditKey) : null;
  let expectSeq = input.start.seq;
  let prevHash = input.start.prev_hash;
  let prevPrevHash: string | null = null;
  let prevSeq: number | null = null;
  let rows = 0;
  let first: number | null = null;
  let authThrough: number | null = null;
  let pendingFrom: number | null = null; // first unkeyed row not yet covered by a keyed one
  let breach: Breach | null = null;
  // An unkeyed row of an action that is never unkeyed, reported once the next row is seen: if
  // that row shows the unkeyed one was inserted or replaced, that names it more precisely.
  let forbidden: Breach | null = null;
  const settle = (b: Breach): Breach => (forbidden && forbidden.seq < b.seq ? forbidden : b);
  try {
    walk: for await (const chunk of input.chunks) {
      for (const r of chunk) {
        const [seq, ts, action, actor, ip, keyId, details, prev, hash, m] = r;
        if (first === null) first = seq;
        if (seq !== expectSeq) {
          if (seq > expectSeq)
            breach = {
              seq: expectSeq,
              kind: 'deleted',
              message: seq - expectSeq === 1 ? `row ${expectSeq} is missing` : `rows ${expectSeq} to ${seq - 1} are missing`,
            };
          else breach = { seq, kind: 'inserted', message: `row ${seq} appears out of sequence (expected ${expectSeq})` };
          breach = settle(breach);
          break walk;
        }
        const own = chainHash(seq, ts, action, actor, ip, keyId, details, prev);
        if (own !== hash) {
          breach = settle(classifyBadHash(r, prevSeq, prevPrevHash));
          break walk;
        }
        if (prev !== prevHash && !(prevSeq === null && input.trustFirstLink)) {
          if (prevSeq !== null && prevPrevHash !== null && prev === prevPrevHash)
            breach = { seq: prevSeq, kind: 'inserted', message: `row ${prevSeq} was inserted: row ${seq} links straight to row ${prevSeq - 1}` };
          else if (prevSeq === null)
            breach = { seq, kind: 'deleted', message: `row ${seq} does not link to the start of the chain (${input.start.from === 'genesis' ? 'genesis' : 'the archive checkpoint'}): earlier rows were removed or replaced` };
          else breach = { seq: prevSeq, kind: 'edited', message: `row ${prevSeq} was replaced: its hash is not the one row ${seq} recorded` };
          breach = settle(breach);
          break walk;
        }
        if (forbidden) {
          breach = forbidden;
          break walk;
        }
        if (m === null && !UNKEYED_ACTIONS.has(action))
          forbidden = { seq, kind: 'forged', message: `row ${seq} (${action}) has no MAC; only ${[...UNKEYED_ACTIONS].join(' and ')} rows are ever written without the audit key: its MAC was removed or the row rewritten` };
        if (mac) {
          if (m === null) {
            if (pendingFrom === null) pendingFrom = seq;
          } else if (mac.ofHash(hash) !== m) {
            breach = { seq, kind: 'forged', message: `row ${seq} has a consistent hash but a wrong MAC: it was rewritten by someone without the audit key` };
            break walk;
          } else {
            authThrough = seq;
            pendingFrom = null;
          }
        }
        prevPrevHash = prevHash;
        prevHash = hash;
        prevSeq = seq;
        expectSeq = seq + 1;
        rows++;
      }
    }
    breach ??= forbidden;
  } finally {
    mac?.wipe();
  }
  const last = prevSeq;
  return {
    ok: breach === null,
    rows,
    first_seq: first,
    last_seq: last,
    head_hash: prevHash,
    macs_checked: !!mac,
    authenticated_through: mac ? authThrough : null,
    unauthenticated: mac && pendingFrom !== null && last !== null && !breach ? { from: pendingFrom, to: last, rows: last - pendingFrom + 1 } : null,
    breach,
  };
}

function classifyBadHash(r: AuditTuple, prevSeq: number | null, prevPrevHash: string | null): Breach {
  const [seq, ts, action, actor, ip, keyId, details, prev, hash] = r;
  if (prevSeq !== null && prevPrevHash !== null && prev === prevPrevHash && chainHash(seq - 1, ts, action, actor, ip, keyId, details, prev) === hash)
    return { seq: prevSeq, kind: 'inserted', message: `row ${prevSeq} was inserted: the rows after it were renumbered` };
  for (let d = 1; d <= 16; d++) {
    for (const s of [seq + d, seq - d]) {
      if (s >= 1 && chainHash(s, ts, action, actor, ip, keyId, details, prev) === hash) {
        if (s === seq - 1) return { seq, kind: 'inserted', message: `row ${seq} was renumbered from ${s}: a row was inserted before it` };
        return { seq, kind: 'reordered', message: `row ${seq} holds the row that belongs at seq ${s}: rows were reordered` };
      }
    }
  }
  return { seq, kind: 'edited', message: `row ${seq} was edited: its content does not match its hash` };
}

/** Verifies the live chain of a home, and compares it with audit_log/HEAD. */
export async function verifyChain(store: Store, head: HeadRead, auditKey: Buffer | null, progress?: (done: number, total: number) => void): Promise<VerifyReport> {
  const start = await chainStart(store);
  const w = await walkChain({ chunks: progress ? counted(store.events.chunks(), await store.events.count(), progress) : store.events.chunks(), start, auditKey });
  const report: VerifyReport = { ...w, start, head_file: null };
  report.breach ??= await compareRecordedHead(store, report);
  report.head_file = await compareHead(store, report, head, auditKey);
  report.ok = report.breach === null;
  return report;
}

/** Reports rows walked after each chunk (for a progress bar). */
async function* counted(chunks: AsyncIterable<AuditTuple[]>, total: number, progress: (done: number, total: number) => void): AsyncIterable<AuditTuple[]> {
  let done = 0;
  progress(0, total);
  for await (const c of chunks) {
    yield c;
    done += c.length;
    progress(done, Math.max(done, total));
  }
}

/**
 * A shared store records its head with every insert (store.ts recordedHead): rows cut off the end,
 * or a rewritten tail, disagree with it even on a node whose local HEAD file is behind.
 */
export async function compareRecordedHead(store: Store, r: Pick<VerifyReport, 'last_seq' | 'head_hash'>): Promise<Breach | null> {
  const rec = await store.events.recordedHead?.();
  if (!rec) return null;
  if (r.last_seq === null || r.last_seq < rec.seq)
    return { seq: (r.last_seq ?? 0) + 1, kind: 'truncated', message: `the chain ends at ${r.last_seq ?? 'nothing'} but the store recorded its head at seq ${rec.seq}: rows were cut off the end` };
  if (r.last_seq === rec.seq && r.head_hash !== rec.hash) return { seq: rec.seq, kind: 'edited', message: `row ${rec.seq} does not match the head the store recorded for it: the tail was rewritten` };
  return null;
}

/** Below this many rows one thread is quicker than starting workers. */
const PARALLEL_MIN_ROWS = 300_000;

/**
 * The same check as verifyChain, split over worker threads by seq range: each slice checks its
 * rows' hashes, links and MACs; here the slices must link end to start. Any breach, or a slice
 * that does not link, sends the whole chain through the sequential walk, which names the first
 * bad row exactly. Rows appended while this runs are beyond the range and not checked.
 */
export async function verifyChainParallel(
  home: string,
  store: Store,
  head: HeadRead,
  auditKey: Buffer | null,
  threads = Math.min(4, os.availableParallelism?.() ?? os.cpus().length),
  minRows = PARALLEL_MIN_ROWS,
  progress?: (done: number, total: number) => void,
): Promise<VerifyReport> {
  const b = await store.events.bounds();
  const total = await store.events.count();
  if (threads < 2 || b.first === null || b.last === null || total < minRows) return verifyChain(store, head, auditKey, progress);
  let done = 0;
  progress?.(0, total);
  const start = await chainStart(store);
  const span = b.last - b.first + 1;
  const cuts = Array.from({ length: threads + 1 }, (_, i) => b.first! - 1 + Math.floor((span * i) / threads));
  type Part = WalkResult & { first_prev: string | null };
  const parts = await Promise.all(
    cuts.slice(0, -1).map(
      (lo, i) =>
        new Promise<Part>((resolve, reject) => {
          const w = new Worker(new URL(import.meta.url.endsWith('.ts') ? '../../dist/audit/verify-worker.js' : './verify-worker.js', import.meta.url), { workerData: { home, lo, hi: cuts[i + 1], key: auditKey ? new Uint8Array(auditKey) : null } });
          w.on('message', (m: Part | { progress: number }) => {
            if ('progress' in m) progress?.((done += m.progress), Math.max(done, total));
            else resolve(m);
          });
          w.once('error', reject);
        }),
    ),
  );
  let linked = parts[0].first_seq === start.seq && parts[0].first_prev === start.prev_hash;
  for (let i = 0; i < parts.length && linked; i++) {
    const p = parts[i];
    if (p.breach || p.rows === 0) linked = false;
    else if (i > 0 && (p.first_prev !== parts[i - 1].head_hash || p.first_seq !== parts[i - 1].last_seq! + 1)) linked = false;
  }
  if (!linked) return verifyChain(store, head, auditKey, progress);
  const last = parts[parts.length - 1];
  const auth = auditKey ? parts.reduce<number | null>((m, p) => (p.authenticated_through !== null && (m === null || p.authenticated_through > m) ? p.authenticated_through : m), null) : null;
  const from = (auth ?? parts[0].first_seq! - 1) + 1;
  const report: VerifyReport = {
    ok: true,
    rows: parts.reduce((n, p) => n + p.rows, 0),
    first_seq: parts[0].first_seq,
    last_seq: last.last_seq,
    head_hash: last.head_hash,
    macs_checked: !!auditKey,
    authenticated_through: auth,
    unauthenticated: auditKey && from <= last.last_seq! ? { from, to: last.last_seq!, rows: last.last_seq! - from + 1 } : null,
    breach: null,
    start,
    head_file: null,
  };
  report.breach = await compareRecordedHead(store, report);
  report.head_file = await compareHead(store, report, head, auditKey);
  report.ok = report.breach === null;
  return report;
}

async function compareHead(store: Store, rep: VerifyReport, head: HeadRead, auditKey: Buffer | null): Promise<VerifyReport['head_file']> {
  if (head.state === 'missing') {
    if (!rep.breach && rep.rows > 0)
      rep.breach = { seq: (rep.last_seq ?? 0) + 1, kind: 'truncated', message: 'audit_log/HEAD is missing, so cutting rows off the end cannot be ruled out' };
    return { state: 'missing', seq: null, rows_behind: 0, mac: 'unchecked', finding: null };
  }
  if (head.state === 'unreadable') {
    if (!rep.breach) rep.breach = { seq: (rep.last_seq ?? 0) + 1, kind: 'truncated', message: `audit_log/HEAD is unreadable (${head.reason})` };
    return { state: 'unreadable', seq: null, rows_behind: 0, mac: 'unchecked', finding: null };
  }
  const h = head.head;
  let macState: 'valid' | 'absent' | 'unchecked' = 'unchecked';
  if (auditKey) {
    if (h.mac === null) macState = 'absent';
    else if (headMac(auditKey, h.seq, h.hash) === h.mac) macState = 'valid';
    else {
      rep.breach ??= { seq: h.seq, kind: 'forged', message: `audit_log/HEAD (seq ${h.seq}) has a wrong MAC: it was written by someone without the audit key` };
      return { state: 'unreadable', seq: h.seq, rows_behind: 0, mac: 'unchecked', finding: null };
    }
  }
  const last = rep.last_seq ?? rep.start.seq - 1;
  if (h.seq > last) {
    rep.breach ??= {
      seq: last + 1,
      kind: 'truncated',
      message: `the chain ends at seq ${last} but audit_log/HEAD records seq ${h.seq}: rows ${last + 1} to ${h.seq} were cut off`,
    };
    return { state: 'ahead', seq: h.seq, rows_behind: 0, mac: macState, finding: null };
  }
  if (h.seq < rep.start.seq) return { state: 'archived', seq: h.seq, rows_behind: last - h.seq, mac: macState, finding: null };
  const [row] = await store.events.after(h.seq - 1, 1);
  const at = row?.seq === h.seq ? row : null;
  if (at?.hash !== h.hash && !rep.breach)
    rep.breach = { seq: h.seq, kind: 'truncated', message: `row ${h.seq} is not the row audit_log/HEAD records: the chain was cut back and rewritten from there` };
  // Only the keyed writer of a keyed row publishes a HEAD naming it, and it writes that HEAD keyed.
  const finding = h.mac === null && at?.mac != null ? `audit_log/HEAD (seq ${h.seq}) was written without the audit key but names a keyed row: rows after it may have been cut off and HEAD rewritten` : null;
  return { state: h.seq === last ? 'match' : 'behind', seq: h.seq, rows_behind: last - h.seq, mac: macState, finding };
}
