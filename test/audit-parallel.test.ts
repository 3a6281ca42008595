/** The parallel verify (worker threads over seq ranges) must agree with the sequential walk. */
import crypto from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { requireTool, tmpDir } from './helpers.js';
import { sqlite } from './audit-helpers.js';
import { openStore } from '../src/store/open.js';
import { appendAudit } from '../src/audit/writer.js';
import type { StoreTx } from '../src/store/store.js';
import { verifyChain, verifyChainParallel } from '../src/audit/verify.js';
import { publishHead, readHead } from '../src/audit/head.js';

describe.skipIf(!requireTool('sqlite3', 'the parallel verify test'))('parallel verify', () => {
  it('agrees with the sequential walk on a good chain, an unkeyed tail, and each kind of damage', async () => {
    const key = crypto.randomBytes(32);
    const home = path.join(tmpDir(), 'h');
    const store = await openStore(home, { create: true });
    const clock = { now: () => Date.UTC(2026, 0, 1) };
    await store.transaction(async (tx: StoreTx) => {
      for (let i = 0; i < 3000; i++) await appendAudit(tx, { action: 'TEST_EVENT', actor: 'a', details: { i } }, clock, key);
      for (let i = 0; i < 3; i++) await appendAudit(tx, { action: 'UNSEAL_FAILURE', actor: 'a', details: { i } }, clock, null);
    });
    await publishHead(store, home, key, clock.now());
    const both = async (k: Buffer | null) => {
      const seq = await verifyChain(store, readHead(home), k);
      const par = await verifyChainParallel(home, store, readHead(home), k, 3, 0);
      expect(par).toEqual(seq);
      return par;
    };
    expect(await both(key)).toMatchObject({ ok: true, rows: 3003, authenticated_through: 3000, unauthenticated: { from: 3001, to: 3003 } });
    expect(await both(null)).toMatchObject({ ok: true, rows: 3003, macs_checked: false });
    const file = path.join(home, 'audit_log', 'audit.db');
    sqlite(file, "UPDATE events SET details = '{}' WHERE seq = 1500");
    expect(await both(key)).toMatchObject({ ok: false, breach: { seq: 1500, kind: 'edited' } });
    sqlite(file, 'DELETE FROM events WHERE seq = 1500');
    expect(await both(null)).toMatchObject({ ok: false, breach: { seq: 1500, kind: 'deleted' } });
    await store.close();
  });
});
