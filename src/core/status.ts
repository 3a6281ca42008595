import path from 'node:path';
import type { Home } from './home.js';
import { countByStatus } from './keys.js';
import { auditHead } from '../audit/log.js';
import { readMetadata } from '../master/fragments.js';
import { homePath } from './config.js';
import { operatorSummary } from './operators.js';

export function homeStatus(h: Home) {
  const now = h.env.clock.now();
  let fragments: { threshold: number; shares: number; kdf: string } | null = null;
  try {
    const m = readMetadata(homePath(h.dir, 'fragments'));
    fragments = { threshold: m.threshold, shares: m.shares, kdf: m.kdf.name };
  } catch {
    fragments = null;
  }
  const due = h.db
    .prepare(
      `SELECT count(*) AS n FROM keys WHERE status = 'active' AND (
         (rotate_every_ms IS NOT NULL AND created_at + rotate_every_ms <= ?) OR (max_uses IS NOT NULL AND use_count >= max_uses))`,
    )
    .get(now) as { n: number };
  const head = auditHead(h.db);
  return {
    home: path.resolve(h.dir),
    home_id: h.config.home_id,
    backend: h.config.backend,
    sealed: true,
    fragments,
    keys: countByStatus(h),
    rotations_due: due.n,
    audit: { rows: head.count, head_seq: head.seq, head_hash: head.hash },
    operators: operatorSummary(h),
  };
}
