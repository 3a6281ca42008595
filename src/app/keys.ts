/**
 * API keys: issue, look up, list, revoke. Keys are derived with the seed's function from the master
 * key and a fresh salt; only SHA-256 of the key text is stored, and the signing secret is sealed
 * under a key derived from the master key.
 */
import { AuthError, ConflictError, IntegrityError, NotFoundError, UsageError } from '../kernel/errors.js';
import { constantTimeEqual, open, seal, sha256Hex } from '../kernel/crypto.js';
import { finishSeedDerivation, SALT_BYTES, SEED_ITERATIONS } from '../domain/derivation.js';
import { formatApiKey, isKeyId, parseApiKey } from '../domain/key-text.js';
import { assertRole } from '../domain/config.js';
import { policyMs } from '../domain/policy.js';
import { iso } from '../kernel/clock.js';
import type { Home } from './home.js';
import type { MasterKey } from '../master/backend.js';
import type { RandomSource } from '../kernel/clock.js';

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
  options: string;
}

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

/** What a caller sees once, at issue or rotation. */
export interface IssuedKey {
  id: string;
  api_key: string;
  api_secret: string;
  name: string;
  owner: string | null;
  role: string;
  status: KeyStatus;
  created_at: string;
  expires_at: string | null;
  replaces: string | null;
}

/** Material for a new key, computed outside any transaction (the derivation is slow). */
export interface KeyMaterial {
  id: string;
  salt: Buffer;
  apiKey: string;
  apiSecret: string;
  keyHash: string;
  sealed: Buffer;
}

export function secretAad(id: string): Buffer {
  return Buffer.from(`dsk-secret/1\0${id}`);
}

export function newKeyId(random: RandomSource): string {
  return random(6).toString('hex');
}

export async function deriveKeySecret(master: MasterKey, salt: Buffer): Promise<string> {
  return finishSeedDerivation(await master.stretch(salt, SEED_ITERATIONS));
}

export async function prepareKeyMaterial(master: MasterKey, sealKey: Buffer, random: RandomSource): Promise<KeyMaterial> {
  const id = newKeyId(random);
  const salt = random(SALT_BYTES);
  const apiKey = formatApiKey(id, await deriveKeySecret(master, salt));
  const apiSecret = `dss_${random(32).toString('base64url')}`;
  return { id, salt, apiKey, apiSecret, keyHash: sha256Hex(apiKey), sealed: seal(sealKey, Buffer.from(apiSecret), secretAad(id)) };
}

export function openSigningSecret(sealKey: Buffer, row: Pick<KeyRow, 'id' | 'secret_sealed'>): string {
  const s = open(sealKey, row.secret_sealed, secretAad(row.id));
  if (!s) throw new IntegrityError('ERR_SECRET_SEAL', `the signing secret of key ${row.id} does not open: the store was altered or belongs to another master key`);
  return s.toString();
}

export function resolveSpec(home: Home, spec: KeySpec): Required<Omit<KeySpec, 'options'>> & { options: Record<string, unknown> } {
  if (!spec.name || spec.name.length > 128 || /[\x00-\x1f]/.test(spec.name)) throw new UsageError('ERR_KEY_NAME', 'a key name must be 1 to 128 printable characters');
  assertRole(home.config, spec.role);
  const p = policyMs(home.config.policy);
  return {
    name: spec.name,
    role: spec.role,
    owner: spec.owner ?? null,
    expiresInMs: spec.expiresInMs === undefined ? p.expiresMs : spec.expiresInMs,
    rotateEveryMs: spec.rotateEveryMs === undefined ? p.rotateEveryMs : spec.rotateEveryMs,
    maxUses: spec.maxUses === undefined ? p.maxUses : spec.maxUses,
    replaces: spec.replaces ?? null,
    options: spec.options ?? {},
  };
}

/** Inserts a prepared key; call inside home.tx(). */
export function insertKey(home: Home, m: KeyMaterial, s: ReturnType<typeof resolveSpec>, now: number): KeyRow {
  home.db
    .prepare(
      `INSERT INTO keys (id, name, owner, role, status, key_hash, salt, secret_sealed, created_at, expires_at,
        rotate_every_ms, max_uses, replaces, updated_at, options)
       VALUES (?, ?, ?, ?, 'active', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    )
    .run(m.id, s.name, s.owner, s.role, m.keyHash, m.salt.toString('hex'), m.sealed, now, s.expiresInMs == null ? null : now + s.expiresInMs, s.rotateEveryMs, s.maxUses, s.replaces, now, JSON.stringify(s.options));
  return getKey(home, m.id);
}

export function issuedView(row: KeyRow, m: KeyMaterial): IssuedKey {
  return {
    id: row.id,
    api_key: m.apiKey,
    api_secret: m.apiSecret,
    name: row.name,
    owner: row.owner,
    role: row.role,
    status: row.status,
    created_at: iso(row.created_at)!,
    expires_at: iso(row.expires_at),
    replaces: row.replaces,
  };
}

/**
 * dsk keygen. `deliver` (for example writing --out FILE) runs inside the transaction: if it throws,
 * no key is created, so a key is never stored without having reached its caller.
 */
export async function issueKey(home: Home, spec: KeySpec, opts: { deliver?: (k: IssuedKey) => void } = {}): Promise<IssuedKey> {
  const { master, sealKey } = home.requireUnsealed();
  const s = resolveSpec(home, spec);
  const m = await prepareKeyMaterial(master, sealKey, home.env.random);
  const now = home.env.clock.now();
  return home.tx(() => {
    const r = insertKey(home, m, s, now);
    home.audit({ action: 'KEY_CREATE', key_id: r.id, details: { key_id: r.id, name: r.name, role: r.role, owner: r.owner, expires_at: iso(r.expires_at) } });
    const issued = issuedView(r, m);
    opts.deliver?.(issued);
    return issued;
  });
}

export function getKey(home: Home, id: string): KeyRow {
  if (!isKeyId(id)) throw new UsageError('ERR_KEY_ID', `'${id}' is not a key id (12 hex characters, as shown by dsk keys list)`);
  const row = home.db.prepare('SELECT * FROM keys WHERE id = ?').get(id) as KeyRow | undefined;
  if (!row) throw new NotFoundError('ERR_KEY_NOT_FOUND', `no key with id ${id}`, { hint: 'dsk keys list shows the ids' });
  return row;
}

export interface ListFilter {
  status?: KeyStatus[];
  role?: string;
  owner?: string;
  name?: string;
  limit?: number;
}

export function listKeys(home: Home, f: ListFilter = {}): KeyRow[] {
  const where: string[] = [];
  const args: unknown[] = [];
  if (f.status?.length) {
    where.push(`status IN (${f.status.map(() => '?').join(',')})`);
    args.push(...f.status);
  }
  if (f.role) (where.push('role = ?'), args.push(f.role));
  if (f.owner) (where.push('owner = ?'), args.push(f.owner));
  if (f.name) (where.push('name = ?'), args.push(f.name));
  const sql = `SELECT * FROM keys ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY created_at, id ${f.limit ? 'LIMIT ' + Math.floor(f.limit) : ''}`;
  return home.db.prepare(sql).all(...args) as KeyRow[];
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
  };
}
export type KeyView = ReturnType<typeof keyView>;

export function countByStatus(home: Home): Record<KeyStatus, number> {
  const out = Object.fromEntries(KEY_STATUSES.map((s) => [s, 0])) as Record<KeyStatus, number>;
  for (const r of home.db.prepare('SELECT status, count(*) AS n FROM keys GROUP BY status').all() as { status: KeyStatus; n: number }[]) out[r.status] = r.n;
  return out;
}

/** Refuses (exit 6) to revoke a key that is already out of use. */
export function assertRevocable(row: KeyRow): void {
  if (row.status === 'revoked' || row.status === 'retired' || row.status === 'expired')
    throw new ConflictError('ERR_KEY_STATE', `key ${row.id} is already ${row.status}`, { hint: 'only active keys and keys in grace can be revoked' });
}

/** dsk keys revoke: immediate, no grace. */
export function revokeKey(home: Home, id: string, reason: string | null, trigger = 'MANUAL'): KeyRow {
  const now = home.env.clock.now();
  return home.tx(() => {
    const row = getKey(home, id);
    assertRevocable(row);
    home.db.prepare("UPDATE keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?, grace_until = NULL, updated_at = ? WHERE id = ?").run(now, reason, now, id);
    home.audit({ action: 'KEY_REVOKE', key_id: id, details: { key_id: id, name: row.name, reason, trigger, previous_status: row.status } });
    return getKey(home, id);
  });
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

/** Re-derives a key's text from the master key and its salt, and checks it against the stored hash. */
export async function recoverKeyText(home: Home, row: KeyRow): Promise<string> {
  const { master } = home.requireUnsealed();
  const text = formatApiKey(row.id, await deriveKeySecret(master, Buffer.from(row.salt, 'hex')));
  if (!constantTimeEqual(sha256Hex(text), row.key_hash))
    throw new AuthError('ERR_KEY_MISMATCH', `key ${row.id} does not re-derive from this master key: the store belongs to another master key or was altered`);
  return text;
}
