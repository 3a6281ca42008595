/** `dsk demo`: the whole lifecycle runs in seconds on SQLite and each step reports what it showed. */
import { describe, expect, it } from 'vitest';
import { dsk, json } from './helpers.js';

describe('dsk demo', () => {
  it('runs every step and reports it in --json', () => {
    const r = dsk(['demo', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout);
    expect(s.init).toMatchObject({ backend: 'software', threshold: 3, shares: 5 });
    expect(s.keys_issued).toHaveLength(3);
    expect(s.gateway).toMatchObject({ accepted: 200, refused: 401, refused_code: 'key_revoked', traversal: 400 });
    expect(s.monitoring).toMatchObject({ anomaly: { reason: 'NEW_SITE', site: 'dc-west', known: ['dc-east'] }, alert: { alert: 'BruteForce', state: 'firing' } });
    expect(s.usage).toMatchObject({ model_refused: 403, refused_code: 'model_not_allowed', requests: 5, requests_left: 9995 }); // with the gateway and monitoring steps' requests
    expect(s.usage.tokens).toBeGreaterThan(0);
    expect(s.replicas).toEqual({ first: 200, replay: 401, replay_message: 'nonce already used' });
    expect(s.rotation.manual[0]).toMatchObject({ action: 'rotate', trigger: 'MANUAL' });
    expect(s.rotation.emergency.map((a: { action: string }) => a.action)).toEqual(['revoke', 'rotate']);
    expect(s.audit_verify.ok).toBe(true);
    expect(s.audit_verify.tampered_copy).toMatchObject({ kind: 'edited' });
    expect(s.operators.refused).toContain('key.manage');
    expect(s.backup).toMatchObject({ restored_same_head: true, files: expect.arrayContaining(['keys.db', 'audit_log/audit.db', 'audit_log/HEAD', 'key_fragments/frag1.enc']) });
    expect(s.status.keys).toMatchObject({ active: 2, grace: 1, revoked: 2 });
    expect(s.doctor).toMatchObject({ healthy: true, damaged: { failure: 'damage', check: 'file_modes' } });
    expect(s.doctor.damaged.fix).toMatch(/^chmod -R go-rwx /);
    // nothing secret in what a script would log
    expect(r.stdout).not.toMatch(/dsk_[0-9a-f]{12}_[0-9a-f]{64}|dss_[A-Za-z0-9_-]{20}/);
  });

  it('prints numbered steps with the equivalent command lines for a person', () => {
    const r = dsk(['demo']);
    expect(r.code, r.stderr).toBe(0);
    const titles = r.stdout.split('\n').filter((l) => /^\d+\. /.test(l));
    expect(titles.length).toBeGreaterThanOrEqual(15);
    expect(titles.map((t) => Number(t.split('.')[0]))).toEqual(titles.map((_, i) => i + 1));
    expect(r.stdout).toContain('$ dsk rotate --emergency');
    expect(r.stdout).toContain('done; the demo home was removed');
  });
});
