/**
 * Appending to the audit log: one row per state change or refusal, the seed's fields (timestamp,
 * action, actor, source_ip, details) plus a sequence number, the chain hash and its MAC (the
 * formula is in chain.ts). Only the actions in UNKEYED_ACTIONS may be written without the audit
 * key (a refusal recorded before anyone unsealed); every other row carries a MAC.
 *
 * Rows are appended inside the caller's transaction, so a state change and its row commit
 * together. The new row links to `tx.events.last()`, the chain head as this transaction sees it:
 * the store serialises appenders there (see src/store/store.ts).
 *
 * A keyed writer never blesses rows it cannot authenticate. Before its first row in a transaction
 * it checks the tail of the chain: the newest keyed row's hash and MAC, and every row after it
 * (hashes, links, sequence numbers, and that each is an action allowed to be unkeyed). If that
 * fails — someone with write access to the file deleted or edited rows, recomputed the hashes and
 * removed the MACs — the writer records the break in a keyed AUDIT_BREAK row before its own row,
 * rather than refusing to write. Why record and not refuse: refusing would let anyone who can
 * write audit.db stop every keyed operation (the revocation of a leaked key, the gateway's audit of
 * refused requests); the AUDIT_BREAK row fixes the evidence (what was wrong, from which seq) under
 * the MAC at the moment it was noticed, so it cannot be cleaned up later without the key; and it
 * blesses nothing, because `dsk audit verify` still names the unauthenticated rows as `forged`
 * (exit 5) on their own.
 */
import type { AuditRow, StoreTx } from '../store/store.js';
import type { Clock } from '../kernel/clock.js';
import { UsageError } from '../kernel/errors.js';
import { canonicalJson, GENESIS_HASH, rowHash, rowMac, UNKEYED_ACTIONS } from './chain.js';
import { walkChain, type Breach } from './verify.js';

export interface AuditEvent {
  action: string;
  actor: string;
  source_ip?: string | null;
  key_id?: string | null;
  details?: Record<string, unknown>;
}

/** Defence in depth: refuse to write anything shaped like a dsk key or signing secret. */
const SECRET_SHAPES = /dsk_[0-9a-f]{12}_[0-9a-f]{16}|dss_[A-Za-z0-9_-]{20}/;

/** Transactions whose tail a keyed writer has already checked (it then appends onto its own rows). */
const checkedTx = new WeakSet<StoreTx>();

/** Appends one row in `tx`; `auditKey` null writes it without a MAC (only UNKEYED_ACTIONS). */
export async function appendAudit(tx: StoreTx, e: AuditEvent, clock: Clock, auditKey: Buffer | null): Promise<AuditRow> {
  const details = canonicalJson(e.details ?? {});
  // Typically a leaked key pasted into a reason or a name: the caller's input, so exit 2, and the
  // surrounding transaction rolls back.
  if (SECRET_SHAPES.test(details) || SECRET_SHAPES.test(e.actor))
    throw new UsageError('ERR_SECRET_IN_AUDIT', 'refusing to record something shaped like an API key or signing secret in the audit log', { hint: 'refer to a key by its id (dsk keys list shows it), never by the key itself' });
  if (!auditKey && !UNKEYED_ACTIONS.has(e.action)) throw new Error(`internal: ${e.action} rows must be written with the audit key`);
  if (auditKey && !checkedTx.has(tx)) {
    checkedTx.add(tx);
    const breach = await checkTail(tx, auditKey);
    if (breach) await insertRow(tx, { action: 'AUDIT_BREAK', actor: e.actor, source_ip: e.source_ip ?? null, details: breach }, canonicalJson(breach), clock, auditKey);
  }
  return insertRow(tx, e, details, clock, auditKey);
}

async function insertRow(tx: StoreTx, e: AuditEvent, details: string, clock: Clock, auditKey: Buffer | null): Promise<AuditRow> {
  const last = await tx.events.last();
  const row: AuditRow = {
    seq: (last?.seq ?? 0) + 1,
    ts: new Date(clock.now()).toISOString(),
    action: e.action,
    actor: e.actor,
    source_ip: e.source_ip ?? null,
    key_id: e.key_id ?? null,
    details,
    prev_hash: last?.hash ?? GENESIS_HASH,
    hash: '',
    mac: null,
  };
  row.hash = rowHash(row);
  row.mac = auditKey ? rowMac(auditKey, row.hash) : null;
  await tx.events.insert(row);
  return row;
}

/** A breach message quotes row fields a writer of the file chose: bounded, and never anything shaped like a secret. */
function safeMessage(m: string): string {
  return SECRET_SHAPES.test(m) ? 'a row holds text shaped like a key or secret (not repeated here)' : m.slice(0, 300);
}

/** What an AUDIT_BREAK row records. */
export interface TailBreak {
  [k: string]: unknown;
  seq: number;
  kind: Breach['kind'];
  message: string;
  /** the newest row whose MAC was valid when the break was noticed (null: none) */
  authenticated_through: number | null;
  last_seq: number;
}

/**
 * Checks the rows a new keyed row would chain onto: from the newest keyed row (its own hash and
 * MAC; the MAC covers its link backwards) to the end. Null when they authenticate.
 */
export async function checkTail(tx: StoreTx, auditKey: Buffer): Promise<TailBreak | null> {
  const last = await tx.events.last();
  if (!last) return null;
  const from = await tx.events.lastKeyedSeq();
  if (from === null)
    return { seq: 1, kind: 'forged', message: `no row up to seq ${last.seq} carries a MAC (MASTER_INIT always does): the log was rewritten without the audit key`, authenticated_through: null, last_seq: last.seq };
  const w = await walkChain({
    chunks: tx.events.chunks(from - 1),
    // The keyed row's own link backwards is covered by its MAC (over its hash, over prev_hash).
    start: { seq: from, prev_hash: '', from: 'genesis' },
    auditKey,
    trustFirstLink: true,
  });
  if (w.breach) return { seq: w.breach.seq, kind: w.breach.kind, message: safeMessage(w.breach.message), authenticated_through: w.authenticated_through, last_seq: last.seq };
  if (w.last_seq !== last.seq) return { seq: (w.last_seq ?? from) + 1, kind: 'deleted', message: `the chain ends at ${w.last_seq} but its newest row is ${last.seq}`, authenticated_through: w.authenticated_through, last_seq: last.seq };
  return null;
}
