/** Demo step: back the live home up and restore it into a new home, verified before it is put in place. */
import path from 'node:path';
import { createBackup } from '../../app/backup.js';
import { restoreBackup } from '../../app/restore.js';
import { VERSION } from '../version.js';
import type { DemoStep } from './context.js';

export const backupStep: DemoStep = {
  title: 'Back up the live home, then restore it into a new one',
  command: 'dsk backup --out demo.tar --include-fragments; dsk restore demo.tar --home restored',
  async run(d) {
    const out = path.join(d.root, 'demo.tar');
    const b = await createBackup(d.h.dir, { out, includeFragments: true, recipients: [], producer: `dsk ${VERSION}`, now: d.h.env.clock.now() });
    d.say(`   ${d.c.green('✓')} ${path.basename(b.file)}: ${b.files.length} files, ${Math.round(b.bytes / 1024)} KiB, audit rows ${b.audit.first_seq}–${b.audit.last_seq} checked`);
    const r = await restoreBackup({ archive: out, home: path.join(d.root, 'restored'), identity: null });
    const same = r.home_id === d.h.config.home_id && r.audit.head_hash === b.audit.head_hash;
    d.say(`   ${same ? d.c.green('✓') : d.c.red('✗')} restored into ${path.basename(r.home)}/: checksums and audit chain verified, same home id and audit head`);
    d.summary.backup = { files: b.files.map((f) => f.path), audit_rows: b.audit.rows, restored_same_head: same };
  },
};
