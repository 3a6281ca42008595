/**
 * Over 300 lines: it is the whole store contract, interfaces only, read as one page by every engine.
 *
 * The store: everything dsk keeps in a database, behind one engine-neutral, asynchronous interface.
 * SQLite (src/store/sqlite/) is the embedded engine; another engine implements the same interface
 * in its own folder and nothing above src/store changes.
 *
 * Contract every engine keeps:
 *   - `transaction(fn)` runs fn against a StoreTx and commits everything it wrote, or nothing if fn
 *     throws (the error is rethrown, engine failures mapped to DskErrors with stable codes). Key
 *     changes and their audit rows are written through the same StoreTx, so they commit together.
 *   - transactions are serialised: within one process, and across processes/hosts for writers of
 *     the audit chain. `tx.events.last()` is the chain head a new row links to; an engine whose
 *     writers can run concurrently takes a lock there that lasts until commit, so two writers never
 *     link to the same head. SQLite's BEGIN IMMEDIATE already serialises every writer.
 *   - reads outside a transaction see committed data only; reads inside it see its own writes. A
 *     transaction must not be opened inside another one on the same Store (it would wait for
 *     itself): pass the StoreTx down instead.
 *   - times are epoch milliseconds; audit `ts` is ISO-8601 UTC text (fixed width, so text order is
 *     time order), because the chain hashes that text.
 */
import type { KeyRow, KeyStatus } from '../domain/key.js';
import type { OperatorRow } from '../domain/operator.js';
import type { Cidr } from '../kernel/ip.js';
import type { UsageReads, UsageWrites } from './usage.js';

export type { KeyRow, KeyStatus, OperatorRow };

/** One audit row (audit.events); `details` is canonical JSON text, which the chain hashes. */
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

/** The columns of an audit row in table order; verify, export and archives all use this order. */
export const AUDIT_COLUMNS = ['seq', 'ts', 'action', 'actor', 'source_ip', 'key_id', 'details', 'prev_hash', 'hash', 'mac'] as const;

/** An audit row as a tuple in AUDIT_COLUMNS order: what verify walks (no object per row). */
export type AuditTuple = [number, string, string, string, string | null, string | null, string, string, string, string | null];

/** Filters of `dsk audit query` and GET /dsk/audit; all optional, combined with AND. */
export interface AuditFilter {
  /** ts >= since (epoch ms) */
  since?: number | null;
  /** ts < until (epoch ms) */
  until?: number | null;
  /** any of these actions */
  actions?: string[];
  actor?: string;
  keyId?: string;
  /** source address inside this block (IPv4-mapped IPv6 addresses match IPv4 blocks) */
  ip?: Cidr;
  /** default 100 */
  limit?: number;
}

export interface AuditStats {
  since: string;
  total: number;
  by_action: { action: string; count: number }[];
  by_day: { day: string; count: number }[];
}

/** A key as inserted; the store sets status 'active', use_count 0, updated_at = created_at. */
/** A key as issued: the row's fixed fields; state, usage and lifecycle columns start empty. */
export type NewKey = Pick<KeyRow, 'id' | 'name' | 'owner' | 'role' | 'key_hash' | 'salt' | 'secret_sealed' | 'created_at' | 'expires_at' | 'rotate_every_ms' | 'max_uses' | 'replaces' | 'options'>;

export interface KeyFilter {
  status?: KeyStatus[];
  role?: string;
  owner?: string;
  name?: string;
  limit?: number;
}

export type KeyRef = { id: string; name: string };
/** What planning needs to tell why a key is due (see domain/key.ts dueTrigger). */
export type DueKey = KeyRef & { status: KeyStatus; use_count: number; max_uses: number | null };
export type KeyUse = KeyRef & { expires_at: number | null; use_count: number; max_uses: number | null };

export interface KeyReads {
  get(id: string): Promise<KeyRow | undefined>;
  /** Ordered by created_at, then id. */
  list(filter?: KeyFilter): Promise<KeyRow[]>;
  /** Every key, in no particular order (the gateway's index). */
  all(): Promise<KeyRow[]>;
  countByStatus(): Promise<Partial<Record<KeyStatus, number>>>;
  /** Active and grace keys with this role. */
  countLive(role: string): Promise<number>;
  /** id and sealed signing secret of every key (re-sealing under a new master key). */
  sealedSecrets(): Promise<Pick<KeyRow, 'id' | 'secret_sealed'>[]>;
  /** Active or grace keys whose expires_at <= now. Ordered by created_at, id (as every plan list). */
  expiredBy(now: number): Promise<KeyRef[]>;
  /** Grace keys whose grace_until <= now and that have not expired. */
  graceEndedBy(now: number): Promise<KeyRef[]>;
  /**
   * Keys to rotate at `now`, none of which has a successor yet: active, unexpired keys past their
   * rotate_every_ms or at max_uses; and revoked keys with options.reissue_pending = 1.
   */
  rotationDue(now: number): Promise<DueKey[]>;
  /** Active keys with now < expires_at <= until, ordered by expires_at, id. */
  expiringWithin(now: number, until: number): Promise<KeyUse[]>;
  /** Active keys with fraction × max_uses <= use_count < max_uses, ordered by id. */
  nearUseLimit(fraction: number): Promise<KeyUse[]>;
  /**
   * A value that differs after another Store (another process or connection) committed a change
   * to keys: the gateway polls it and reloads its index only then. Compare with `!==`.
   */
  version(): Promise<number>;
}

export interface KeyWrites extends KeyReads {
  insert(k: NewKey): Promise<void>;
  /** status revoked now, no grace; `reissue` marks options.reissue_pending = 1 (emergency). */
  revoke(id: string, o: { now: number; reason: string | null; reissue: boolean }): Promise<void>;
  /** Active or grace → expired, if still so and expires_at <= now. Returns whether it changed. */
  expire(id: string, now: number): Promise<boolean>;
  /** Grace → retired, if still so and grace_until <= now. Returns whether it changed. */
  retire(id: string, now: number): Promise<boolean>;
  /** A rotated key: status grace until `graceUntil`, replaced_by the successor. */
  startGrace(id: string, o: { successor: string; graceUntil: number; now: number }): Promise<void>;
  /** An emergency-revoked key got its successor: replaced_by set, reissue_pending removed. */
  reissued(id: string, o: { successor: string; now: number }): Promise<void>;
  reseal(id: string, secretSealed: Buffer): Promise<void>;
  /** Replaces the options JSON text of a key (gateway options: models, quotas, limits). */
  setOptions(id: string, options: string, now: number): Promise<void>;
}

export type { KeyUsageTotal, UsageReads, UsageReportRow, UsageRow, UsageWrites } from './usage.js';
export interface OperatorReads {
  get(name: string): Promise<OperatorRow | undefined>;
  /** Ordered by name. */
  list(): Promise<OperatorRow[]>;
  /** Operators with this role who confirmed a second factor. */
  countEnrolled(role: string): Promise<number>;
}

export interface OperatorWrites extends OperatorReads {
  insert(r: Pick<OperatorRow, 'name' | 'role' | 'totp_sealed' | 'created_at' | 'created_by'>): Promise<void>;
  /** Removes the operator and its failure records. */
  remove(name: string): Promise<void>;
  /** Records an accepted code: its time step, and forgets recent failures. */
  acceptCode(name: string, step: number): Promise<void>;
  /** Records a failed code at `at`, forgets failures at or before `forgetThrough`; returns how many remain. */
  recordFailure(name: string, at: number, forgetThrough: number): Promise<number>;
  /** Locks until `until` and forgets failures. */
  lock(name: string, until: number): Promise<void>;
  confirmEnrolment(name: string, at: number): Promise<void>;
  /** A new sealed secret, pending; clears the replay guard, the lock and failures. */
  resetSecret(name: string, totpSealed: Buffer): Promise<void>;
}

export interface AuditReads {
  /** The newest row's seq and hash (null when the log is empty). */
  last(): Promise<{ seq: number; hash: string } | null>;
  /**
   * The head the store recorded in the same transaction as its newest insert (engines shared by
   * several nodes, which have no single local HEAD file): a chain that ends before it was cut.
   */
  recordedHead?(): Promise<{ seq: number; hash: string } | null>;
  /** The highest seq of a row that has a MAC (null when none has): where a keyed writer starts checking the tail. */
  lastKeyedSeq(): Promise<number | null>;
  /** Lowest and highest seq (cheap: no count). */
  bounds(): Promise<{ first: number | null; last: number | null }>;
  /** How many rows (may read the whole table). */
  count(): Promise<number>;
  hashAt(seq: number): Promise<string | null>;
  /** prev_hash of the first row with lo < seq <= hi. */
  firstPrevHash(lo: number, hi: number): Promise<string | null>;
  /** Lowest seq whose ts >= the given ISO time. */
  firstSeqAtOrAfter(ts: string): Promise<number | null>;
  /** Whether any row has this action. */
  hasAction(action: string): Promise<boolean>;
  /** seq and details of rows with this action, oldest first (archive checkpoints). */
  withAction(action: string): Promise<Pick<AuditRow, 'seq' | 'details'>[]>;
  /** seq, hash and mac of every row that has a MAC (re-keying after a master replacement). */
  macs(): Promise<{ seq: number; hash: string; mac: string }[]>;
  /**
   * Rows lo < seq <= hi in seq order, as tuples, in chunks of `size`. Each chunk is a separate read,
   * so writers can commit between chunks (a reader of millions of rows must not stall them).
   */
  chunks(lo?: number, hi?: number, size?: number): AsyncIterable<AuditTuple[]>;
  /** Filtered rows, newest first (ts, then seq). */
  query(f: AuditFilter): Promise<AuditRow[]>;
  /** Filtered rows (since/until/actions/actor/keyId/ip), oldest first by seq, in chunks. */
  exportChunks(f: AuditFilter, size?: number): AsyncIterable<AuditRow[]>;
  /** The newest n rows, newest first. */
  newest(n: number): Promise<AuditRow[]>;
  /** Rows after seq, oldest first. */
  after(seq: number, limit?: number): Promise<AuditRow[]>;
  /** Counts by action and by UTC day since the ISO time. */
  stats(sinceIso: string): Promise<AuditStats>;
}

export interface AuditWrites extends AuditReads {
  /** Appends one row; the caller linked it to last() in this same transaction. */
  insert(r: AuditRow): Promise<void>;
  /** Deletes rows with seq <= through (archiving). */
  deleteThrough(through: number): Promise<void>;
  setMac(seq: number, mac: string): Promise<void>;
}

/** A rotated key's successor that has not reached its callers yet (see app/rotation.ts, delivery). */
export interface PendingDelivery {
  key_id: string;
  old_key_id: string;
  name: string;
  trigger: string;
  /** when the rotation committed (epoch ms) */
  created_at: number;
  attempts: number;
  last_error: string | null;
}

export interface DeliveryReads {
  /** Successors not yet delivered whose key is still active or in grace, oldest rotation first. */
  pending(): Promise<PendingDelivery[]>;
}

export interface DeliveryWrites extends DeliveryReads {
  /** Records a new successor as undelivered, in the rotation's own transaction. */
  add(d: { key_id: string; old_key_id: string; trigger: string; created_at: number }): Promise<void>;
  /** Marks it delivered (no-op for an id that is not pending). */
  delivered(keyId: string, at: number): Promise<void>;
  /** Counts a failed attempt and keeps it pending. */
  failed(keyId: string, error: string, at: number): Promise<void>;
}

/** A place a key was first seen used from (the gateway's source labels; see gateway/anomaly.ts). */
export interface KeySourceRow {
  key_id: string;
  kind: 'site' | 'country' | 'asn';
  value: string;
  /** epoch ms */
  first_seen: number;
}

export interface KeySourceReads {
  /** Every learned row, by key then first sighting. */
  all(): Promise<KeySourceRow[]>;
}

export interface KeySourceWrites extends KeySourceReads {
  /** Adds the rows not yet present (a row already there is left unchanged). */
  learn(rows: KeySourceRow[]): Promise<void>;
}

export interface MasterStateReads {
  /** The key check value of the current master key as recorded at its last replacement (null: never replaced). */
  keyCheckValue(): Promise<string | null>;
}

export interface MasterStateWrites extends MasterStateReads {
  recordReplacement(keyCheckValue: string, at: number): Promise<void>;
}

/**
 * Nonces of signed requests, shared by every gateway on the store, so a request replayed to another
 * replica is refused there too. A nonce is remembered until its timestamp could no longer pass the
 * skew check. Writes autocommit, outside any transaction; they are a cache of what was seen, not
 * state to back up (the SQLite engine keeps them in nonces.db beside keys.db).
 */
export interface NonceClaims {
  /** Records (keyId, nonce) until expiresAt; false when it is already recorded and unexpired (a replay). */
  claim(keyId: string, nonce: string, expiresAt: number, now: number): Promise<boolean>;
}

/** Reads outside a transaction. */
export interface StoreReads {
  readonly keys: KeyReads;
  readonly operators: OperatorReads;
  readonly events: AuditReads;
  readonly masterState: MasterStateReads;
  readonly deliveries: DeliveryReads;
  readonly keySources: KeySourceReads;
  readonly usage: UsageReads;
}

/** Everything one transaction may read and write; valid only until its fn returns. */
export interface StoreTx {
  /**
   * A store shared by several nodes keeps the home's policy and role matrix (JSON: { policy, roles })
   * so a change on one node holds on all; engines of one home directory have none (dsk.json is it).
   */
  setSharedConfig?(json: string): Promise<void>;
  readonly keys: KeyWrites;
  readonly operators: OperatorWrites;
  readonly events: AuditWrites;
  readonly usage: UsageWrites;
  readonly masterState: MasterStateWrites;
  readonly deliveries: DeliveryWrites;
  readonly keySources: KeySourceWrites;
}

export interface Store extends StoreReads {
  /** 'sqlite' or 'postgres'. */
  readonly engine: string;
  readonly readonly: boolean;
  /** The schema version the store is at (see migrations.ts). */
  readonly schemaVersion: number;
  readonly nonces: NonceClaims;
  /**
   * Calls `onChange` soon after any node commits a change to keys (not usage counts), where the
   * engine can push it (PostgreSQL LISTEN/NOTIFY). Optional: callers poll keys.version() anyway,
   * as the fallback and on engines without it (SQLite). Resolves with the unsubscribe.
   */
  watchKeys?(onChange: () => void): Promise<() => Promise<void>>;
  transaction<T>(fn: (tx: StoreTx) => Promise<T>): Promise<T>;
  /**
   * How long a statement waits for another writer's lock before failing with ERR_STORE_BUSY
   * (SQLite busy_timeout). Returns the previous value.
   */
  setLockTimeout(ms: number): Promise<number>;
  /**
   * A store shared by several hosts has its own run lock (PostgreSQL: a session advisory lock), which
   * every node contends for and which ends with its holder's session. Null when it is held (after
   * waiting, with `wait`). Engines of one host (SQLite) have none: the home's lock file serves.
   */
  runLock?(o?: { wait?: boolean; timeoutMs?: number }): Promise<{ release(): Promise<void> } | null>;
  /** The policy and role matrix a shared store keeps (see StoreTx.setSharedConfig); absent on SQLite. */
  sharedConfig?(): Promise<string>;
  close(): Promise<void>;
}

export interface OpenStoreOptions {
  readonly?: boolean;
  /** create the databases (a new home) */
  create?: boolean;
  /** default: DSK_BUSY_TIMEOUT_MS or 10 s */
  lockTimeoutMs?: number;
  /**
   * With `create` on a shared store (PostgreSQL): the identity the new store records, what a
   * joining node compares (the master key's check value) and shares (policy and roles as JSON).
   */
  identity?: { keyCheckValue: string; sharedConfig: string; now: number };
}
