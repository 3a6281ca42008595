/**
 * Key rotation (the seed's section 3.2): manual, scheduled (every 90 days), threshold (100,000
 * calls) and emergency, with a grace period for the old key (48 hours) except in an emergency.
 *
 * Crash safety. A successor's material is derived outside any transaction (PBKDF2 at 100,000
 * iterations, ~30 ms of one core each, run concurrently on the libuv pool). Then one transaction per
 * batch, for each key, re-checks that the old key is still active and has no successor, inserts the
 * successor, moves the old key to grace and appends the KEY_ROTATION row. A process killed at
 * any instant therefore leaves each key either untouched or fully rotated with its audit row, and
 * the re-check makes the next run finish the job without rotating anything twice. Material derived
 * for a key whose transaction never ran is simply dropped: it was never stored.
 *
 * Emergency rotation revokes every target first, in one transaction (a leaked key must stop working
 * now, not after thousands of derivations), marking each revoked key `reissue_pending`; successors
 * are then issued like any rotation. A crash in between leaves revoked keys still marked, and the
 * next `rotate --due` (or emergency run) issues their successors.
 *
 * Every function here takes the Home (clock, random source, master key) it is given: nothing reads
 * the wall clock, so schedules, grace and expiry are tested with a fixed clock.
 */
import { ConflictError, UsageError } from '../kernel/errors.js';
import { getKey, insertKey, issuedView, prepareKeyMaterial, resolveSpec, type IssuedKey, type KeyMaterial, type KeyRow, type KeySpec } from './keys.js';
import { assertRole } from '../domain/config.js';
import { policyMs } from '../domain/policy.js';
import { iso } from '../kernel/clock.js';
import type { Home } from './home.js';

export type Trigger = 'MANUAL' | 'SCHEDULED' | 'THRESHOLD' | 'EMERGENCY';

/** How many derivations run at once: enough to keep every pool thread busy, bounded for memory. */
export const DERIVE_BATCH = 64;
/** A threshold warning starts at this fraction of max_uses. */
export const THRESHOLD_WARN_FRACTION = 0.9;

export type Action =
  | { action: 'rotate'; trigger: Trigger; old_key_id: string; new_key_id: string; name: string; grace_until: string | null }
  | { action: 'revoke'; trigger: 'EMERGENCY'; key_id: string; name: string; reissue: boolean }
  | { action: 'retire'; key_id: string; name: string }
  | { action: 'expire'; key_id: string; name: string }
  | { action: 'skip'; key_id: string; reason: string };

export interface Warning {
  key_id: string;
  name: string;
  kind: 'EXPIRES_SOON' | 'THRESHOLD_NEAR';
  at: string | null;
  use_count: number;
  max_uses: number | null;
}

export interface DuePlan {
  now: string;
  rotate: { id: string; name: string; trigger: 'SCHEDULED' | 'THRESHOLD' | 'EMERGENCY' }[];
  retire: { id: string; name: string }[];
  expire: { id: string; name: string }[];
  warnings: Warning[];
}

export interface RotationReport {
  now: string;
  dry_run: boolean;
  actions: Action[];
  warnings: Warning[];
  /** Keys issued in this run, with their secrets; the CLI delivers them and never logs them. */
  issued: IssuedKey[];
  /** Set when the master key was replaced. */
  master?: { old_key_check_value: string; new_key_check_value: string; threshold: number; shares: number; fragments: string[] };
}

/** Called once per successor after its transaction commits (deliver to --out-dir, --exec …). */
export type OnIssued = (k: IssuedKey, oldId: string) => void | Promise<void>;

function options(row: KeyRow): Record<string, unknown> {
  try {
    const o = JSON.parse(row.options) as Record<string, unknown>;
    return o && typeof o === 'object' ? o : {};
  } catch {
    return {};
  }
}

/** The successor inherits name, role, owner and policy; its lifetime is the old key's lifetime. */
export function successorSpec(row: KeyRow): KeySpec {
  const { reissue_pending: _p, ...rest } = options(row);
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

/** What `rotate --due` would do at `now`. Reads only. */
export function planDue(home: Home): DuePlan {
  const now = home.env.clock.now();
  const warnWithin = policyMs(home.config.policy).warnWithinMs;
  const db = home.db;
  type Row = { id: string; name: string };
  const expire = db
    .prepare(`SELECT id, name FROM keys WHERE status IN ('active','grace') AND expires_at IS NOT NULL AND expires_at <= ? ORDER BY created_at, id`)
    .all(now) as Row[];
  const retire = db
    .prepare(
      `SELECT id, name FROM keys WHERE status = 'grace' AND grace_until IS NOT NULL AND grace_until <= ?
         AND NOT (expires_at IS NOT NULL AND expires_at <= ?) ORDER BY created_at, id`,
    )
    .all(now, now) as Row[];
  const rotate = db
    .prepare(
      `SELECT id, name, CASE WHEN status = 'revoked' THEN 'EMERGENCY'
                             WHEN max_uses IS NOT NULL AND use_count >= max_uses THEN 'THRESHOLD'
                             ELSE 'SCHEDULED' END AS trigger
         FROM keys
        WHERE replaced_by IS NULL AND (
              (status = 'active' AND NOT (expires_at IS NOT NULL AND expires_at <= ?)
                 AND ((rotate_every_ms IS NOT NULL AND created_at + rotate_every_ms <= ?) OR (max_uses IS NOT NULL AND use_count >= max_uses)))
           OR (status = 'revoked' AND json_extract(options, '$.reissue_pending') = 1))
        ORDER BY created_at, id`,
    )
    .all(now, now) as DuePlan['rotate'];
  const warnings: Warning[] = [];
  const soon = db
    .prepare(`SELECT id, name, expires_at, use_count, max_uses FROM keys WHERE status = 'active' AND expires_at > ? AND expires_at <= ? ORDER BY expires_at, id`)
    .all(now, now + warnWithin) as { id: string; name: string; expires_at: number; use_count: number; max_uses: number | null }[];
  for (const r of soon) warnings.push({ key_id: r.id, name: r.name, kind: 'EXPIRES_SOON', at: iso(r.expires_at), use_count: r.use_count, max_uses: r.max_uses });
  const near = db
    .prepare(`SELECT id, name, use_count, max_uses FROM keys WHERE status = 'active' AND max_uses IS NOT NULL AND use_count < max_uses AND use_count >= ? * max_uses ORDER BY id`)
    .all(THRESHOLD_WARN_FRACTION) as { id: string; name: string; use_count: number; max_uses: number }[];
  for (const r of near) warnings.push({ key_id: r.id, name: r.name, kind: 'THRESHOLD_NEAR', at: null, use_count: r.use_count, max_uses: r.max_uses });
  return { now: iso(now)!, rotate, retire, expire, warnings };
}

/** Grace keys whose grace has ended → retired; active or grace keys past expiry → expired. One transaction. */
function retireAndExpire(home: Home, plan: DuePlan): Action[] {
  const now = home.env.clock.now();
  return home.tx(() => {
    const out: Action[] = [];
    const expire = home.db.prepare(`UPDATE keys SET status = 'expired', grace_until = NULL, updated_at = ? WHERE id = ? AND status IN ('active','grace') AND expires_at <= ?`);
    for (const k of plan.expire) {
      if (expire.run(now, k.id, now).changes !== 1) continue;
      home.audit({ action: 'KEY_EXPIRE', key_id: k.id, details: { key_id: k.id, name: k.name } });
      out.push({ action: 'expire', key_id: k.id, name: k.name });
    }
    const retire = home.db.prepare(`UPDATE keys SET status = 'retired', retired_at = ?, updated_at = ? WHERE id = ? AND status = 'grace' AND grace_until <= ?`);
    for (const k of plan.retire) {
      if (retire.run(now, now, k.id, now).changes !== 1) continue;
      home.audit({ action: 'KEY_RETIRE', key_id: k.id, details: { key_id: k.id, name: k.name } });
      out.push({ action: 'retire', key_id: k.id, name: k.name });
    }
    return out;
  });
}

/**
 * Derives successors for `items` in batches and commits each in its own transaction.
 * `graceMs` null means the old key was already revoked (emergency) and only gets its successor.
 */
export async function issueSuccessors(home: Home, items: { id: string; trigger: Trigger }[], graceMs: number, onIssued?: OnIssued): Promise<{ actions: Action[]; issued: IssuedKey[] }> {
  const { master, sealKey } = home.requireUnsealed();
  const actions: Action[] = [];
  const issued: IssuedKey[] = [];
  const derive = (batch: unknown[]) => Promise.all(batch.map(() => prepareKeyMaterial(master, sealKey, home.env.random)));
  let next = derive(items.slice(0, DERIVE_BATCH));
  for (let i = 0; i < items.length; i += DERIVE_BATCH) {
    const batch = items.slice(i, i + DERIVE_BATCH);
    const material = await next;
    // Derive the next batch on the pool threads while this one commits on the main thread.
    next = derive(items.slice(i + DERIVE_BATCH, i + 2 * DERIVE_BATCH));
    next.catch(() => {}); // if this batch's commit throws, the pending one must not crash the process
    // One commit per batch: each fsync-ed commit costs tens of milliseconds (rollback journal,
    // synchronous=FULL, two files), more than a derivation. The batch is all-or-nothing, so
    // every key in it is still either untouched or fully rotated with its audit row.
    const done = home.tx(() => batch.map((b, j) => commitRotation(home, b.id, b.trigger, material[j], graceMs)));
    for (let j = 0; j < done.length; j++) {
      actions.push(done[j].action);
      if (done[j].issued) {
        issued.push(done[j].issued!);
        await onIssued?.(done[j].issued!, batch[j].id);
      }
    }
  }
  return { actions, issued };
}

/** Rotates one key; call inside home.tx(). Re-checks state, so a rerun never rotates twice. */
function commitRotation(home: Home, oldId: string, trigger: Trigger, m: KeyMaterial, graceMs: number): { action: Action; issued?: IssuedKey } {
  const now = home.env.clock.now();
  const old = getKey(home, oldId);
  const pendingReissue = old.status === 'revoked' && options(old).reissue_pending === 1;
  if (old.replaced_by || !(old.status === 'active' || pendingReissue))
    return { action: { action: 'skip', key_id: oldId, reason: old.replaced_by ? `already replaced by ${old.replaced_by}` : `key is ${old.status}` } as Action };
  const spec = resolveSpec(home, successorSpec(old));
  const row = insertKey(home, m, spec, now);
  let graceUntil: number | null = null;
  if (pendingReissue) {
    home.db.prepare(`UPDATE keys SET replaced_by = ?, options = json_remove(options, '$.reissue_pending'), updated_at = ? WHERE id = ?`).run(row.id, now, oldId);
  } else {
    graceUntil = now + graceMs;
    home.db.prepare(`UPDATE keys SET status = 'grace', grace_until = ?, replaced_by = ?, updated_at = ? WHERE id = ?`).run(graceUntil, row.id, now, oldId);
  }
  const t = pendingReissue ? 'EMERGENCY' : trigger;
  home.audit({ action: 'KEY_ROTATION', key_id: oldId, details: { old_key_id: oldId, new_key_id: row.id, trigger: t, name: row.name, grace_until: iso(graceUntil) } });
  return { action: { action: 'rotate', trigger: t, old_key_id: oldId, new_key_id: row.id, name: row.name, grace_until: iso(graceUntil) }, issued: issuedView(row, m) };
}

function graceFor(home: Home, graceMs: number | undefined): number {
  if (graceMs !== undefined && (!Number.isFinite(graceMs) || graceMs < 0)) throw new UsageError('ERR_GRACE', 'a grace period must not be negative');
  return graceMs ?? policyMs(home.config.policy).graceMs;
}

/** dsk rotate --due: retire, expire, rotate what is due (and finish pending emergency reissues). */
export async function rotateDue(home: Home, opts: { dryRun?: boolean; graceMs?: number; onIssued?: OnIssued } = {}): Promise<RotationReport> {
  const graceMs = graceFor(home, opts.graceMs);
  const plan = planDue(home);
  if (opts.dryRun) {
    const actions: Action[] = [
      ...plan.expire.map((k) => ({ action: 'expire' as const, key_id: k.id, name: k.name })),
      ...plan.retire.map((k) => ({ action: 'retire' as const, key_id: k.id, name: k.name })),
      ...plan.rotate.map((k) => ({ action: 'rotate' as const, trigger: k.trigger, old_key_id: k.id, new_key_id: '(new)', name: k.name, grace_until: k.trigger === 'EMERGENCY' ? null : iso(home.env.clock.now() + graceMs) })),
    ];
    return { now: plan.now, dry_run: true, actions, warnings: plan.warnings, issued: [] };
  }
  const actions = retireAndExpire(home, plan);
  const r = await issueSuccessors(home, plan.rotate, graceMs, opts.onIssued);
  return { now: plan.now, dry_run: false, actions: [...actions, ...r.actions.filter((a) => a.action !== 'skip')], warnings: plan.warnings, issued: r.issued };
}

/** dsk rotate ID: one active key, now. */
export async function rotateKey(home: Home, id: string, opts: { graceMs?: number; onIssued?: OnIssued } = {}): Promise<RotationReport> {
  const graceMs = graceFor(home, opts.graceMs);
  assertRotatable(getKey(home, id));
  const now = home.env.clock.now();
  const r = await issueSuccessors(home, [{ id, trigger: 'MANUAL' }], graceMs, opts.onIssued);
  const a = r.actions[0];
  if (a.action === 'skip') throw new ConflictError('ERR_KEY_STATE', `key ${id} cannot be rotated: ${a.reason}`, { hint: 'another run rotated it first; dsk keys show it' });
  return { now: iso(now)!, dry_run: false, actions: r.actions, warnings: [], issued: r.issued };
}

export function assertRotatable(row: KeyRow): void {
  if (row.status === 'active' && !row.replaced_by) return;
  const why = row.replaced_by ? `it was already rotated (successor ${row.replaced_by})` : `it is ${row.status}`;
  throw new ConflictError('ERR_KEY_STATE', `key ${row.id} cannot be rotated: ${why}`, { hint: row.replaced_by ? `rotate the successor instead: dsk rotate ${row.replaced_by}` : 'only active keys can be rotated; issue a new one with dsk keygen' });
}

export interface EmergencyTarget {
  all?: boolean;
  ids?: string[];
  role?: string;
  owner?: string;
}

/** Which keys an emergency targets: every active or grace key matching the selector. */
/** Exactly one selector; checked before any I/O. */
export function checkEmergencyTarget(t: EmergencyTarget): void {
  const chosen = [t.all, t.ids?.length, t.role, t.owner].filter(Boolean).length;
  if (chosen === 0) throw new UsageError('ERR_EMERGENCY_TARGET_MISSING', 'an emergency rotation needs a target: all keys, key ids, a role or an owner');
  if (chosen > 1) throw new UsageError('ERR_EMERGENCY_TARGET_MANY', 'an emergency rotation takes one target: all keys, key ids, a role or an owner');
}

export function emergencyTargets(home: Home, t: EmergencyTarget): KeyRow[] {
  checkEmergencyTarget(t);
  if (t.ids?.length) {
    const rows = [...new Set(t.ids)].map((id) => getKey(home, id));
    for (const r of rows)
      if (r.status !== 'active' && r.status !== 'grace') throw new ConflictError('ERR_KEY_STATE', `key ${r.id} is already ${r.status}`, { hint: 'an emergency rotation revokes active keys and keys in grace' });
    return rows;
  }
  if (t.role) assertRole(home.config, t.role);
  const where = t.role ? ' AND role = ?' : t.owner ? ' AND owner = ?' : '';
  const args = t.role ? [t.role] : t.owner ? [t.owner] : [];
  return home.db.prepare(`SELECT * FROM keys WHERE status IN ('active','grace')${where} ORDER BY created_at, id`).all(...args) as KeyRow[];
}

/**
 * dsk rotate --emergency: revoke every target at once (one transaction, no grace), then issue
 * successors for the active ones unless `reissue` is false. A key in grace already has an active
 * successor, so it is only revoked (the successor is revoked too when it is itself a target).
 */
export async function rotateEmergency(home: Home, t: EmergencyTarget, opts: { reissue?: boolean; reason?: string | null; onIssued?: OnIssued } = {}): Promise<RotationReport> {
  const reissue = opts.reissue !== false;
  const now = home.env.clock.now();
  const targets = emergencyTargets(home, t);
  const revoked = revokeForEmergency(home, targets.map((r) => r.id), reissue, opts.reason ?? null);
  const pending = planDue(home).rotate.filter((k) => k.trigger === 'EMERGENCY');
  const r = reissue ? await issueSuccessors(home, pending.map((k) => ({ id: k.id, trigger: 'EMERGENCY' as const })), 0, opts.onIssued) : { actions: [], issued: [] };
  return { now: iso(now)!, dry_run: false, actions: [...revoked, ...r.actions.filter((a) => a.action !== 'skip')], warnings: [], issued: r.issued };
}

/** Revokes keys in one transaction; active ones are marked for reissue. Also used by master replacement. */
export function revokeForEmergency(home: Home, ids: string[], reissue: boolean, reason: string | null): Action[] {
  const now = home.env.clock.now();
  return home.tx(() => {
    const out: Action[] = [];
    for (const id of ids) {
      const row = getKey(home, id);
      if (row.status !== 'active' && row.status !== 'grace') continue;
      const mark = reissue && row.status === 'active' && !row.replaced_by;
      home.db
        .prepare(
          `UPDATE keys SET status = 'revoked', revoked_at = ?, revoke_reason = ?, grace_until = NULL, updated_at = ?,
             options = CASE WHEN ? THEN json_set(options, '$.reissue_pending', 1) ELSE options END WHERE id = ?`,
        )
        .run(now, reason, now, mark ? 1 : 0, id);
      home.audit({ action: 'KEY_REVOKE', key_id: id, details: { key_id: id, name: row.name, reason, trigger: 'EMERGENCY', previous_status: row.status, reissue: mark } });
      out.push({ action: 'revoke', trigger: 'EMERGENCY', key_id: id, name: row.name, reissue: mark });
    }
    return out;
  });
}

/** Lineage: from any key, follow `replaces` back to the first and `replaced_by` to the current end. */
export function lineage(home: Home, id: string): KeyRow[] {
  let first = getKey(home, id);
  const seen = new Set<string>([first.id]);
  while (first.replaces && !seen.has(first.replaces)) {
    first = getKey(home, first.replaces);
    seen.add(first.id);
  }
  const chain = [first];
  while (chain[chain.length - 1].replaced_by && chain.length <= seen.size + 10_000) chain.push(getKey(home, chain[chain.length - 1].replaced_by!));
  return chain;
}
