/**
 * Over 300 lines: the four triggers share one plan-and-commit path, kept in one file so they cannot drift apart.
 *
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
 * Delivery. Each successor is recorded as undelivered in the rotation's own transaction
 * (store: deliveries), and marked delivered only after its hook (--exec, --out-dir) succeeded. A
 * run killed between the commit and a delivery therefore leaves the successor pending, and the
 * next `rotate --due` delivers it: at least once, so a hook may see the same key twice and must
 * tolerate it (DSK_KEY_ID tells it which key it got). `dsk status` and `rotate --due --dry-run`
 * list what is pending; `dsk export` of a pending successor also counts as its delivery.
 *
 * Every function here takes the Home (clock, random source, master key) it is given: nothing reads
 * the wall clock, so schedules, grace and expiry are tested with a fixed clock.
 */
import { ConflictError, UsageError } from '../kernel/errors.js';
import { findKey, getKey, insertKey, issuedView, prepareKeyMaterial, recoverKeyText, resolveSpec, type IssuedKey, type KeyMaterial } from './keys.js';
import { assertRotatable, dueTrigger, openSigningSecret, pendingReissue, successorSpec, type KeyRow, type RotationTrigger } from '../domain/key.js';
import { assertRole } from '../domain/config.js';
import { policyMs } from '../domain/policy.js';
import { iso } from '../kernel/clock.js';
import { noProgress, type Progress } from '../kernel/progress.js';
import type { Home, Tx } from './home.js';

export type Trigger = RotationTrigger;
export { assertRotatable, successorSpec };

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

/** A successor that has not reached its callers yet. */
export interface Undelivered {
  key_id: string;
  old_key_id: string;
  name: string;
  trigger: string;
  rotated_at: string;
  attempts: number;
  last_error: string | null;
}

export interface RotationReport {
  now: string;
  dry_run: boolean;
  actions: Action[];
  warnings: Warning[];
  /** successors still waiting for delivery after this run (what a rerun with --exec/--out-dir delivers) */
  undelivered?: Undelivered[];
  /** Keys issued in this run, with their secrets; the CLI delivers them and never logs them. */
  issued: IssuedKey[];
  /** Set when the master key was replaced. */
  master?: { old_key_check_value: string; new_key_check_value: string; threshold: number; shares: number; fragments: string[] };
}

/** What a delivery reports: reached its callers, or failed (kept pending, retried by the next run). */
export type DeliveryOutcome = { ok: true } | { ok: false; error: string };

/**
 * Called once per successor after its transaction commits (deliver to --out-dir, --exec …), and
 * for each pending successor on a later `rotate --due`. Returning nothing records no outcome.
 */
export type OnIssued = (k: IssuedKey, oldId: string) => DeliveryOutcome | void | Promise<DeliveryOutcome | void>;

/** What `rotate --due` would do at `now`. Reads only. */
export async function planDue(home: Home): Promise<DuePlan> {
  const now = home.env.clock.now();
  const warnWithin = policyMs(home.config.policy).warnWithinMs;
  const keys = home.store.keys;
  const expire = await keys.expiredBy(now);
  const retire = await keys.graceEndedBy(now);
  const rotate = (await keys.rotationDue(now)).map((k) => ({ id: k.id, name: k.name, trigger: dueTrigger(k) }));
  const warnings: Warning[] = [];
  for (const r of await keys.expiringWithin(now, now + warnWithin)) warnings.push({ key_id: r.id, name: r.name, kind: 'EXPIRES_SOON', at: iso(r.expires_at), use_count: r.use_count, max_uses: r.max_uses });
  for (const r of await keys.nearUseLimit(THRESHOLD_WARN_FRACTION)) warnings.push({ key_id: r.id, name: r.name, kind: 'THRESHOLD_NEAR', at: null, use_count: r.use_count, max_uses: r.max_uses });
  return { now: iso(now)!, rotate, retire, expire, warnings };
}

/** Grace keys whose grace has ended → retired; active or grace keys past expiry → expired. One transaction. */
function retireAndExpire(home: Home, plan: DuePlan): Promise<Action[]> {
  const now = home.env.clock.now();
  return home.tx(async (t) => {
    const out: Action[] = [];
    for (const k of plan.expire) {
      if (!(await t.keys.expire(k.id, now))) continue;
      await t.audit({ action: 'KEY_EXPIRE', key_id: k.id, details: { key_id: k.id, name: k.name } });
      out.push({ action: 'expire', key_id: k.id, name: k.name });
    }
    for (const k of plan.retire) {
      if (!(await t.keys.retire(k.id, now))) continue;
      await t.audit({ action: 'KEY_RETIRE', key_id: k.id, details: { key_id: k.id, name: k.name } });
      out.push({ action: 'retire', key_id: k.id, name: k.name });
    }
    return out;
  });
}

/**
 * Derives successors for `items` in batches and commits each in its own transaction.
 * `graceMs` null means the old key was already revoked (emergency) and only gets its successor.
 */
export async function issueSuccessors(home: Home, items: { id: string; trigger: Trigger }[], graceMs: number, onIssued?: OnIssued, progress: Progress = noProgress): Promise<{ actions: Action[]; issued: IssuedKey[] }> {
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
    const done = await home.tx(async (t) => {
      const out: { action: Action; issued?: IssuedKey }[] = [];
      for (let j = 0; j < batch.length; j++) out.push(await commitRotation(home, t, batch[j].id, batch[j].trigger, material[j], graceMs));
      return out;
    });
    progress('rotate', i + batch.length, items.length);
    for (let j = 0; j < done.length; j++) {
      actions.push(done[j].action);
      if (done[j].issued) {
        issued.push(done[j].issued!);
        await deliver(home, onIssued, done[j].issued!, batch[j].id);
      }
    }
  }
  return { actions, issued };
}

/** Rotates one key in `t`. Re-checks state, so a rerun never rotates twice. */
async function commitRotation(home: Home, t: Tx, oldId: string, trigger: Trigger, m: KeyMaterial, graceMs: number): Promise<{ action: Action; issued?: IssuedKey }> {
  const now = home.env.clock.now();
  const old = await findKey(t.keys, oldId);
  const reissue = pendingReissue(old);
  if (old.replaced_by || !(old.status === 'active' || reissue))
    return { action: { action: 'skip', key_id: oldId, reason: old.replaced_by ? `already replaced by ${old.replaced_by}` : `key is ${old.status}` } };
  const spec = resolveSpec(home, successorSpec(old));
  const row = await insertKey(t, m, spec, now);
  let graceUntil: number | null = null;
  if (reissue) {
    await t.keys.reissued(oldId, { successor: row.id, now });
  } else {
    graceUntil = now + graceMs;
    await t.keys.startGrace(oldId, { successor: row.id, graceUntil, now });
  }
  const tr = reissue ? 'EMERGENCY' : trigger;
  await t.deliveries.add({ key_id: row.id, old_key_id: oldId, trigger: tr, created_at: now });
  await t.audit({ action: 'KEY_ROTATION', key_id: oldId, details: { old_key_id: oldId, new_key_id: row.id, trigger: tr, name: row.name, grace_until: iso(graceUntil) } });
  return { action: { action: 'rotate', trigger: tr, old_key_id: oldId, new_key_id: row.id, name: row.name, grace_until: iso(graceUntil) }, issued: issuedView(row, m) };
}

/** Runs the delivery hook and records its outcome; a hook that throws counts as a failed attempt. */
async function deliver(home: Home, onIssued: OnIssued | undefined, k: IssuedKey, oldId: string): Promise<void> {
  if (!onIssued) return;
  let out: DeliveryOutcome | void;
  try {
    out = await onIssued(k, oldId);
  } catch (e) {
    out = { ok: false, error: (e as Error).message };
  }
  if (!out) return;
  const o = out;
  const now = home.env.clock.now();
  await home.tx((t) => (o.ok ? t.deliveries.delivered(k.id, now) : t.deliveries.failed(k.id, o.error, now)));
}

/** Successors still waiting for delivery. */
export async function undelivered(home: Home): Promise<Undelivered[]> {
  return (await home.store.deliveries.pending()).map((d) => ({ key_id: d.key_id, old_key_id: d.old_key_id, name: d.name, trigger: d.trigger, rotated_at: iso(d.created_at)!, attempts: d.attempts, last_error: d.last_error }));
}

/**
 * Delivers every pending successor again (a run killed after its rotation committed, or a hook
 * that failed): the key text is re-derived and the signing secret unsealed, as `dsk export` does.
 */
async function deliverPending(home: Home, onIssued: OnIssued, skip: Set<string>): Promise<void> {
  const { sealKey } = home.requireUnsealed();
  for (const d of await home.store.deliveries.pending()) {
    if (skip.has(d.key_id)) continue;
    const row = await getKey(home, d.key_id);
    const k: IssuedKey = {
      id: row.id,
      api_key: await recoverKeyText(home, row),
      api_secret: openSigningSecret(sealKey, row),
      name: row.name,
      owner: row.owner,
      role: row.role,
      status: row.status,
      created_at: iso(row.created_at)!,
      expires_at: iso(row.expires_at),
      replaces: row.replaces,
    };
    await deliver(home, onIssued, k, d.old_key_id);
  }
}

/** Marks successors delivered once the CLI has shown them (manual rotation, --print-keys). */
export async function markDelivered(home: Home, ids: string[]): Promise<void> {
  if (!ids.length) return;
  const now = home.env.clock.now();
  await home.tx(async (t) => {
    for (const id of ids) await t.deliveries.delivered(id, now);
  });
}

function graceFor(home: Home, graceMs: number | undefined): number {
  if (graceMs !== undefined && (!Number.isFinite(graceMs) || graceMs < 0)) throw new UsageError('ERR_GRACE', 'a grace period must not be negative');
  return graceMs ?? policyMs(home.config.policy).graceMs;
}

/** dsk rotate --due: retire, expire, rotate what is due (and finish pending emergency reissues). */
export async function rotateDue(home: Home, opts: { dryRun?: boolean; graceMs?: number; onIssued?: OnIssued; progress?: Progress } = {}): Promise<RotationReport> {
  const graceMs = graceFor(home, opts.graceMs);
  const plan = await planDue(home);
  if (opts.dryRun) {
    const actions: Action[] = [
      ...plan.expire.map((k) => ({ action: 'expire' as const, key_id: k.id, name: k.name })),
      ...plan.retire.map((k) => ({ action: 'retire' as const, key_id: k.id, name: k.name })),
      ...plan.rotate.map((k) => ({ action: 'rotate' as const, trigger: k.trigger, old_key_id: k.id, new_key_id: '(new)', name: k.name, grace_until: k.trigger === 'EMERGENCY' ? null : iso(home.env.clock.now() + graceMs) })),
    ];
    return { now: plan.now, dry_run: true, actions, warnings: plan.warnings, issued: [], undelivered: await undelivered(home) };
  }
  const actions = await retireAndExpire(home, plan);
  const r = await issueSuccessors(home, plan.rotate, graceMs, opts.onIssued, opts.progress);
  if (opts.onIssued) await deliverPending(home, opts.onIssued, new Set(r.issued.map((k) => k.id)));
  return { now: plan.now, dry_run: false, actions: [...actions, ...r.actions.filter((a) => a.action !== 'skip')], warnings: plan.warnings, issued: r.issued, undelivered: await undelivered(home) };
}

/** dsk rotate ID: one active key, now. */
export async function rotateKey(home: Home, id: string, opts: { graceMs?: number; onIssued?: OnIssued } = {}): Promise<RotationReport> {
  const graceMs = graceFor(home, opts.graceMs);
  assertRotatable(await getKey(home, id));
  const now = home.env.clock.now();
  const r = await issueSuccessors(home, [{ id, trigger: 'MANUAL' }], graceMs, opts.onIssued);
  const a = r.actions[0];
  if (a.action === 'skip') throw new ConflictError('ERR_KEY_STATE', `key ${id} cannot be rotated: ${a.reason}`, { hint: 'another run rotated it first; dsk keys show it' });
  return { now: iso(now)!, dry_run: false, actions: r.actions, warnings: [], issued: r.issued };
}

export interface EmergencyTarget {
  all?: boolean;
  ids?: string[];
  role?: string;
  owner?: string;
}

/** Exactly one selector; checked before any I/O. */
export function checkEmergencyTarget(t: EmergencyTarget): void {
  const chosen = [t.all, t.ids?.length, t.role, t.owner].filter(Boolean).length;
  if (chosen === 0) throw new UsageError('ERR_EMERGENCY_TARGET_MISSING', 'an emergency rotation needs a target: all keys, key ids, a role or an owner');
  if (chosen > 1) throw new UsageError('ERR_EMERGENCY_TARGET_MANY', 'an emergency rotation takes one target: all keys, key ids, a role or an owner');
}

/** Which keys an emergency targets: every active or grace key matching the selector. */
export async function emergencyTargets(home: Home, t: EmergencyTarget): Promise<KeyRow[]> {
  checkEmergencyTarget(t);
  if (t.ids?.length) {
    const rows: KeyRow[] = [];
    for (const id of new Set(t.ids)) rows.push(await getKey(home, id));
    for (const r of rows)
      if (r.status !== 'active' && r.status !== 'grace') throw new ConflictError('ERR_KEY_STATE', `key ${r.id} is already ${r.status}`, { hint: 'an emergency rotation revokes active keys and keys in grace' });
    return rows;
  }
  if (t.role) assertRole(home.config, t.role);
  return home.store.keys.list({ status: ['active', 'grace'], role: t.role, owner: t.role ? undefined : t.owner });
}

/**
 * dsk rotate --emergency: revoke every target at once (one transaction, no grace), then issue
 * successors for the active ones unless `reissue` is false. A key in grace already has an active
 * successor, so it is only revoked (the successor is revoked too when it is itself a target).
 */
export async function rotateEmergency(home: Home, t: EmergencyTarget, opts: { reissue?: boolean; reason?: string | null; onIssued?: OnIssued } = {}): Promise<RotationReport> {
  const reissue = opts.reissue !== false;
  const now = home.env.clock.now();
  const targets = await emergencyTargets(home, t);
  const revoked = await home.tx((tx) => revokeForEmergency(tx, home.env.clock.now(), targets.map((r) => r.id), reissue, opts.reason ?? null));
  const pending = (await planDue(home)).rotate.filter((k) => k.trigger === 'EMERGENCY');
  const r = reissue ? await issueSuccessors(home, pending.map((k) => ({ id: k.id, trigger: 'EMERGENCY' as const })), 0, opts.onIssued) : { actions: [], issued: [] };
  return { now: iso(now)!, dry_run: false, actions: [...revoked, ...r.actions.filter((a) => a.action !== 'skip')], warnings: [], issued: r.issued };
}

/** Revokes keys in `t`; active ones are marked for reissue. Also used by master replacement. */
export async function revokeForEmergency(t: Tx, now: number, ids: string[], reissue: boolean, reason: string | null): Promise<Action[]> {
  const out: Action[] = [];
  for (const id of ids) {
    const row = await findKey(t.keys, id);
    if (row.status !== 'active' && row.status !== 'grace') continue;
    const mark = reissue && row.status === 'active' && !row.replaced_by;
    await t.keys.revoke(id, { now, reason, reissue: mark });
    await t.audit({ action: 'KEY_REVOKE', key_id: id, details: { key_id: id, name: row.name, reason, trigger: 'EMERGENCY', previous_status: row.status, reissue: mark } });
    out.push({ action: 'revoke', trigger: 'EMERGENCY', key_id: id, name: row.name, reissue: mark });
  }
  return out;
}

/** Lineage: from any key, follow `replaces` back to the first and `replaced_by` to the current end. */
export async function lineage(home: Home, id: string): Promise<KeyRow[]> {
  let first = await getKey(home, id);
  const seen = new Set<string>([first.id]);
  while (first.replaces && !seen.has(first.replaces)) {
    first = await getKey(home, first.replaces);
    seen.add(first.id);
  }
  const chain = [first];
  while (chain[chain.length - 1].replaced_by && chain.length <= seen.size + 10_000) chain.push(await getKey(home, chain[chain.length - 1].replaced_by!));
  return chain;
}
