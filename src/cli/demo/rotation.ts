/** Demo steps: manual rotation with grace, emergency rotation. */
import { getKey } from '../../app/keys.js';
import { rotateEmergency, rotateKey } from '../../app/rotation.js';
import { statusColour } from '../render.js';
import type { DemoStep } from './context.js';

export const rotateStep: DemoStep = {
  title: 'Rotate a key: the successor is issued, the old key keeps working for its grace period',
  command: (d) => `dsk rotate ${d.keys.chat.id} --grace 48h`,
  async run(d) {
    const { chat } = d.keys;
    const rot = await rotateKey(d.h, chat.id, { graceMs: 48 * 3_600_000 });
    const succ = (d.keys.chatNext = rot.issued[0]);
    const graceUntil = rot.actions[0].action === 'rotate' ? rot.actions[0].grace_until : null;
    d.say(`   ${chat.id} → ${succ.id}; old key ${statusColour(d.ctx, (await getKey(d.h, chat.id)).status)} until ${graceUntil}`);
    d.say(`   old key → ${await d.present(chat.api_key)}   new key → ${await d.present(succ.api_key)}`);
    d.say(d.c.dim('   the cron job (dsk rotate --due, see dsk cron print) rotates on schedule or after max-uses and retires keys whose grace ended'));
    d.summary.rotation = { manual: rot.actions };
  },
};

export const emergencyStep: DemoStep = {
  title: 'Emergency: revoke at once, no grace, successors issued',
  command: 'dsk rotate --emergency --owner security --reason "dashboard host compromised"',
  async run(d) {
    const { audit } = d.keys;
    const em = await rotateEmergency(d.h, { owner: 'security' }, { reason: 'demo: dashboard host compromised' });
    d.keys.auditNext = em.issued[0];
    d.say(`   ${audit.id} ${statusColour(d.ctx, (await getKey(d.h, audit.id)).status)} → presenting it: ${await d.present(audit.api_key)}; successor ${em.issued[0].id} → ${await d.present(em.issued[0].api_key)}`);
    d.summary.rotation = { ...(d.summary.rotation as object), emergency: em.actions };
  },
};
