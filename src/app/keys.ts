/**
 * API keys: issue, look up, list, revoke. Keys are derived with the seed's function from the master
 * key and a fresh salt; only SHA-256 of the key text is stored, and the signing secret is sealed
 * under a key derived from the master key. The rules about a key's states are in domain/key.ts.
 */
import { AuthError, NotFoundError, UsageError } from '../kernel/errors.js';
import { constantTimeEqual, seal, sha256Hex } from '../kernel/crypto.js';
import { finishSeedDerivation, SALT_BYTES, SEED_ITERATIONS } from '../domain/derivation.js';
import { assertKeyId, formatApiKey } from '../domain/key-text.js';
import { assertRevocable, KEY_STATUSES, secretAad, type KeyRow, type KeySpec, type KeyStatus } from '../domain/key.js';
import { assertRole } from '../domain/config.js';
import { policyMs } from '../domain/policy.js';
import { iso } from '../kernel/clock.js';
import type { KeyFilter, KeyReads } from '../store/store.js';
import type { Home, Tx } from './home.js';
import { markPendingFile, removeFileOfKey } from './leftovers.js';
import type { MasterKey } from '../master/backend.js';
import type { RandomSource } from '../kernel/clock.js';

// The gateway and the CLI read these from here as well as from domain/key.ts.
export { assertRevocable, checkUsable, keyView, KEY_STATUSES, openSigningSecret, secretAad, verifyKeyText } from '../domain/key.js';
export type { KeyRow, KeySpec, KeyStatus, KeyView, VerifyResult } from '../domain/key.js';

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

export type ResolvedSpec = Required<Omit<KeySpec, 'options'>> & { options: Record<string, unknown> };

export function resolveSpec(home: Home, spec: KeySpec): ResolvedSpec {
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

/** Inserts a prepared key in `t`. */
export async function insertKey(t: Tx, m: KeyMaterial, s: ResolvedSpec, now: number): Promise<KeyRow> {
  await t.keys.insert({
    id: m.id,
    name: s.name,
    owner: s.owner,
    role: s.role,
    key_hash: m.keyHash,
    salt: m.salt.toString('hex'),
    secret_sealed: m.sealed,
    created_at: now,
    expires_at: s.expiresInMs == null ? null : now + s.expiresInMs,
    rotate_every_ms: s.rotateEveryMs,
    max_uses: s.maxUses,
    replaces: s.replaces,
    options: JSON.stringify(s.options),
  });
  return findKey(t.keys, m.id);
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
 * no key is created, so a key is never stored without having reached its caller. `file` names the
 * file `deliver` writes: a marker records it until the commit is decided, so a run killed in
 * between has the file removed by the next one (app/leftovers.ts).
 */
export async function issueKey(home: Home, spec: KeySpec, opts: { deliver?: (k: IssuedKey) => void | Promise<void>; file?: string } = {}): Promise<IssuedKey> {
  const { master, sealKey } = home.requireUnsealed();
  const s = resolveSpec(home, spec);
  const m = await prepareKeyMaterial(master, sealKey, home.env.random);
  const now = home.env.clock.now();
  const clear = opts.file ? markPendingFile(home.dir, m.id, opts.file) : null;
  try {
    return await home.tx(async (t) => {
      const r = await insertKey(t, m, s, now);
      await t.audit({ action: 'KEY_CREATE', key_id: r.id, details: { key_id: r.id, name: r.name, role: r.role, owner: r.owner, expires_at: iso(r.expires_at) } });
      const issued = issuedView(r, m);
      await opts.deliver?.(issued);
      return issued;
    });
  } catch (e) {
    // The commit failed after the file was written: the file must not outlive its key.
    if (opts.file) removeFileOfKey(opts.file, m.id);
    throw e;
  } finally {
    clear?.();
  }
}

/** A key by id, from the store or inside a transaction (`t.keys`); a malformed id is exit 2, a missing one exit 4. */
export async function findKey(keys: KeyReads, id: string): Promise<KeyRow> {
  assertKeyId(id);
  const row = await keys.get(id);
  if (!row) throw new NotFoundError('ERR_KEY_NOT_FOUND', `no key with id ${id}`, { hint: 'dsk keys list shows the ids' });
  return row;
}

export function getKey(home: Home, id: string): Promise<KeyRow> {
  return findKey(home.store.keys, id);
}

export type ListFilter = KeyFilter;

export function listKeys(home: Home, f: ListFilter = {}): Promise<KeyRow[]> {
  return home.store.keys.list(f);
}

export async function countByStatus(home: Home): Promise<Record<KeyStatus, number>> {
  const counts = await home.store.keys.countByStatus();
  return Object.fromEntries(KEY_STATUSES.map((s) => [s, counts[s] ?? 0])) as Record<KeyStatus, number>;
}

/** dsk keys revoke: immediate, no grace. */
export async function revokeKey(home: Home, id: string, reason: string | null, trigger = 'MANUAL'): Promise<KeyRow> {
  const now = home.env.clock.now();
  return home.tx(async (t) => {
    const row = await findKey(t.keys, id);
    assertRevocable(row);
    await t.keys.revoke(id, { now, reason, reissue: false });
    await t.audit({ action: 'KEY_REVOKE', key_id: id, details: { key_id: id, name: row.name, reason, trigger, previous_status: row.status } });
    return findKey(t.keys, id);
  });
}

/** Re-derives a key's text from the master key and its salt, and checks it against the stored hash. */
export async function recoverKeyText(home: Home, row: KeyRow): Promise<string> {
  const { master } = home.requireUnsealed();
  const text = formatApiKey(row.id, await deriveKeySecret(master, Buffer.from(row.salt, 'hex')));
  if (!constantTimeEqual(sha256Hex(text), row.key_hash))
    throw new AuthError('ERR_KEY_MISMATCH', `key ${row.id} does not re-derive from this master key: the store was altered or belongs to another master key`);
  return text;
}
