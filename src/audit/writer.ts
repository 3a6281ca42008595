/**
 * Appending to the audit log: one row per state change or refusal, the seed's fields (timestamp,
 * action, actor, source_ip, details) plus a sequence number, the chain hash and its MAC (the
 * formula is in chain.ts). A row written without the master key (for example a failed unseal) has
 * no MAC, but the next keyed row covers it.
 *
 * Rows are appended inside the caller's transaction, so a state change and its row commit
 * together. The new row links to `tx.events.last()`, the chain head as this transaction sees it:
 * the store serialises appenders there (see src/store/store.ts).
 */
import type { AuditRow, StoreTx } from '../store/store.js';
import type { Clock } from '../kernel/clock.js';
import { UsageError } from '../kernel/errors.js';
import { canonicalJson, GENESIS_HASH, rowHash, rowMac } from './chain.js';

export interface AuditEvent {
  action: string;
  actor: string;
  source_ip?: string | null;
  key_id?: string | null;
  details?: Record<string, unknown>;
}

/** Defence in depth: refuse to write anything shaped like a dsk key or signing secret. */
const SECRET_SHAPES = /dsk_[0-9a-f]{12}_[0-9a-f]{16}|dss_[A-Za-z0-9_-]{20}/;

/** Appends one row in `tx`; `auditKey` null writes it without a MAC. */
export async function appendAudit(tx: StoreTx, e: AuditEvent, clock: Clock, auditKey: Buffer | null): Promise<AuditRow> {
  const details = canonicalJson(e.details ?? {});
  // Typically a leaked key pasted into a reason or a name: the caller's input, so exit 2, and the
  // surrounding transaction rolls back.
  if (SECRET_SHAPES.test(details) || SECRET_SHAPES.test(e.actor))
    throw new UsageError('ERR_SECRET_IN_AUDIT', 'refusing to record something shaped like an API key or signing secret in the audit log', { hint: 'refer to a key by its id (dsk keys list shows it), never by the key itself' });
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
