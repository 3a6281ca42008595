/**
 * An API key's record and the rules about it that need no I/O: its states, whether a presented
 * key text is usable now, which state changes are allowed, what a caller may see of it, and what a
 * successor inherits. The store persists rows of this shape; src/app decides when to change them.
 *
 * States: active → grace (rotated, still accepted until grace_until) → retired; revoked (at once,
 * no grace); expired (past expires_at). A key revoked in an emergency carries
 * `options.reissue_pending` until its successor is issued.
 */
import { constantTimeEqual, open, sha256Hex } from '../kernel/crypto.js';
import { IntegrityError, ConflictError } from '../kernel/errors.js';
import { iso } from '../kernel/clock.js';
import { parseApiKey } from './key-text.js';

export type KeyStatus = 'active' | 'grace' | 'retired' | 'revoked' | 'expired';
export const KEY_STATUSES: KeyStatus[] = ['active', 'grace', 'retired', 'revoked', 'expired'];

export interface KeyRow {
  id: string;
  name: string;
  owner: string | null;
  role: string;
  status: KeyStatus;
  key_hash: string;
  salt: string;
  secret_sealed: Buffer;
  created_at: number;
  expires_at: number | null;
  rotate_every_ms: number | null;
  max_uses: number | null;
  use_count: number;
  last_used_at: number | null;
  replaces: string | null;
  replaced_by: string | null;
  grace_until: number | null;
  revoked_at: number | null;
  revoke_reason: string | null;
  retired_at: number | null;
  updated_at: number;
  /** JSON object: gateway options (require_signature, allowed_cidrs, rate_limit) and reissue_pending */
  options: string;
}

/** What a new key is asked to be; unset fields take the home's policy. */
export interface KeySpec {
  name: string;
  role: string;
  owner?: string | null;
  expiresInMs?: number | null;
  rotateEveryMs?: number | null;
  maxUses?: number | null;
  replaces?: string | null;
  options?: Record<string, unknown>;
}

export type VerifyResult =
  | { ok: true; key: KeyRow }
  | { ok: false; code: 'MALFORMED' | 'BAD_CHECKSUM' | 'NOT_FOUND' | 'REVOKED' | 'RETIRED' | 'EXPIRED' };

/**
 * Checks a presented key text against a row: checksum first (no lookup), then constant-time hash
 * comparison, then state and time. The gateway uses its in-memory index; this is the reference.
 */
export function verifyKeyText(text: string, lookup: (id: string) => KeyRow | undefined, now: number): VerifyResult {
  const p = parseApiKey(text);
  if (!p.ok) return { ok: false, code: p.reason };
  const row = lookup(p.id);
  if (!row || !constantTimeEqual(sha256Hex(text), row.key_hash)) return { ok: false, code: 'NOT_FOUND' };
  return checkUsable(row, now);
}

export function checkUsable(row: KeyRow, now: number): VerifyResult {
  if (row.status === 'revoked') return { ok: false, code: 'REVOKED' };
  if (row.status === 'retired' || (row.status === 'grace' && row.grace_until != null && now >= row.grace_until)) return { ok: false, code: 'RETIRED' };
  if (row.status === 'expired' || (row.expires_at != null && now >= row.expires_at)) return { ok: false, code: 'EXPIRED' };
  return { ok: true, key: row };
}

/** The public view of a key: never the key or the secret. */
export function keyView(r: KeyRow) {
  return {
    id: r.id,
    name: r.name,
    owner: r.owner,
    role: r.role,
    status: r.status,
    created_at: iso(r.created_at),
    expires_at: iso(r.expires_at),
    rotate_every_ms: r.rotate_every_ms,
    max_uses: r.max_uses,
    use_count: r.use_count,
    last_used_at: iso(r.last_used_at),
    replaces: r.replaces,
    replaced_by: r.replaced_by,
    grace_until: iso(r.grace_until),
    revoked_at: iso(r.revoked_at),
    revoke_reason: r.revoke_reason,
    retired_at: iso(r.retired_at),
    /** gateway options as stored (require_signature, allowed_cidrs, rate_limit, …), when the key has any */
    options: publicOptions(r),
  };
}

function publicOptions(r: KeyRow): Record<string, unknown> | undefined {
  if (r.options === '{}') return undefined;
  const o = Object.fromEntries(Object.entries(keyOptions(r)).filter(([k]) => k !== 'reissue_pending'));
  return Object.keys(o).length ? o : undefined;
}
export type KeyView = ReturnType<typeof keyView>;

/** Associated data binding a sealed signing secret to its key id (it cannot be moved to another row). */
export function secretAad(id: string): Buffer {
  return Buffer.from(`dsk-secret/1\0${id}`);
}

export function openSigningSecret(sealKey: Buffer, row: Pick<KeyRow, 'id' | 'secret_sealed'>): string {
  const s = open(sealKey, row.secret_sealed, secretAad(row.id));
  if (!s) throw new IntegrityError('ERR_SECRET_SEAL', `the signing secret of key ${row.id} does not open: the store was altered or belongs to another master key`);
  return s.toString();
}

/** The options object of a row; an unparsable one reads as empty (the gateway then applies defaults). */
export function keyOptions(row: Pick<KeyRow, 'options'>): Record<string, unknown> {
  if (row.options === '{}') return {}; // most keys: no parse in the listing of thousands
  try {
    const o = JSON.parse(row.options) as Record<string, unknown>;
    return o && typeof o === 'object' && !Array.isArray(o) ? o : {};
  } catch {
    return {};
  }
}

/** A key revoked in an emergency whose successor is still to be issued. */
export function pendingReissue(row: KeyRow): boolean {
  return row.status === 'revoked' && keyOptions(row).reissue_pending === 1;
}

/** Refuses (exit 6) to revoke a key that is already out of use. */
export function assertRevocable(row: KeyRow): void {
  if (row.status === 'revoked' || row.status === 'retired' || row.status === 'expired')
    throw new ConflictError('ERR_KEY_STATE', `key ${row.id} is already ${row.status}`, { hint: 'only active keys and keys in grace can be revoked' });
}

export function assertRotatable(row: KeyRow): void {
  if (row.status === 'active' && !row.replaced_by) return;
  const why = row.replaced_by ? `it was already rotated (successor ${row.replaced_by})` : `it is ${row.status}`;
  throw new ConflictError('ERR_KEY_STATE', `key ${row.id} cannot be rotated: ${why}`, { hint: row.replaced_by ? `rotate the successor instead: dsk rotate ${row.replaced_by}` : 'only active keys can be rotated; issue a new one with dsk keygen' });
}

export function assertExportable(row: KeyRow): void {
  if (row.status !== 'active' && row.status !== 'grace')
    throw new ConflictError('ERR_KEY_STATE', `key ${row.id} is ${row.status}; only active keys and keys in grace can be exported`, { hint: row.replaced_by ? `export its successor: dsk export k8s ${row.replaced_by}` : undefined });
}

/** The successor inherits name, role, owner and policy; its lifetime is the old key's lifetime. */
export function successorSpec(row: KeyRow): KeySpec {
  const { reissue_pending: _p, ...rest } = keyOptions(row);
  return {
    name: row.name,
    role: row.role,
    owner: row.owner,
    expiresInMs: row.expires_at == null ? null : Math.max(1000, row.expires_at - row.created_at),
    rotateEveryMs: row.rotate_every_ms,
    maxUses: row.max_uses,
    replaces: row.id,
    options: rest,
  };
}

export type RotationTrigger = 'MANUAL' | 'SCHEDULED' | 'THRESHOLD' | 'EMERGENCY';

/** Why a key the store reports as due is due: an emergency reissue, its use count, or its age. */
export function dueTrigger(r: { status: KeyStatus; use_count: number; max_uses: number | null }): 'SCHEDULED' | 'THRESHOLD' | 'EMERGENCY' {
  if (r.status === 'revoked') return 'EMERGENCY';
  if (r.max_uses != null && r.use_count >= r.max_uses) return 'THRESHOLD';
  return 'SCHEDULED';
}
