/** Demo steps: verify the audit chain and catch tampering with a copy; the last audit rows. */
import fs from 'node:fs';
import path from 'node:path';
import type { Home } from '../../app/home.js';
import { readHead } from '../../audit/head.js';
import { lastRows } from '../../audit/query.js';
import { verifyChain } from '../../audit/verify.js';
import { openStore } from '../../store/open.js';
import { table } from '../render.js';
import { indent, type DemoStep } from './context.js';

export const verifyStep: DemoStep = {
  title: 'Verify the audit chain, then show that tampering with a copy is caught',
  command: 'dsk audit verify',
  async run(d) {
    const ok = await verifyChain(d.h.store, readHead(d.h.dir), d.h.auditKey);
    d.say(`   ${ok.ok ? d.c.green('✓ OK') : d.c.red('BROKEN')}: ${ok.rows} rows, MACs checked through seq ${ok.authenticated_through}, audit_log/HEAD ${ok.head_file?.state}`);
    const bad = await tamperedCopy(d.h, path.join(d.root, 'tampered'));
    d.say(d.c.dim(`   $ sqlite3 copy/audit.db "UPDATE events SET details = … WHERE action = 'KEY_REVOKE'"; dsk audit verify`));
    d.say(`   ${bad.breach ? `${d.c.red('✗')} exit 5: broken at seq ${bad.breach.seq} (${bad.breach.kind})` : d.c.red('NOT DETECTED')}`);
    d.summary.audit_verify = { ok: ok.ok, rows: ok.rows, tampered_copy: bad.breach };
  },
};

export const auditRowsStep: DemoStep = {
  title: 'The audit log: every change, hash-chained',
  command: 'dsk audit query',
  async run(d) {
    const rows = await lastRows(d.h.store, 20);
    d.say(indent(table(d.ctx, ['seq', 'time', 'action', 'actor', 'details'], rows.map((r) => [r.seq, r.ts.slice(11, 19), r.action, r.actor, r.details.length > 60 ? r.details.slice(0, 57) + '…' : r.details]))));
    d.summary.audit_rows = rows.length;
  },
};

/**
 * What someone with write access to the audit store does: copies the log and rewrites one row's
 * details (here: the reason of the revocation). The copy goes through the store's own API, row by
 * row, so the demo needs no sqlite3 tool and leaves the live home alone; verify must name the row.
 */
async function tamperedCopy(h: Home, dir: string) {
  fs.mkdirSync(path.join(dir, 'audit_log'), { recursive: true, mode: 0o700 });
  fs.copyFileSync(path.join(h.dir, 'audit_log', 'HEAD'), path.join(dir, 'audit_log', 'HEAD'));
  const copy = await openStore(dir, { create: true });
  try {
    await copy.transaction(async (tx) => {
      for await (const chunk of h.store.events.exportChunks({}))
        for (const r of chunk) await tx.events.insert(r.action === 'KEY_REVOKE' ? { ...r, details: r.details.replace('suspected leak', 'routine') } : r);
    });
    return await verifyChain(copy, readHead(dir), h.auditKey);
  } finally {
    await copy.close();
  }
}
