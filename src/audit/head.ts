/**
 * audit_log/HEAD: the newest sequence number and hash of the chain, kept outside the database so
 * that cutting rows off the end of the chain (which leaves a perfectly consistent shorter chain) is
 * detected by `dsk audit verify`.
 *
 *   {"format":"dsk-audit-head/1","seq":N,"hash":"…","mac":"…"|null,"updated_at":"…"}
 *   mac = HMAC-SHA256(K_audit, "dsk-audit-head/1|" + seq + "|" + hash), null when written unkeyed
 *
 * HEAD is written after the transaction that appended rows has committed, never before (a HEAD
 * ahead of the database would be a false alarm after a failed commit). Several processes append,
 * so the write happens inside a store transaction (SQLite: BEGIN IMMEDIATE on the same files): all
 * HEAD writers are serialised with every appender, and each writes the database's current head,
 * which only grows. HEAD therefore never goes backwards. A crash between commit and HEAD write leaves
 * HEAD behind the database, which verify accepts (it reports how far behind).
 *
 * HEAD only moves forward from a head the database still contains: if the row HEAD names is gone
 * or different (rows were cut off, or the tail rewritten), HEAD is left as it is, so the evidence
 * survives until someone runs verify and deals with it. For the same reason a keyed writer leaves
 * alone a HEAD with a wrong MAC, or an unkeyed HEAD that names a keyed row; and an unkeyed writer
 * never writes a HEAD naming a keyed row (the keyed writer of that row publishes it).
 *
 * Every writer moves HEAD: the CLI after each transaction (app/home.ts), the gateway's writer
 * thread after each flush (gateway/flush-worker.ts). So "HEAD is behind" means a writer crashed
 * between its commit and its HEAD write, not routine.
 */
import path from 'node:path';
import { homePath } from '../kernel/home-layout.js';
import { hmacSha256 } from '../kernel/crypto.js';
import { readTextIfExists, writePrivateFile } from '../kernel/files.js';
import type { Store, StoreTx } from '../store/store.js';

export const HEAD_FORMAT = 'dsk-audit-head/1';

export interface HeadRecord {
  format: typeof HEAD_FORMAT;
  seq: number;
  hash: string;
  mac: string | null;
  updated_at: string;
}

export function headPath(home: string): string {
  return path.join(homePath(home, 'auditDir'), 'HEAD');
}

export function headMac(auditKey: Buffer, seq: number, hash: string): string {
  return hmacSha256(auditKey, `${HEAD_FORMAT}|${seq}|${hash}`).toString('hex');
}

export type HeadRead = { state: 'missing' } | { state: 'unreadable'; reason: string } | { state: 'ok'; head: HeadRecord };

export function readHead(home: string): HeadRead {
  const text = readTextIfExists(headPath(home));
  if (text === null) return { state: 'missing' };
  return parseHead(text);
}

/** Decodes HEAD's text; never throws. */
export function parseHead(text: string): HeadRead {
  let v: Partial<HeadRecord>;
  try {
    v = JSON.parse(text);
  } catch {
    return { state: 'unreadable', reason: 'not valid JSON' };
  }
  if (
    v?.format !== HEAD_FORMAT ||
    !Number.isSafeInteger(v.seq) ||
    (v.seq as number) < 0 ||
    typeof v.hash !== 'string' ||
    !/^[0-9a-f]{64}$/.test(v.hash) ||
    !(v.mac === null || (typeof v.mac === 'string' && /^[0-9a-f]{64}$/.test(v.mac)))
  )
    return { state: 'unreadable', reason: 'unexpected format' };
  return { state: 'ok', head: v as HeadRecord };
}

/**
 * Moves HEAD to the database's current head. Call after a commit that appended rows. Returns the
 * record written, or null when HEAD was left alone (already there, or no longer in the chain).
 */
export async function publishHead(store: Store, home: string, auditKey: Buffer | null, now: number): Promise<HeadRecord | null> {
  return store.transaction(async (tx) => {
    const last = await tx.events.last();
    if (!last) return null;
    // Only a keyed writer names a keyed row: an unkeyed HEAD over a keyed row is a finding (verify --strict).
    if (!auditKey && (await rowAt(tx, last.seq))?.mac != null) return null;
    const cur = readHead(home);
    if (cur.state === 'unreadable') return null;
    if (cur.state === 'ok') {
      if (cur.head.seq >= last.seq) return null;
      const at = await rowAt(tx, cur.head.seq);
      const first = (await tx.events.bounds()).first;
      const archivedAway = at === null && first !== null && cur.head.seq < first;
      if (!archivedAway && at?.hash !== cur.head.hash) return null;
      // Evidence a keyed writer must not paper over: a HEAD whose MAC is wrong, or an unkeyed HEAD
      // naming a keyed row (someone cut keyed rows off the end and rewrote HEAD without the key).
      if (auditKey && cur.head.mac !== null && headMac(auditKey, cur.head.seq, cur.head.hash) !== cur.head.mac) return null;
      if (auditKey && cur.head.mac === null && at?.mac != null) return null;
    }
    const rec: HeadRecord = { format: HEAD_FORMAT, seq: last.seq, hash: last.hash, mac: auditKey ? headMac(auditKey, last.seq, last.hash) : null, updated_at: new Date(now).toISOString() };
    // No directory fsync (it would cost a second fsync on every commit): after a power cut HEAD may
    // be the previous one, i.e. behind the database, which verify accepts; never ahead, never torn.
    writePrivateFile(headPath(home), JSON.stringify(rec) + '\n', { syncDir: false });
    return rec;
  });
}

async function rowAt(tx: StoreTx, seq: number): Promise<{ hash: string; mac: string | null } | null> {
  const [r] = await tx.events.after(seq - 1, 1);
  return r && r.seq === seq ? r : null;
}
