/** Demo step: the first admin enrols (code computed here, as the phone app would), then a refusal. */
import { addOperator, checkOperator, confirmEnrolment } from '../../app/operators.js';
import { policyMatrix } from '../../app/policy.js';
import { PERMISSIONS } from '../../domain/roles.js';
import { secretFromUri, totpCode } from '../../domain/totp.js';
import { table } from '../render.js';
import { indent, type DemoStep } from './context.js';

export const operatorsStep: DemoStep = {
  title: 'Operators: roles for the people running dsk, and a TOTP code for sensitive commands',
  command: (d) => `dsk operator add ${d.ctx.env.actor} --role admin`,
  async run(d) {
    const { h, c } = d;
    const admin = await addOperator(h, h.env.actor, 'admin');
    const code = totpCode(secretFromUri(admin.otpauth_uri!), h.env.clock.now());
    await confirmEnrolment(h, h.env.actor, code);
    d.say(`   ${h.env.actor} enrolled: the app scans ${admin.otpauth_uri!.replace(/secret=[A-Z2-7]+/, 'secret=…')} and shows ${code}; checks are now on`);
    await addOperator(h, 'dana', 'developer');
    d.say(c.dim('   $ dsk operator add dana --role developer --otp …   (dsk policy show:)'));
    d.say(indent(table(d.ctx, ['role', ...PERMISSIONS], policyMatrix(h.config).map((r) => [r.role, ...PERMISSIONS.map((p) => (r.permissions[p] ? c.green('✓') : c.red('✗')))]))));
    d.say(c.dim('   $ dsk --actor dana keygen --name x --role developer'));
    try {
      await checkOperator(h, 'dana', { permission: 'key.manage' });
      d.say(`   ${c.red('unexpectedly allowed')}`);
    } catch (e) {
      d.say(`   refused (exit ${(e as { exitCode?: number }).exitCode}): ${(e as Error).message}`);
    }
    d.summary.operators = { admin: h.env.actor, refused: 'dana keygen (key.manage)' };
  },
};
