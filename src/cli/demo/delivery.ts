/** Demo step: successors that have not reached their callers are tracked and delivered by the next rotate --due. */
import { rotateDue, undelivered } from '../../app/rotation.js';
import type { DemoStep } from './context.js';

export const deliveryStep: DemoStep = {
  title: 'Rotated keys not yet delivered are tracked; the next rotate --due delivers them (at least once)',
  command: 'dsk status; dsk rotate --due --exec /usr/local/bin/deliver-key',
  async run(d) {
    const before = await undelivered(d.h);
    d.say(`   undelivered: ${before.map((u) => `${u.key_id} (${u.name}, replaces ${u.old_key_id})`).join(', ') || 'none'}`);
    const hooked: string[] = [];
    // The hook here only records what it got; a real one writes a Secret or calls a vault.
    const r = await rotateDue(d.h, { onIssued: (k) => (hooked.push(k.id), { ok: true }) });
    d.say(`   delivered ${hooked.join(', ') || 'nothing'}; undelivered now: ${r.undelivered?.length ?? 0}`);
    d.summary.delivery = { pending_before: before.length, delivered: hooked, pending_after: r.undelivered?.length ?? 0 };
  },
};
