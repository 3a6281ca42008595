/** dsk status: backend, sealed or not, key counts by state, rotations due, audit head, operators. */
import fs from 'node:fs';
import path from 'node:path';
import { redactedStore } from '../store/open.js';
import type { Home } from './home.js';
import { countByStatus } from './keys.js';
import { planDue, undelivered } from './rotation.js';
import { auditHead } from '../audit/query.js';
import { readHead } from '../audit/head.js';
import { readMetadata } from '../master/fragments.js';
import { homePath } from '../kernel/home-layout.js';
import { operatorSummary } from './operators.js';

export async function homeStatus(h: Home) {
  let fragments: { threshold: number; shares: number; kdf: string } | null = null;
  try {
    const m = readMetadata(homePath(h.dir, 'fragments'));
    fragments = { threshold: m.threshold, shares: m.shares, kdf: m.kdf.name };
  } catch {
    fragments = null;
  }
  let hsm: { module: string; token_label: string; key_label: string; key_id: string; origin: string; recovery: unknown } | null = null;
  if (h.config.backend === 'pkcs11') {
    try {
      const f = JSON.parse(fs.readFileSync(homePath(h.dir, 'hsm'), 'utf8'));
      hsm = { module: f.module, token_label: f.token_label, key_label: f.key_label, key_id: f.key_id, origin: f.origin, recovery: f.recovery ?? null };
    } catch {
      hsm = null;
    }
  }
  const due = await planDue(h);
  const head = await auditHead(h.store);
  return {
    home: path.resolve(h.dir),
    home_id: h.config.home_id,
    backend: h.config.backend,
    /** 'sqlite' (the home's own files) or the PostgreSQL address, without a password */
    store: h.config.store?.url ? redactedStore(h.config.store.url) : 'sqlite',
    sealed: true,
    fragments,
    hsm,
    keys: await countByStatus(h),
    rotations_due: due.rotate.length,
    rotation_warnings: due.warnings.length,
    undelivered: await undelivered(h),
    audit: { rows: head.count, head_seq: head.seq, head_hash: head.hash, head_file: headFile(h.dir) },
    operators: await operatorSummary(h),
  };
}

/** audit_log/HEAD as recorded outside the database (dsk audit verify compares the two). */
function headFile(dir: string): { seq: number; hash: string; keyed: boolean } | null {
  const r = readHead(dir);
  return r.state === 'ok' ? { seq: r.head.seq, hash: r.head.hash, keyed: r.head.mac !== null } : null;
}
