/** Demo steps: a home, unsealing, issuing, listing, derivation, presenting, revoking. */
import path from 'node:path';
import { initSoftwareHome, openUnsealed } from '../../app/home.js';
import { getKey, issueKey, listKeys, recoverKeyText, revokeKey } from '../../app/keys.js';
import { generateApiKey } from '../../domain/derivation.js';
import type { UnsealInputs } from '../../master/unseal.js';
import { passphrasesFromFiles } from '../secrets.js';
import { statusColour, table } from '../render.js';
import { indent, mask, type DemoStep } from './context.js';

export const initStep: DemoStep = {
  title: 'Create a home: a 256-bit master key split 3-of-5 among custodians',
  command: (d) => `dsk init --home ${d.home} --shares 5 --threshold 3 --passphrase-file alice.pass … --passphrase-file erin.pass`,
  async run(d) {
    const init = await initSoftwareHome({ home: d.home, shares: 5, threshold: 3, passphrases: passphrasesFromFiles(d.passphraseFiles), fragmentDirs: [], kdf: 'pbkdf2' }, d.ctx.env);
    d.say(`   fragments: ${init.fragments.map((f) => path.basename(f)).join(', ')} — each AES-256-GCM sealed under its custodian's passphrase (PBKDF2, 600,000 iterations)`);
    d.say(`   key check value ${init.key_check_value}; the master key itself is on disk nowhere`);
    d.summary.init = init;
  },
};

export const unsealStep: DemoStep = {
  title: 'Unseal with any 3 custodians (here bob, dave and erin)',
  command: 'DSK_PASSPHRASE_FILES=bob.pass:dave.pass:erin.pass dsk …',
  async run(d) {
    const f = d.passphraseFiles;
    const inputs: UnsealInputs = { passphrases: async () => passphrasesFromFiles([f[1], f[3], f[4]]), pin: async () => Buffer.alloc(0) };
    d.h = await openUnsealed(d.home, d.ctx.env, inputs);
    d.say('   rebuilt and checked against the key check value');
  },
};

export const issueStep: DemoStep = {
  title: 'Issue keys, one per consumer, each with a role',
  command: 'dsk keygen --name chat-frontend --role developer --owner web-team --expires 30d',
  async run(d) {
    d.keys.chat = await issueKey(d.h, { name: 'chat-frontend', role: 'developer', owner: 'web-team', expiresInMs: 30 * 86_400_000 });
    d.keys.batch = await issueKey(d.h, { name: 'nightly-batch', role: 'automation', owner: 'data-team' });
    d.keys.audit = await issueKey(d.h, { name: 'compliance-dashboard', role: 'auditor', owner: 'security' });
    const { chat, batch, audit } = d.keys;
    d.say(`   ${chat.id} chat-frontend (developer)   api key ${mask(chat.api_key)}   signing secret ${mask(chat.api_secret)}`);
    d.say(`   ${batch.id} nightly-batch (automation)`);
    d.say(`   ${audit.id} compliance-dashboard (auditor)`);
    d.say(d.c.dim('   (keys are shown once, masked here; only their SHA-256 is stored)'));
    d.summary.keys_issued = [chat.id, batch.id, audit.id];
  },
};

export const listStep: DemoStep = {
  title: 'List keys',
  command: 'dsk keys list',
  async run(d) {
    const now = d.ctx.env.clock.now();
    const rows = (await listKeys(d.h)).map((r) => [r.id, r.name, r.role, statusColour(d.ctx, r.status), r.use_count, r.expires_at ? `${Math.round((r.expires_at - now) / 86_400_000)}d` : 'never']);
    d.say(indent(table(d.ctx, ['id', 'name', 'role', 'status', 'uses', 'expires'], rows)));
  },
};

export const deriveStep: DemoStep = {
  title: "Derivation is the seed's generate_api_key(master_key, salt), bit-for-bit",
  command: 'dsk derive --master-key-file mk.bin --salt 000102…0f',
  async run(d) {
    const demoMaster = Buffer.alloc(32, 0x42);
    const demoSalt = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
    d.say(`   master 4242…42, salt 0001…0f → ${await generateApiKey(demoMaster, demoSalt)}`);
    const rederived = await recoverKeyText(d.h, await getKey(d.h, d.keys.chat.id));
    d.say(`   re-deriving ${d.keys.chat.id} from the master key and its stored salt gives the issued key again: ${rederived === d.keys.chat.api_key ? d.c.green('yes') : d.c.red('NO')}`);
  },
};

export const presentStep: DemoStep = {
  title: 'A caller presents a key; a mistyped key fails its checksum before any lookup',
  command: 'curl -H "Authorization: Bearer dsk_…" …',
  async run(d) {
    const k = d.keys.chat.api_key;
    const typo = k.slice(0, 30) + (k[30] === 'a' ? 'b' : 'a') + k.slice(31);
    d.say(`   correct key → ${await d.present(k)}`);
    d.say(`   one character off → ${await d.present(typo)}`);
  },
};

export const revokeStep: DemoStep = {
  title: 'Revoke a key at once',
  command: (d) => `dsk keys revoke ${d.keys.batch.id} --reason "demo: suspected leak"`,
  async run(d) {
    const { batch } = d.keys;
    await revokeKey(d.h, batch.id, 'demo: suspected leak');
    d.say(`   ${batch.id} is now ${statusColour(d.ctx, (await getKey(d.h, batch.id)).status)}; presenting it → ${await d.present(batch.api_key)}`);
  },
};
