/**
 * The audit log: one row per state change or refusal, the seed's fields (timestamp, action, actor,
 * source_ip, details) plus a sequence number and a hash chain.
 *
 *   hash[n] = SHA-256(JSON [seq, ts, action, actor, source_ip, key_id, details, hash[n-1]])
 *   mac[n]  = HMAC-SHA256(K_audit, hash[n])      K_audit = HMAC(master, "dsk/v1/audit-chain")
 *
 * The unkeyed hash shows any edit, deletion, insertion or reordering to anyone; the MAC stops a
 * writer of the file who cannot unseal from recomputing a consistent chain. A row written without
 * the master key (for example a failed unseal) has no MAC, but the next keyed row covers it.
 *
 * Rows are appended inside the caller's transaction, so a state change and its row commit together.
 */
import type { DB } from '../store/sqlite.js';
import { hmacSha256, sha256Hex } from '../kernel/crypto.js';
import type { Clock } from '../kernel/clock.js';
import { UsageError } from '../kernel/errors.js';

export const GENESIS_HASH = '0'.repeat(64);

export interface AuditEvent {
  action: string;
  actor: string;
  source_ip?: string | null;
  key_id?: string | null;
  details?: Record<string, unknown>;
}

export interface AuditRow {
  seq: number;
  ts: string;
  action: string;
  actor: string;
  source_ip: string | null;
  key_id: string | null;
  details: string;
  prev_hash: string;
  hash: string;
  mac: string | null;
}

/** Defence in depth: refuse to write anything shaped like a dsk key or signing secret. */
const SECRET_SHAPES = /dsk_[0-9a-f]{12}_[0-9a-f]{16}|dss_[A-Za-z0-9_-]{20}/;

export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') return JSON.stringify(v ?? null);
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  const o = v as Record<string, unknown>;
  return `{${Object.keys(o)
    .filter((k) => o[k] !== undefined)
    .sort()
    .map((k) => `${JSON.stringify(k)}:${canonicalJson(o[k])}`)
    .join(',')}}`;
}

export function rowHash(r: Pick<AuditRow, 'seq' | 'ts' | 'action' | 'actor' | 'source_ip' | 'key_id' | 'details' | 'prev_hash'>): string {
  return sha256Hex(JSON.stringify([r.seq, r.ts, r.action, r.actor, r.source_ip, r.key_id, r.details, r.prev_hash]));
}

/** The columns of audit.events in table order; verify, export and archives all use this order. */
export const AUDIT_COLUMNS = ['seq', 'ts', 'action', 'actor', 'source_ip', 'key_id', 'details', 'prev_hash', 'hash', 'mac'] as const;

export function rowMac(auditKey: Buffer, hash: string): string {
  return hmacSha256(auditKey, hash).toString('hex');
}

export class AuditWriter {
  #last;
  #insert;
  /** Rows appended by this writer (committed or not); Home.tx compares it to know HEAD may move. */
  appended = 0;
  constructor(
    private readonly db: DB,
    private readonly clock: Clock,
    private readonly auditKey: Buffer | null,
  ) {
    this.#last = db.prepare('SELECT seq, hash FROM audit.events ORDER BY seq DESC LIMIT 1');
    this.#insert = db.prepare(
      'INSERT INTO audit.events (seq, ts, action, actor, source_ip, key_id, details, prev_hash, hash, mac) VALUES (?,?,?,?,?,?,?,?,?,?)',
    );
  }

  /** Appends one row. Must run inside a write transaction (see inTransaction). */
  append(e: AuditEvent): AuditRow {
    const details = canonicalJson(e.details ?? {});
    // Typically a leaked key pasted into --reason or --name: the caller's input, so exit 2, and the
    // surrounding transaction rolls back.
    if (SECRET_SHAPES.test(details) || SECRET_SHAPES.test(e.actor))
      throw new UsageError('ERR_SECRET_IN_AUDIT', 'refusing to record something shaped like an API key or signing secret in the audit log', { hint: 'refer to a key by its id (dsk keys list shows it), never by the key itself' });
    const last = this.#last.get() as { seq: number; hash: string } | undefined;
    const row: AuditRow = {
      seq: (last?.seq ?? 0) + 1,
      ts: new Date(this.clock.now()).toISOString(),
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
    row.mac = this.auditKey ? rowMac(this.auditKey, row.hash) : null;
    this.#insert.run(row.seq, row.ts, row.action, row.actor, row.source_ip, row.key_id, row.details, row.prev_hash, row.hash, row.mac);
    this.appended++;
    return row;
  }
}

export function auditHead(db: DB): { seq: number; hash: string; count: number } {
  const r = db.prepare('SELECT seq, hash FROM audit.events ORDER BY seq DESC LIMIT 1').get() as { seq: number; hash: string } | undefined;
  const c = db.prepare('SELECT count(*) AS n FROM audit.events').get() as { n: number };
  return { seq: r?.seq ?? 0, hash: r?.hash ?? GENESIS_HASH, count: c.n };
}

export function recentAudit(db: DB, limit: number): AuditRow[] {
  return db.prepare('SELECT * FROM audit.events ORDER BY seq DESC LIMIT ?').all(limit) as AuditRow[];
}
