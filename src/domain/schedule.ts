/**
 * The unattended rotation job: a crontab line and a systemd service + timer pair that run
 * `dsk rotate --due --json`. Unseal inputs come from an environment file the units name
 * (DSK_PASSPHRASE_FILES or DSK_HSM_PIN), never from the unit or the crontab themselves, so the
 * job definitions hold no secret and can be read by anyone.
 */
import { UsageError } from '../kernel/errors.js';
import { parseDuration } from '../kernel/duration.js';

export interface CronSpec {
  everyMs: number;
  home: string;
  node: string;
  dsk: string;
  envFile: string;
  logFile: string;
  user: string;
}

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

export function parseEvery(text: string): number {
  const ms = parseDuration(text, '--every');
  if (ms < MIN) throw new UsageError('ERR_SCHEDULE_TOO_SHORT', `a schedule of ${text} is shorter than cron's one-minute resolution`, { hint: 'use 1m or more; 1h is typical' });
  return ms;
}

/** The five cron time fields for "every N"; refuses periods cron cannot express evenly. */
export function cronSchedule(ms: number): string {
  const bad = () => new UsageError('ERR_SCHEDULE_UNEVEN', `cron cannot run exactly every ${ms / MIN} minutes`, { hint: 'use minutes dividing 60 (5m, 15m, 30m), hours dividing 24 (1h, 6h, 12h), or whole days' });
  if (ms % DAY === 0) return ms === DAY ? '17 3 * * *' : `17 3 */${ms / DAY} * *`;
  if (ms % HOUR === 0) {
    const h = ms / HOUR;
    if (24 % h) throw bad();
    return h === 1 ? '17 * * * *' : `17 */${h} * * *`;
  }
  if (ms % MIN === 0 && ms < HOUR && 60 % (ms / MIN) === 0) return `*/${ms / MIN} * * * *`;
  throw bad();
}

function systemdSpan(ms: number): string {
  if (ms % DAY === 0) return `${ms / DAY}d`;
  if (ms % HOUR === 0) return `${ms / HOUR}h`;
  if (ms % MIN === 0) return `${ms / MIN}min`;
  return `${Math.round(ms / 1000)}s`;
}

/** Single-quotes a word for /bin/sh (crontab lines run under sh). */
export function shq(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

export function command(s: CronSpec): string[] {
  return [s.node, s.dsk, '--home', s.home, 'rotate', '--due', '--json'];
}

export function crontabLine(s: CronSpec): string {
  return `${cronSchedule(s.everyMs)} set -a && . ${shq(s.envFile)} && set +a && ${command(s).map(shq).join(' ')} >> ${shq(s.logFile)} 2>&1\n`;
}

/** systemd quoting for ExecStart arguments. */
export function sdq(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s.replace(/%/g, '%%') : `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/%/g, '%%')}"`;
}

export function serviceUnit(s: CronSpec): string {
  return `[Unit]
Description=dsk scheduled API-key rotation (dsk rotate --due)
Documentation=file://${s.dsk.replace(/bin\/dsk\.js$/, 'docs/rotation.md')}
After=network-online.target

[Service]
Type=oneshot
User=${s.user}
# DSK_PASSPHRASE_FILES (software backend) or DSK_HSM_PIN (HSM) come from here, never from this unit.
EnvironmentFile=${s.envFile}
ExecStart=${command(s).map(sdq).join(' ')}
UMask=0077
NoNewPrivileges=yes
PrivateTmp=yes
ProtectSystem=strict
ReadWritePaths=${sdq(s.home)}
# Exit 6 means another run held the lock; the next tick runs again.
SuccessExitStatus=6
`;
}

export function timerUnit(s: CronSpec): string {
  return `[Unit]
Description=Run dsk rotate --due every ${systemdSpan(s.everyMs)}

[Timer]
OnBootSec=5min
OnUnitActiveSec=${systemdSpan(s.everyMs)}
RandomizedDelaySec=60
Unit=dsk-rotate.service

[Install]
WantedBy=timers.target
`;
}

/** The template of the environment file: the names it needs, no value that is a secret. */
export function envFileTemplate(s: CronSpec): string {
  return `# Read by dsk-rotate.service (EnvironmentFile=) and the crontab line. Keep it 0600, owned by ${s.user}.
# It names where the unseal secrets are; the secret files themselves must be 0600 too.
DSK_HOME=${s.home}
DSK_ACTOR=dsk-rotate
# Software backend: any K custodian passphrase files, ':'-separated
DSK_PASSPHRASE_FILES=
# HSM backend: the token user PIN (or leave empty and use a PIN file through a wrapper)
#DSK_HSM_PIN=
`;
}
