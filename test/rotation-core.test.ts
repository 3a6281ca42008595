/** Rotation core with an injected clock: schedule, threshold, grace, expiry, warnings, emergency, lineage. */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { fixedClock, systemRandom } from '../src/kernel/clock.js';
import { initSoftwareHome, openUnsealed, type Home } from '../src/app/home.js';
import { checkUsable, getKey, issueKey, listKeys, revokeKey } from '../src/app/keys.js';
import { lineage, planDue, revokeForEmergency, rotateDue, rotateEmergency, rotateKey } from '../src/app/rotation.js';
import { ConflictError, NotFoundError, UsageError } from '../src/kernel/errors.js';
import { queryAudit } from '../src/audit/query.js';
import { passphraseFiles, tmpDir } from './helpers.js';

const DAY = 86_400_000;
const HOUR = 3_600_000;
const T0 = Date.UTC(2026, 0, 1);

let template: string;
let pass: string[];
beforeAll(async () => {
  // One home built once (fragment sealing is deliberately slow) and copied for each test.
  const dir = tmpDir('dsk-rot-core-');
  pass = passphraseFiles(dir, 2);
  template = path.join(dir, 'home');
  const passphrases = pass.map((f) => ({ source: f, value: fs.readFileSync(f).subarray(0, -1) }));
  await initSoftwareHome({ home: template, shares: 2, threshold: 2, passphrases, fragmentDirs: [], kdf: 'pbkdf2' }, { clock: fixedClock(T0), random: systemRandom, actor: 'test' });
});

const open: Home[] = [];
afterEach(async () => {
  while (open.length) await open.pop()!.close();
});

async function home() {
  const dir = tmpDir('dsk-rot-core-');
  const h0 = path.join(dir, 'home');
  fs.cpSync(template, h0, { recursive: true });
  const clock = fixedClock(T0);
  const h = await openUnsealed(h0, { clock, random: systemRandom, actor: 'test' }, {
    passphrases: async () => pass.map((f) => ({ source: f, value: fs.readFileSync(f).subarray(0, -1) })),
    pin: async () => Buffer.alloc(0),
  });
  open.push(h);
  return { h, clock };
}

async function audit(h: Home, action: string) {
  const rows = await queryAudit(h.store, { actions: [action], limit: 10_000 });
  return rows.sort((a, b) => a.seq - b.seq).map((r) => ({ key_id: r.key_id, ...JSON.parse(r.details) }));
}

async function counts(h: Home) {
  return {
    keys: JSON.stringify((await h.store.keys.list()).sort((a, b) => (a.id < b.id ? -1 : 1))),
    audit: await h.store.events.count(),
  };
}

describe('rotate --due', () => {
  it('rotates on schedule, keeps the old key usable for the grace period, then retires it', async () => {
    const { h, clock } = await home();
    const k = await issueKey(h, { name: 'svc', role: 'developer', owner: 'team', rotateEveryMs: 5 * DAY, maxUses: 1000, expiresInMs: 30 * DAY });
    clock.advance(5 * DAY - 1);
    expect((await planDue(h)).rotate).toEqual([]);
    expect((await rotateDue(h)).actions).toEqual([]);
    clock.advance(1);
    expect((await planDue(h)).rotate).toEqual([{ id: k.id, name: 'svc', trigger: 'SCHEDULED' }]);
    const r = await rotateDue(h);
    expect(r.actions).toHaveLength(1);
    const a = r.actions[0];
    if (a.action !== 'rotate') throw new Error('expected a rotation');
    expect(a).toMatchObject({ trigger: 'SCHEDULED', old_key_id: k.id, grace_until: new Date(T0 + 5 * DAY + 48 * HOUR).toISOString() });
    const old = (await getKey(h, k.id));
    const succ = (await getKey(h, a.new_key_id));
    expect(old).toMatchObject({ status: 'grace', replaced_by: succ.id, grace_until: T0 + 5 * DAY + 48 * HOUR });
    // the successor inherits name, role, owner and policy, with the same lifetime
    expect(succ).toMatchObject({ status: 'active', replaces: k.id, name: 'svc', role: 'developer', owner: 'team', rotate_every_ms: 5 * DAY, max_uses: 1000, expires_at: T0 + 5 * DAY + 30 * DAY });
    expect(r.issued[0].api_key).toMatch(new RegExp(`^dsk_${succ.id}_`));
    expect((await audit(h, 'KEY_ROTATION'))).toEqual([expect.objectContaining({ key_id: k.id, old_key_id: k.id, new_key_id: succ.id, trigger: 'SCHEDULED' })]);

    // idempotent: a second run at the same instant does nothing
    const before = (await counts(h));
    expect((await rotateDue(h)).actions).toEqual([]);
    expect((await counts(h))).toEqual(before);

    // grace: the old key works until grace_until, not at it
    clock.advance(48 * HOUR - 1);
    expect(checkUsable((await getKey(h, k.id)), clock.now()).ok).toBe(true);
    expect((await rotateDue(h)).actions).toEqual([]);
    clock.advance(1);
    expect(checkUsable((await getKey(h, k.id)), clock.now())).toEqual({ ok: false, code: 'RETIRED' });
    const r2 = await rotateDue(h);
    expect(r2.actions).toEqual([{ action: 'retire', key_id: k.id, name: 'svc' }]);
    expect((await getKey(h, k.id))).toMatchObject({ status: 'retired', retired_at: clock.now() });
    expect((await audit(h, 'KEY_RETIRE')).map((x) => x.key_id)).toEqual([k.id]);
  });

  it('rotates past max-uses (THRESHOLD) and warns at 90% of it', async () => {
    const { h } = await home();
    const k = await issueKey(h, { name: 'batch', role: 'automation', maxUses: 100, rotateEveryMs: null });
    const setUses = async (n: number) => {
      const used = (await getKey(h, k.id)).use_count;
      await h.store.transaction((tx) => tx.usage.bump(k.id, n - used, T0));
    };
    await setUses(89);
    expect((await planDue(h)).warnings).toEqual([]);
    await setUses(90);
    expect((await planDue(h)).warnings).toEqual([expect.objectContaining({ key_id: k.id, kind: 'THRESHOLD_NEAR', use_count: 90, max_uses: 100 })]);
    expect((await planDue(h)).rotate).toEqual([]);
    await setUses(100);
    const r = await rotateDue(h);
    expect(r.actions).toEqual([expect.objectContaining({ action: 'rotate', trigger: 'THRESHOLD', old_key_id: k.id })]);
    expect((await getKey(h, (await getKey(h, k.id)).replaced_by!)).use_count).toBe(0);
  });

  it('expires keys past their expiry (no successor) and warns within policy.warn_within', async () => {
    const { h, clock } = await home();
    const k = await issueKey(h, { name: 'temp', role: 'developer', expiresInMs: 10 * DAY, rotateEveryMs: 5 * DAY });
    clock.advance(2 * DAY);
    expect((await planDue(h)).warnings).toEqual([]);
    clock.advance(DAY + 1); // 7 days minus 1 ms left
    expect((await planDue(h)).warnings).toEqual([expect.objectContaining({ key_id: k.id, kind: 'EXPIRES_SOON', at: new Date(T0 + 10 * DAY).toISOString() })]);
    clock.set(T0 + 10 * DAY);
    // due for rotation and expired at once: expiry wins, no successor is issued
    const r = await rotateDue(h);
    expect(r.actions).toEqual([{ action: 'expire', key_id: k.id, name: 'temp' }]);
    expect((await getKey(h, k.id)).status).toBe('expired');
    expect((await listKeys(h))).toHaveLength(1);
    expect((await audit(h, 'KEY_EXPIRE')).map((x) => x.key_id)).toEqual([k.id]);
  });

  it('--dry-run reports the plan and changes nothing', async () => {
    const { h, clock } = await home();
    await issueKey(h, { name: 'a', role: 'developer', rotateEveryMs: HOUR });
    clock.advance(HOUR);
    const before = (await counts(h));
    const r = await rotateDue(h, { dryRun: true });
    expect(r.dry_run).toBe(true);
    expect(r.actions).toEqual([expect.objectContaining({ action: 'rotate', trigger: 'SCHEDULED', new_key_id: '(new)' })]);
    expect((await counts(h))).toEqual(before);
  });

  it('rotates many keys in batches, each exactly once', async () => {
    const { h, clock } = await home();
    const ids: string[] = [];
    for (let i = 0; i < 70; i++) ids.push((await issueKey(h, { name: `k${i}`, role: 'automation', rotateEveryMs: HOUR })).id);
    clock.advance(HOUR);
    const seen: string[] = [];
    const r = await rotateDue(h, { onIssued: (k, old) => void seen.push(`${old}>${k.id}`) });
    expect(r.actions).toHaveLength(70);
    expect(seen).toHaveLength(70);
    for (const id of ids) expect((await lineage(h, id)).map((x) => x.status)).toEqual(['grace', 'active']);
    expect((await rotateDue(h)).actions).toEqual([]);
  });
});

describe('rotate ID', () => {
  it('rotates one key with a chosen grace; refuses unknown, revoked and already-rotated keys', async () => {
    const { h } = await home();
    const k = await issueKey(h, { name: 'svc', role: 'developer' });
    const r = await rotateKey(h, k.id, { graceMs: 2 * HOUR });
    expect(r.actions[0]).toMatchObject({ action: 'rotate', trigger: 'MANUAL', grace_until: new Date(T0 + 2 * HOUR).toISOString() });
    await expect(rotateKey(h, k.id)).rejects.toThrow(ConflictError);
    await expect(rotateKey(h, 'abcdefabcdef')).rejects.toThrow(NotFoundError);
    await expect(rotateKey(h, 'nope')).rejects.toThrow(UsageError);
    await expect(rotateKey(h, r.issued[0].id, { graceMs: -1 })).rejects.toThrow(UsageError);
    const other = await issueKey(h, { name: 'x', role: 'developer' });
    await revokeKey(h, other.id, null);
    const before = (await counts(h));
    await expect(rotateKey(h, other.id)).rejects.toMatchObject({ code: 'ERR_KEY_STATE', exitCode: 6 });
    expect((await counts(h))).toEqual(before);
  });

  it('keeps a lineage: every rotation links old and new, one active end', async () => {
    const { h, clock } = await home();
    const k = await issueKey(h, { name: 'svc', role: 'developer' });
    let cur = k.id;
    for (let i = 0; i < 3; i++) {
      clock.advance(HOUR);
      cur = (await rotateKey(h, cur)).issued[0].id;
    }
    const chain = (await lineage(h, cur));
    expect(chain.map((r) => r.id)[0]).toBe(k.id);
    expect(chain).toHaveLength(4);
    expect(chain.map((r) => r.status)).toEqual(['grace', 'grace', 'grace', 'active']);
    for (let i = 1; i < 4; i++) expect(chain[i].replaces).toBe(chain[i - 1].id);
    expect((await lineage(h, k.id)).map((r) => r.id)).toEqual(chain.map((r) => r.id));
  });
});

describe('rotate --emergency', () => {
  async function fleet() {
    const s = await home();
    const a = await issueKey(s.h, { name: 'a', role: 'automation', owner: 'data' });
    const b = await issueKey(s.h, { name: 'b', role: 'developer', owner: 'web' });
    const c = await issueKey(s.h, { name: 'c', role: 'automation', owner: 'web' });
    return { ...s, a, b, c };
  }

  it('by role: revokes at once with no grace and issues successors (trigger EMERGENCY)', async () => {
    const { h, clock, a, b, c } = await fleet();
    const r = await rotateEmergency(h, { role: 'automation' }, { reason: 'runner compromised' });
    for (const id of [a.id, c.id]) {
      const row = (await getKey(h, id));
      expect(row).toMatchObject({ status: 'revoked', revoked_at: clock.now(), revoke_reason: 'runner compromised', grace_until: null });
      expect(checkUsable(row, clock.now()).ok).toBe(false);
      expect((await getKey(h, row.replaced_by!))).toMatchObject({ status: 'active', replaces: id, role: 'automation' });
    }
    expect((await getKey(h, b.id)).status).toBe('active');
    expect(r.issued).toHaveLength(2);
    expect((await audit(h, 'KEY_REVOKE')).map((x) => [x.key_id, x.trigger]).sort()).toEqual([[a.id, 'EMERGENCY'], [c.id, 'EMERGENCY']].sort());
    expect((await audit(h, 'KEY_ROTATION')).map((x) => x.trigger)).toEqual(['EMERGENCY', 'EMERGENCY']);
    expect(JSON.parse((await getKey(h, a.id)).options)).toEqual({});
  });

  it('by owner, by id, and --no-reissue', async () => {
    const { h, a, b, c } = await fleet();
    await rotateEmergency(h, { owner: 'web' }, { reissue: false });
    expect(await Promise.all([b.id, c.id].map((id) => getKey(h, id)))).toEqual([expect.objectContaining({ status: 'revoked', replaced_by: null }), expect.objectContaining({ status: 'revoked', replaced_by: null })]);
    expect((await planDue(h)).rotate).toEqual([]);
    await rotateEmergency(h, { ids: [a.id] });
    expect((await getKey(h, a.id)).replaced_by).not.toBeNull();
    await expect(rotateEmergency(h, { ids: [a.id] })).rejects.toMatchObject({ exitCode: 6 });
    await expect(rotateEmergency(h, {})).rejects.toMatchObject({ exitCode: 2 });
    await expect(rotateEmergency(h, { role: 'nosuch' })).rejects.toMatchObject({ code: 'ERR_ROLE_UNKNOWN', exitCode: 4 });
  });

  it('--all revokes keys in grace too, and each original ends with exactly one active key', async () => {
    const { h, a, b, c } = await fleet();
    const rotated = (await rotateKey(h, a.id)).issued[0].id; // a in grace, rotated active
    await rotateEmergency(h, { all: true });
    expect((await getKey(h, a.id)).status).toBe('revoked');
    for (const id of [a.id, b.id, c.id]) {
      const chain = (await lineage(h, id));
      expect(chain.filter((r) => r.status === 'active')).toHaveLength(1);
      expect(chain[chain.length - 1].status).toBe('active');
    }
    expect((await getKey(h, rotated)).status).toBe('revoked');
    expect((await listKeys(h, { status: ['active'] }))).toHaveLength(3);
  });

  it('a crash after the revocation leaves successors pending; rotate --due issues them', async () => {
    const { h, a, b } = await fleet();
    await h.tx((t) => revokeForEmergency(t, h.env.clock.now(), [a.id, b.id], true, 'leak')); // as if killed before any successor committed
    expect((await planDue(h)).rotate.map((x) => [x.id, x.trigger]).sort()).toEqual([[a.id, 'EMERGENCY'], [b.id, 'EMERGENCY']].sort());
    const r = await rotateDue(h);
    expect(r.actions.map((x) => x.action === 'rotate' && x.trigger)).toEqual(['EMERGENCY', 'EMERGENCY']);
    expect((await getKey(h, a.id)).status).toBe('revoked');
    expect((await rotateDue(h)).actions).toEqual([]);
  });
});
