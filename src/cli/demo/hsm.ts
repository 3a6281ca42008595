/**
 * Demo step: the master key inside an HSM. Runs only where SoftHSM2 is installed, in a throwaway
 * token directory; otherwise says why it skipped. No keygen here: on a token each one is 100,000
 * in-token HMACs (seconds).
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { writePrivateFile } from '../../kernel/files.js';
import type { DemoStep } from './context.js';

export const hsmStep: DemoStep = {
  title: 'Optional: the master key inside an HSM (SoftHSM2 here)',
  command: 'dsk init --backend pkcs11 --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label dsk-demo',
  async run(d) {
    const module = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'].find((p) => fs.existsSync(p));
    const util = spawnSync('softhsm2-util', ['--version'], { encoding: 'utf8' });
    if (!module || util.status !== 0) {
      d.say(d.c.dim('   skipped: SoftHSM2 is not installed (apt-get install softhsm2); see docs/hsm.md'));
      d.summary.hsm = { skipped: 'softhsm2 not installed' };
      return;
    }
    const env = d.ctx.env;
    const tokens = path.join(d.root, 'softhsm-tokens');
    fs.mkdirSync(tokens, { mode: 0o700 });
    const conf = path.join(d.root, 'softhsm2.conf');
    writePrivateFile(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    const saved = process.env.SOFTHSM2_CONF;
    process.env.SOFTHSM2_CONF = conf;
    try {
      const pin = env.random(6).toString('hex');
      const t = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'dsk-demo', '--pin', pin, '--so-pin', env.random(6).toString('hex')], { encoding: 'utf8' });
      if (t.status !== 0) {
        d.say(d.c.dim(`   skipped: softhsm2-util could not create a token (${t.stderr.trim().split('\n')[0]})`));
        d.summary.hsm = { skipped: 'token init failed' };
        return;
      }
      const { initPkcs11Home } = await import('../../app/hsm.js');
      const { hsmInfo } = await import('../../master/pkcs11/backend.js');
      const r = await initPkcs11Home({ home: path.join(d.root, 'hsm-home'), module, tokenLabel: 'dsk-demo', pin: async () => Buffer.from(pin) }, env);
      const info = await hsmInfo({ module, tokenLabel: 'dsk-demo', keyLabel: r.key_label, pin: async () => Buffer.from(pin) });
      const a = (info.key as { attributes: Record<string, unknown> }).attributes;
      d.say(`   key '${r.key_label}' generated inside token 'dsk-demo' (C_GenerateKey): sensitive=${a.sensitive ? 'yes' : 'no'}, extractable=${a.extractable ? 'yes' : 'no'}, never extractable=${a.never_extractable ? 'yes' : 'no'}`);
      d.say(`   master_key.hsm names module, token, label and key check value ${r.key_check_value}; no secret. Every derivation is CKM_SHA256_HMAC in the token`);
      d.summary.hsm = r;
    } finally {
      if (saved === undefined) delete process.env.SOFTHSM2_CONF;
      else process.env.SOFTHSM2_CONF = saved;
    }
  },
};
