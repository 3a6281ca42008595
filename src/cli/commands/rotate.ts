import type { Command } from 'commander';
import { keyIdArg } from '../key-id.js';
import { ctxOf, type Ctx } from '../context.js';
import { line, paint, printJson } from '../render.js';
import { withHome, withUnsealed, type Access } from '../session.js';
import { collect, passphrasesFromFiles, withUnsealOptions } from '../secrets.js';
import { showIssued } from '../issued.js';
import { checkDelivery, deliverer, hasDelivery, type Delivered, type DeliveryFlags } from '../delivery.js';
import { assertRotatable, checkEmergencyTarget, emergencyTargets, markDelivered, rotateDue, rotateEmergency, rotateKey, type RotationReport } from '../../app/rotation.js';
import { replaceMasterKey } from '../../app/master-rotation.js';
import { getKey } from '../../app/keys.js';
import { acquireRunLock } from '../../app/run-lock.js';
import { parseDuration, parsePositiveInt } from '../../kernel/duration.js';
import { UnavailableError, UsageError } from '../../kernel/errors.js';

interface Opts extends DeliveryFlags {
  due?: boolean;
  dryRun?: boolean;
  emergency?: boolean;
  all?: boolean;
  role?: string;
  owner?: string;
  reissue?: boolean;
  reason?: string;
  master?: boolean;
  newPassphraseFile: string[];
  threshold?: string;
  grace?: string;
  out?: string;
  printKeys?: boolean;
  wait?: boolean;
  passphraseFile?: string[];
  pinFile?: string;
  fragmentDir?: string[];
}

export function register(program: Command): void {
  const cmd = program
    .command('rotate [ids...]')
    .description('rotate keys: one now (old key kept for a grace period), everything due (cron), or an emergency (revoke at once)')
    .option('--due', 'rotate every key past its rotate-every or max-uses, retire keys whose grace ended, expire keys past expiry')
    .option('--dry-run', 'with --due: show what would happen and change nothing (needs no passphrase)')
    .option('--emergency', 'revoke the targets at once, with no grace, and issue successors')
    .option('--all', 'with --emergency: every active key and key in grace')
    .option('--role <role>', 'with --emergency: every key with this role')
    .option('--owner <owner>', 'with --emergency: every key of this owner')
    .option('--no-reissue', 'with --emergency: revoke only, issue no successors')
    .option('--reason <text>', 'with --emergency: why, recorded in the audit log')
    .option('--master', 'with --emergency --all: also replace the master key (software backend); every key is revoked and reissued')
    .option('--new-passphrase-file <file>', 'with --master: a custodian passphrase file for the new fragments, once per custodian', collect, [])
    .option('--threshold <k>', 'with --master: fragments needed to unseal the new master key (default: as before)')
    .option('--grace <duration>', 'how long the old key stays valid (default from policy: 48h); 0s for none')
    .option('--out-dir <dir>', 'write each new key to DIR/<id>.json (0600)')
    .option('--exec <cmd>', 'run this shell command once per new key: key JSON on stdin, DSK_KEY_ID and DSK_OLD_KEY_ID in its environment')
    .option('--out <file>', 'with one key id: write the new key to this new file (0600) instead of stdout')
    .option('--print-keys', 'with --due or --emergency: include the new keys and secrets in the output')
    .option('--wait', 'if another run holds the lock, wait for it instead of exiting 6');
  withUnsealOptions(cmd)
    .addHelpText(
      'after',
      `
Examples:
  dsk rotate 3f9a2c7d1e8b                      # new key now; the old one works for 48h more
  dsk rotate 3f9a2c7d1e8b --grace 2h --out new.key
  dsk rotate --due --dry-run                   # what the cron job would do
  dsk rotate --due --json --out-dir /run/dsk-keys
  dsk rotate --due --exec /usr/local/bin/deliver-key   # key JSON on stdin, DSK_KEY_ID in env
  dsk rotate --emergency --role automation --reason "CI runner compromised"
  dsk rotate --emergency 3f9a2c7d1e8b --no-reissue
  dsk rotate --emergency --all --master --new-passphrase-file a.pass … --new-passphrase-file e.pass

The cron job (dsk cron print) runs: dsk rotate --due --json. It is idempotent, holds a lock on the
home (a second run exits 6, or waits with --wait), and a run killed at any point is finished by
the next one. New keys are never printed by --due or --emergency unless --print-keys is given;
deliver them with --out-dir or --exec, or later with dsk export.`,
    )
    .action(async (ids: string[], o: Opts, c: Command) => {
      const ctx = ctxOf(c);
      for (const id of ids) keyIdArg(id);
      const mode = checkFlags(ids, o);
      checkDelivery(o);
      const graceMs = o.grace === undefined ? undefined : parseDuration(o.grace, '--grace', true);
      const threshold = o.threshold === undefined ? undefined : parsePositiveInt(o.threshold, '--threshold', 255);

      // Reject unknown ids, wrong states and bad targets before taking the lock or unsealing.
      const pre = await withHome(ctx, { permission: null, readonly: true }, async (h) => {
        if (mode === 'manual') assertRotatable(await getKey(h, ids[0]));
        if (mode === 'emergency') await emergencyTargets(h, { all: o.all, ids, role: o.role, owner: o.owner });
        if (mode === 'due' && o.dryRun) return rotateDue(h, { dryRun: true, graceMs });
        return null;
      });
      if (pre) return render(ctx, pre, [], o);
      const newPassphrases = o.master ? passphrasesFromFiles(o.newPassphraseFile) : [];

      const delivered: Delivered[] = [];
      const onIssued = hasDelivery(o) ? deliverer(o, delivered) : undefined;
      const access: Access = mode === 'due' ? { permission: 'key.manage', sensitive: false, automationAllowed: true } : { permission: 'key.manage', sensitive: true };
      const lock = await acquireRunLock(ctx.home, { purpose: `rotate ${mode}`, wait: o.wait });
      let report: RotationReport;
      try {
        report = await withUnsealed(ctx, o, access, async (h) => {
          if (mode === 'manual') return rotateKey(h, ids[0], { graceMs, onIssued });
          if (mode === 'due') return rotateDue(h, { graceMs, onIssued });
          if (o.master) return replaceMasterKey(h, { passphrases: newPassphrases, threshold, reason: o.reason ?? null, onIssued });
          return rotateEmergency(h, { all: o.all, ids, role: o.role, owner: o.owner }, { reissue: o.reissue, reason: o.reason ?? null, onIssued });
        });
      } finally {
        await lock.release();
        for (const p of newPassphrases) p.value.fill(0);
      }
      // Shown (or written to --out) is delivered; killed before that, the next rotate --due has it pending.
      const shown = async (keys: string[]) => withHome(ctx, { permission: null }, (h) => markDelivered(h, keys));
      if (mode === 'manual' && !hasDelivery(o)) {
        const a = report.actions[0];
        const k = report.issued[0];
        if (ctx.json && !o.out) printJson({ ...k, old_key_id: ids[0], old_key_grace_until: a.action === 'rotate' ? a.grace_until : null });
        else {
          showIssued(ctx, k, o.out);
          if (!ctx.json && a.action === 'rotate') line(`  old key ${ids[0]} stays valid until ${a.grace_until} (grace), then is retired by dsk rotate --due`);
        }
        await shown([k.id]);
        return;
      }
      render(ctx, report, delivered, o);
      if (o.printKeys) await shown(report.issued.map((k) => k.id));
      const failed = delivered.filter((d) => d.error);
      if (failed.length)
        throw new UnavailableError('ERR_DELIVERY', `delivery failed for ${failed.length} new key(s): ${failed.map((d) => `${d.key_id} (${d.error})`).join('; ')}`, { hint: 'the keys were rotated; deliver them again with dsk export k8s|env ID' });
    });
}

type Mode = 'manual' | 'due' | 'emergency';

/** Every bad flag combination is refused before any I/O. */
function checkFlags(ids: string[], o: Opts): Mode {
  const modes = [o.due && 'due', o.emergency && 'emergency'].filter(Boolean) as Mode[];
  if (modes.length > 1) throw new UsageError('ERR_FLAGS_EXCLUSIVE', '--due and --emergency cannot be combined');
  const mode: Mode = modes[0] ?? 'manual';
  const only = (flag: string, set: unknown, allowed: Mode[]) => {
    if (set && !allowed.includes(mode)) throw new UsageError('ERR_FLAG_NOT_APPLICABLE', `${flag} only applies to ${allowed.map((m) => (m === 'manual' ? 'dsk rotate ID' : `--${m}`)).join(' or ')}`);
  };
  only('--dry-run', o.dryRun, ['due']);
  only('--all', o.all, ['emergency']);
  only('--role', o.role, ['emergency']);
  only('--owner', o.owner, ['emergency']);
  only('--no-reissue', o.reissue === false, ['emergency']);
  only('--reason', o.reason !== undefined, ['emergency']);
  only('--master', o.master, ['emergency']);
  only('--new-passphrase-file', o.newPassphraseFile.length, ['emergency']);
  only('--threshold', o.threshold !== undefined, ['emergency']);
  only('--grace', o.grace !== undefined, ['manual', 'due']);
  only('--out', o.out !== undefined, ['manual']);
  only('--print-keys', o.printKeys, ['due', 'emergency']);
  if (mode === 'manual') {
    if (ids.length === 0) throw new UsageError('ERR_ROTATE_TARGET_MISSING', 'give a key id to rotate, or --due, or --emergency', { hint: 'dsk rotate --help shows examples' });
    if (ids.length > 1) throw new UsageError('ERR_ROTATE_TARGET_MANY', 'dsk rotate takes one key id; for several at once use --emergency ID…');
    if (o.out && hasDelivery(o)) throw new UsageError('ERR_FLAGS_EXCLUSIVE', '--out cannot be combined with --out-dir or --exec');
  }
  if (mode === 'due' && ids.length) throw new UsageError('ERR_FLAG_NOT_APPLICABLE', '--due takes no key ids');
  if (mode === 'emergency') {
    if (o.master) {
      if (!o.all || ids.length || o.role || o.owner) throw new UsageError('ERR_MASTER_TARGET', '--master replaces the key every key derives from, so it needs --all and no other target');
      if (o.reissue === false) throw new UsageError('ERR_FLAGS_EXCLUSIVE', '--master reissues every key; --no-reissue cannot be combined with it');
      if (!o.newPassphraseFile.length) throw new UsageError('ERR_FLAG_MISSING', '--master needs the new custodian passphrases: --new-passphrase-file once per custodian');
    } else {
      if (o.newPassphraseFile.length || o.threshold !== undefined) throw new UsageError('ERR_FLAG_NOT_APPLICABLE', '--new-passphrase-file and --threshold only apply with --master');
    }
    checkEmergencyTarget({ all: o.all, ids, role: o.role, owner: o.owner });
  }
  return mode;
}

function render(ctx: Ctx, r: RotationReport, delivered: Delivered[], o: Opts): void {
  const { issued, ...rest } = r;
  if (ctx.json) return printJson({ ...rest, delivered, ...(o.printKeys ? { keys: issued } : {}) });
  const c = paint(ctx);
  const would = r.dry_run ? 'would ' : '';
  if (!r.actions.length) line(`${c.green('✓')} nothing to do${r.dry_run ? '' : ': no key is due'}`);
  for (const a of r.actions) {
    if (a.action === 'rotate')
      line(`${c.green('↻')} ${would}rotate ${a.old_key_id} → ${c.bold(a.new_key_id)} (${a.name}, ${a.trigger})${a.grace_until ? `; old key valid until ${a.grace_until}` : ''}`);
    else if (a.action === 'revoke') line(`${c.red('✗')} ${would}revoke ${a.key_id} (${a.name}, EMERGENCY)${a.reissue ? '; successor follows' : ''}`);
    else if (a.action === 'retire') line(`${c.dim('•')} ${would}retire ${a.key_id} (${a.name}): grace ended`);
    else if (a.action === 'expire') line(`${c.dim('•')} ${would}expire ${a.key_id} (${a.name})`);
  }
  for (const w of r.warnings)
    line(`${c.yellow('!')} ${w.key_id} (${w.name}) ${w.kind === 'EXPIRES_SOON' ? `expires at ${w.at}` : `has used ${w.use_count} of ${w.max_uses} calls; threshold rotation is near`}`);
  for (const d of delivered) line(`  delivered ${d.key_id}${d.file ? ` → ${d.file}` : ''}${d.exec_status !== undefined ? ` (exec exit ${d.exec_status})` : ''}${d.error ? c.red(` FAILED: ${d.error}`) : ''}`);
  if (o.printKeys) for (const k of issued) line(`  ${k.id}  api key ${k.api_key}  signing secret ${k.api_secret}`);
  else if (issued.length && !delivered.length) line(c.dim(`  ${issued.length} new key(s); hand them to their callers with dsk export k8s|env ID`));
  const waiting = (r.undelivered ?? []).filter((u) => !(o.printKeys && issued.some((k) => k.id === u.key_id)));
  if (waiting.length) {
    line(c.yellow(`! ${waiting.length} successor key(s) not yet delivered to their callers:`));
    for (const u of waiting) line(`  ${u.key_id} (${u.name}, replaces ${u.old_key_id}, rotated ${u.rotated_at}${u.attempts ? `, ${u.attempts} failed attempt(s)${u.last_error ? `: ${u.last_error}` : ''}` : ''})`);
    line(c.dim(`  dsk rotate --due with --exec or --out-dir delivers them (hooks must tolerate a repeat); or dsk export k8s|env ID`));
  }
}
