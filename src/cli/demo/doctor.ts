/** Demo step: `dsk doctor` on the demo home, healthy, then with a file others can read. */
import fs from 'node:fs';
import path from 'node:path';
import { DOCTOR_DEFAULTS, runDoctor } from '../../app/doctor.js';
import type { DemoStep } from './context.js';

export const doctorStep: DemoStep = {
  title: 'Doctor: is this home healthy? (no unseal, nothing written)',
  command: 'dsk doctor',
  async run(d) {
    const opts = { ...DOCTOR_DEFAULTS, now: d.h.env.clock.now() };
    const ok = await runDoctor(d.home, opts);
    const counts = (s: string) => ok.checks.filter((c) => c.status === s).length;
    d.say(`   ${ok.healthy ? d.c.green('healthy') : d.c.red('unhealthy')}: ${counts('ok')} checks ok, ${counts('warn')} warning(s), ${counts('skip')} skipped`);
    // The damage ssh would refuse too: a database readable by others.
    const db = path.join(d.home, 'keys.db');
    fs.chmodSync(db, 0o644);
    let bad;
    try {
      bad = await runDoctor(d.home, opts);
    } finally {
      fs.chmodSync(db, 0o600);
    }
    const failed = bad.checks.find((c) => c.status === 'fail');
    d.say(`   after chmod 644 keys.db: ${d.c.red(`✗ ${failed?.name}`)} (exit 5), fix: ${failed?.fix}`);
    d.summary.doctor = { healthy: ok.healthy, checks: ok.checks.length, damaged: { failure: bad.failure, check: failed?.name, fix: failed?.fix } };
  },
};
