/**
 * dsk demo: the whole lifecycle in a throwaway home, non-interactive, in seconds. Each step calls
 * the same core functions the commands use and prints the equivalent command line.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import type { Command } from 'commander';
import { ctxOf, type Ctx } from '../context.js';
import { line, paint, printJson, statusColour, table } from '../render.js';
import { initSoftwareHome, openUnsealed, type Home } from '../../app/home.js';
import { issueKey, keyView, listKeys, recoverKeyText, revokeKey, verifyKeyText, getKey } from '../../app/keys.js';
import { parseApiKey } from '../../domain/key-text.js';
import { generateApiKey } from '../../domain/derivation.js';
import { homeStatus } from '../../app/status.js';
import { rotateEmergency, rotateKey } from '../../app/rotation.js';
import { lastRows } from '../../audit/query.js';
import { verifyChain } from '../../audit/verify.js';
import { readHead } from '../../audit/head.js';
import { openStore } from '../../store/open.js';
import { writePrivateFile } from '../../kernel/files.js';
import { passphrasesFromFiles } from '../secrets.js';
import type { UnsealInputs } from '../../master/unseal.js';
import { gatewayOptions, startGateway } from '../../gateway/server.js';
import { startStubUpstream } from '../../gateway/stub-upstream.js';
import { addOperator, checkOperator, confirmEnrolment } from '../../app/operators.js';
import { secretFromUri, totpCode } from '../../domain/totp.js';
import { policyMatrix } from '../../app/policy.js';
import { PERMISSIONS } from '../../domain/roles.js';

export function register(program: Command): void {
  program
    .command('demo')
    .description('run the whole key lifecycle in a throwaway home and explain each step')
    .option('--keep', 'keep the demo home and print where it is')
    .addHelpText('after', '\nExamples:\n  dsk demo\n  dsk demo --keep')
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const summary = await runDemo(ctx, !!o.keep);
      if (ctx.json) printJson(summary);
    });
}

export async function runDemo(ctx: Ctx, keep: boolean) {
  const c = paint(ctx);
  const say = (s = '') => {
    if (!ctx.json) line(s);
  };
  // Steps number themselves, so capabilities can add theirs anywhere.
  let stepNo = 0;
  const step = (_n: number, title: string, command: string) => {
    say('');
    say(`${c.bold.cyan(`${++stepNo}. ${title}`)}`);
    say(c.dim(`   $ ${command}`));
  };
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-demo-'));
  fs.chmodSync(root, 0o700);
  const home = path.join(root, 'home');
  const env = { ...ctx.env, actor: ctx.actor };
  const summary: Record<string, unknown> = { home };
  let h: Home | null = null;
  try {
    // Custodian passphrases, as five people would each keep their own.
    const files = ['alice', 'bob', 'carol', 'dave', 'erin'].map((who) => {
      const f = path.join(root, `${who}.pass`);
      writePrivateFile(f, `${who}-demo-passphrase-${env.random(6).toString('hex')}\n`);
      return f;
    });

    step(1, 'Create a home: a 256-bit master key split 3-of-5 among custodians', `dsk init --home ${home} --shares 5 --threshold 3 --passphrase-file alice.pass … --passphrase-file erin.pass`);
    const init = await initSoftwareHome({ home, shares: 5, threshold: 3, passphrases: passphrasesFromFiles(files), fragmentDirs: [], kdf: 'pbkdf2' }, env);
    say(`   fragments: ${init.fragments.map((f) => path.basename(f)).join(', ')} — each AES-256-GCM sealed under its custodian's passphrase (PBKDF2, 600,000 iterations)`);
    say(`   key check value ${init.key_check_value}; the master key itself is on disk nowhere`);
    summary.init = init;

    step(2, 'Unseal with any 3 custodians (here bob, dave and erin)', 'DSK_PASSPHRASE_FILES=bob.pass:dave.pass:erin.pass dsk …');
    const inputs: UnsealInputs = { passphrases: async () => passphrasesFromFiles([files[1], files[3], files[4]]), pin: async () => Buffer.alloc(0) };
    h = await openUnsealed(home, env, inputs);
    say(`   rebuilt and checked against the key check value`);

    step(3, 'Issue keys, one per consumer, each with a role', 'dsk keygen --name chat-frontend --role developer --owner web-team --expires 30d');
    const chat = await issueKey(h, { name: 'chat-frontend', role: 'developer', owner: 'web-team', expiresInMs: 30 * 86_400_000 });
    const batch = await issueKey(h, { name: 'nightly-batch', role: 'automation', owner: 'data-team' });
    const audit = await issueKey(h, { name: 'compliance-dashboard', role: 'auditor', owner: 'security' });
    say(`   ${chat.id} chat-frontend (developer)   api key ${mask(chat.api_key)}   signing secret ${mask(chat.api_secret)}`);
    say(`   ${batch.id} nightly-batch (automation)`);
    say(`   ${audit.id} compliance-dashboard (auditor)`);
    say(c.dim('   (keys are shown once, masked here; only their SHA-256 is stored)'));
    summary.keys_issued = [chat.id, batch.id, audit.id];

    step(4, 'List keys', 'dsk keys list');
    const now = env.clock.now();
    say(
      table(
        ctx,
        ['id', 'name', 'role', 'status', 'uses', 'expires'],
        (await listKeys(h)).map((r) => [r.id, r.name, r.role, statusColour(ctx, r.status), r.use_count, r.expires_at ? `${Math.round((r.expires_at - now) / 86_400_000)}d` : 'never']),
      ).replace(/^/gm, '   '),
    );

    step(5, "Derivation is the seed's generate_api_key(master_key, salt), bit-for-bit", 'dsk derive --master-key-file mk.bin --salt 000102…0f');
    const demoMaster = Buffer.alloc(32, 0x42);
    const demoSalt = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
    say(`   master 4242…42, salt 0001…0f → ${await generateApiKey(demoMaster, demoSalt)}`);
    const rederived = await recoverKeyText(h, await getKey(h, chat.id));
    say(`   re-deriving ${chat.id} from the master key and its stored salt gives the issued key again: ${rederived === chat.api_key ? c.green('yes') : c.red('NO')}`);

    step(6, 'A caller presents a key; a mistyped key fails its checksum before any lookup', 'curl -H "Authorization: Bearer dsk_…" …');
    // What the gateway does per request, with a store lookup in place of its in-memory index.
    const present = async (text: string) => {
      const p = parseApiKey(text);
      const row = p.ok ? await h!.store.keys.get(p.id) : undefined;
      return fmt(verifyKeyText(text, () => row, env.clock.now()));
    };
    const typo = chat.api_key.slice(0, 30) + (chat.api_key[30] === 'a' ? 'b' : 'a') + chat.api_key.slice(31);
    say(`   correct key → ${await present(chat.api_key)}`);
    say(`   one character off → ${await present(typo)}`);

    step(7, 'Revoke a key at once', `dsk keys revoke ${batch.id} --reason "demo: suspected leak"`);
    await revokeKey(h, batch.id, 'demo: suspected leak');
    say(`   ${batch.id} is now ${statusColour(ctx, (await getKey(h, batch.id)).status)}; presenting it → ${await present(batch.api_key)}`);

    step(8, 'The gateway in front of a model server: a good key passes, a revoked one is refused', `dsk serve --upstream http://127.0.0.1:11434 --listen 127.0.0.1:8080`);
    summary.gateway = await demoGateway(h, chat.api_key, batch.api_key, say);

    step(8, 'Rotate a key: the successor is issued, the old key keeps working for its grace period', `dsk rotate ${chat.id} --grace 48h`);
    const rot = await rotateKey(h, chat.id, { graceMs: 48 * 3_600_000 });
    const succ = rot.issued[0];
    const graceUntil = rot.actions[0].action === 'rotate' ? rot.actions[0].grace_until : null;
    say(`   ${chat.id} → ${succ.id}; old key ${statusColour(ctx, (await getKey(h, chat.id)).status)} until ${graceUntil}`);
    say(`   old key → ${await present(chat.api_key)}   new key → ${await present(succ.api_key)}`);
    say(c.dim('   the cron job (dsk rotate --due, see dsk cron print) rotates on schedule or after max-uses and retires keys whose grace ended'));

    step(9, 'Emergency: revoke at once, no grace, successors issued', 'dsk rotate --emergency --owner security --reason "dashboard host compromised"');
    const em = await rotateEmergency(h, { owner: 'security' }, { reason: 'demo: dashboard host compromised' });
    say(`   ${audit.id} ${statusColour(ctx, (await getKey(h, audit.id)).status)} → presenting it: ${await present(audit.api_key)}; successor ${em.issued[0].id} → ${await present(em.issued[0].api_key)}`);
    summary.rotation = { manual: rot.actions, emergency: em.actions };

    step(8, 'Verify the audit chain, then show that tampering with a copy is caught', 'dsk audit verify');
    const ok = await verifyChain(h.store, readHead(h.dir), h.auditKey);
    say(`   ${ok.ok ? c.green('✓ OK') : c.red('BROKEN')}: ${ok.rows} rows, MACs checked through seq ${ok.authenticated_through}, audit_log/HEAD ${ok.head_file?.state}`);
    const bad = await tamperedCopy(h, path.join(root, 'tampered'));
    say(c.dim(`   $ sqlite3 copy/audit.db "UPDATE events SET details = … WHERE action = 'KEY_REVOKE'"; dsk audit verify`));
    say(`   ${bad.breach ? `${c.red('✗')} exit 5: broken at seq ${bad.breach.seq} (${bad.breach.kind})` : c.red('NOT DETECTED')}`);
    summary.audit_verify = { ok: ok.ok, rows: ok.rows, tampered_copy: bad.breach };

    step(8, 'Optional: the master key inside an HSM (SoftHSM2 here)', 'dsk init --backend pkcs11 --pkcs11-module /usr/lib/softhsm/libsofthsm2.so --token-label dsk-demo');
    summary.hsm = await hsmDemo(root, env, say, c);
    step(8, 'Operators: roles for the people running dsk, and a TOTP code for sensitive commands', `dsk operator add ${env.actor} --role admin`);
    summary.operators = await demoOperators(h, ctx, say);

    step(9, 'Status', 'dsk status');
    const st = await homeStatus(h);
    say(`   backend ${st.backend} (${st.fragments?.threshold}-of-${st.fragments?.shares}), keys ${Object.entries(st.keys).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(', ')}, audit ${st.audit.rows} rows`);
    summary.status = st;

    step(10, 'The audit log: every change, hash-chained', 'dsk audit query');
    const rows = await lastRows(h.store, 20);
    say(table(ctx, ['seq', 'time', 'action', 'actor', 'details'], rows.map((r) => [r.seq, r.ts.slice(11, 19), r.action, r.actor, r.details.length > 60 ? r.details.slice(0, 57) + '…' : r.details])).replace(/^/gm, '   '));
    summary.audit_rows = rows.length;
    summary.final_keys = (await listKeys(h)).map(keyView);
    say('');
    say(keep ? `${c.green('✓')} demo home kept at ${home} (passphrase files beside it)` : `${c.green('✓')} done; the demo home was removed. Try it for real: dsk init --help`);
    return summary;
  } finally {
    await h?.close();
    if (!keep) fs.rmSync(root, { recursive: true, force: true });
  }
}

/**
 * Runs only where SoftHSM2 is installed, in a throwaway token directory; otherwise says why it
 * skipped. No keygen here: on a token each one is 100,000 in-token HMACs (seconds).
 */
async function hsmDemo(root: string, env: Home['env'], say: (s?: string) => void, c: ReturnType<typeof paint>) {
  const module = ['/usr/lib/softhsm/libsofthsm2.so', '/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so'].find((p) => fs.existsSync(p));
  const util = spawnSync('softhsm2-util', ['--version'], { encoding: 'utf8' });
  if (!module || util.status !== 0) {
    say(c.dim('   skipped: SoftHSM2 is not installed (apt-get install softhsm2); see docs/hsm.md'));
    return { skipped: 'softhsm2 not installed' };
  }
  const tokens = path.join(root, 'softhsm-tokens');
  fs.mkdirSync(tokens, { mode: 0o700 });
  const conf = path.join(root, 'softhsm2.conf');
  writePrivateFile(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const saved = process.env.SOFTHSM2_CONF;
  process.env.SOFTHSM2_CONF = conf;
  try {
    const pin = env.random(6).toString('hex');
    const t = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'dsk-demo', '--pin', pin, '--so-pin', env.random(6).toString('hex')], { encoding: 'utf8' });
    if (t.status !== 0) {
      say(c.dim(`   skipped: softhsm2-util could not create a token (${t.stderr.trim().split('\n')[0]})`));
      return { skipped: 'token init failed' };
    }
    const { initPkcs11Home } = await import('../../app/hsm.js');
    const { hsmInfo } = await import('../../master/pkcs11/backend.js');
    const r = await initPkcs11Home({ home: path.join(root, 'hsm-home'), module, tokenLabel: 'dsk-demo', pin: async () => Buffer.from(pin) }, env);
    const info = await hsmInfo({ module, tokenLabel: 'dsk-demo', keyLabel: r.key_label, pin: async () => Buffer.from(pin) });
    const a = (info.key as { attributes: Record<string, unknown> }).attributes;
    say(`   key '${r.key_label}' generated inside token 'dsk-demo' (C_GenerateKey): sensitive=${a.sensitive ? 'yes' : 'no'}, extractable=${a.extractable ? 'yes' : 'no'}, never extractable=${a.never_extractable ? 'yes' : 'no'}`);
    say(`   master_key.hsm names module, token, label and key check value ${r.key_check_value}; no secret. Every derivation is CKM_SHA256_HMAC in the token`);
    return r;
  } finally {
    if (saved === undefined) delete process.env.SOFTHSM2_CONF;
    else process.env.SOFTHSM2_CONF = saved;
  }
}

/** Starts a stub model server and the gateway in-process on free ports, makes two calls, stops both. */
async function demoGateway(h: Home, goodKey: string, revokedKey: string, say: (s?: string) => void) {
  const up = await startStubUpstream();
  const gw = await startGateway(h, { ...gatewayOptions(undefined, { upstream: up.url, listen: '127.0.0.1:0' }), drainMs: 1000 });
  try {
    const post = (key: string) =>
      fetch(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', connection: 'close' },
        body: JSON.stringify({ model: 'deepseek-chat', messages: [{ role: 'user', content: 'hello' }] }),
      });
    const ok = await post(goodKey);
    const okBody = (await ok.json()) as { choices: { message: { content: string } }[] };
    say(`   gateway ${gw.url} → stub upstream ${up.url}`);
    say(`   POST /v1/chat/completions with chat-frontend's key → ${ok.status} "${okBody.choices[0].message.content}"`);
    const bad = await post(revokedKey);
    const badBody = (await bad.json()) as { error: { code: string } };
    say(`   the same with nightly-batch's revoked key → ${bad.status} ${JSON.stringify(badBody)}`);
    return { url: gw.url, accepted: ok.status, refused: bad.status, refused_code: badBody.error.code };
  } finally {
    await gw.close();
    await up.close();
  }
}

/** Step 8: the first admin enrols (code computed here, as the phone app would), then a refusal. */
async function demoOperators(h: Home, ctx: Ctx, say: (s?: string) => void) {
  const c = paint(ctx);
  const admin = await addOperator(h, h.env.actor, 'admin');
  const code = totpCode(secretFromUri(admin.otpauth_uri!), h.env.clock.now());
  await confirmEnrolment(h, h.env.actor, code);
  say(`   ${h.env.actor} enrolled: the app scans ${admin.otpauth_uri!.replace(/secret=[A-Z2-7]+/, 'secret=…')} and shows ${code}; checks are now on`);
  await addOperator(h, 'dana', 'developer');
  say(c.dim('   $ dsk operator add dana --role developer --otp …   (dsk policy show:)'));
  say(table(ctx, ['role', ...PERMISSIONS], policyMatrix(h.config).map((r) => [r.role, ...PERMISSIONS.map((p) => (r.permissions[p] ? c.green('✓') : c.red('✗')))])).replace(/^/gm, '   '));
  say(c.dim('   $ dsk --actor dana keygen --name x --role developer'));
  try {
    await checkOperator(h, 'dana', { permission: 'key.manage' });
    say(`   ${c.red('unexpectedly allowed')}`);
  } catch (e) {
    say(`   refused (exit ${(e as { exitCode?: number }).exitCode}): ${(e as Error).message}`);
  }
  return { admin: h.env.actor, refused: 'dana keygen (key.manage)' };
}

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

function mask(s: string): string {
  return `${s.slice(0, 18)}…`;
}

function fmt(r: { ok: boolean; code?: string }): string {
  return r.ok ? 'accepted' : `refused (${r.code})`;
}
