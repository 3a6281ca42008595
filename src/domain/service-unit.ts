/**
 * The systemd unit for the gateway (`dsk serve`), hardened the way systemd.exec(5) allows for a
 * network daemon that writes only its home: a dedicated user, no new privileges, a read-only
 * system, no capabilities, a system-call allow-list.
 *
 * Unseal material reaches the service through LoadCredential= (systemd.exec(5), "Credentials"):
 * systemd copies each file into a private, non-swappable directory readable only by the service
 * user and names it in $CREDENTIALS_DIRECTORY, where dsk looks for `passphrase-*` files and
 * `hsm-pin`. Unlike Environment= or EnvironmentFile=, a credential is not visible in
 * `systemctl show`, in /proc/PID/environ, or to child processes.
 */
import { sdq } from './schedule.js';

export interface GatewayUnitSpec {
  node: string;
  dsk: string;
  home: string;
  user: string;
  listen: string;
  upstream?: string;
  /** custodian passphrase files (software backend), loaded as credentials passphrase-1 … */
  passphraseFiles: string[];
  /** the HSM user PIN file (pkcs11 backend), loaded as credential hsm-pin */
  pinFile?: string;
  /** access log: 'stdout' (the journal) or a file path; absent: no access log */
  accessLog?: string;
  /** more writable paths, e.g. SoftHSM2's token directory */
  readWrite: string[];
  /** the HSM is a device: keep /dev visible */
  devices: boolean;
}

/** Names of the credentials dsk reads from $CREDENTIALS_DIRECTORY. */
export const CREDENTIAL_PASSPHRASE_PREFIX = 'passphrase-';
export const CREDENTIAL_PIN = 'hsm-pin';

/** A path inside a unit setting: `%` is a specifier there. Paths with white space or quotes are refused earlier (unitPathProblem). */
function up(p: string): string {
  return p.replace(/%/g, '%%');
}

/** Why a path cannot be written into a unit file as is, or null. */
export function unitPathProblem(p: string): string | null {
  if (!p.startsWith('/')) return 'is not an absolute path';
  if (/[\s"'\\]/.test(p)) return 'contains white space, a quote or a backslash';
  return null;
}

/** PrivateTmp=yes gives the service its own /tmp: a home kept under /tmp would vanish behind it. */
function privateTmp(paths: string[]): string {
  return paths.some((p) => /^\/(var\/)?tmp(\/|$)/.test(p)) ? '# PrivateTmp= left off: a writable path is under /tmp, which it would hide.' : 'PrivateTmp=yes';
}

function port(listen: string): number {
  return Number(listen.slice(listen.lastIndexOf(':') + 1));
}

/** ProtectHome=yes would hide a home under /home or /root even from ReadWritePaths=. */
function protectHome(paths: string[]): string {
  return paths.some((p) => /^\/(home|root|run\/user)(\/|$)/.test(p)) ? 'read-only' : 'yes';
}

export function gatewayCommand(s: GatewayUnitSpec): string[] {
  const cmd = [s.node, s.dsk, '--home', s.home, 'serve', '--listen', s.listen];
  if (s.upstream) cmd.push('--upstream', s.upstream);
  if (s.accessLog === 'stdout') cmd.push('--access-log', 'json');
  else if (s.accessLog) cmd.push('--access-log', 'json', '--access-log-file', s.accessLog);
  return cmd;
}

export function gatewayUnit(s: GatewayUnitSpec): string {
  const writable = [s.home, ...(s.accessLog && s.accessLog !== 'stdout' ? [s.accessLog.slice(0, s.accessLog.lastIndexOf('/')) || '/'] : []), ...s.readWrite];
  const credentials = [...s.passphraseFiles.map((f, i) => `LoadCredential=${CREDENTIAL_PASSPHRASE_PREFIX}${i + 1}:${up(f)}`), ...(s.pinFile ? [`LoadCredential=${CREDENTIAL_PIN}:${up(s.pinFile)}`] : [])];
  const privileged = port(s.listen) > 0 && port(s.listen) < 1024;
  return `[Unit]
Description=dsk gateway: API keys in front of an OpenAI-compatible model server (dsk serve)
Documentation=file://${s.dsk.replace(/bin\/dsk\.js$/, 'docs/operations.md')}
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
User=${s.user}
Group=${s.user}
ExecStart=${gatewayCommand(s).map(sdq).join(' ')}
# SIGHUP reopens the access log file (after logrotate moved it); SIGTERM drains in-flight requests.
ExecReload=/bin/kill -HUP $MAINPID
KillSignal=SIGTERM
TimeoutStopSec=45
Restart=on-failure
RestartSec=2
Environment=DSK_ACTOR=dsk-gateway
# Unseal material: copied by systemd into $CREDENTIALS_DIRECTORY for this service only; never in the environment.
${credentials.length ? credentials.join('\n') : '# (none given: add LoadCredential=passphrase-1:FILE … or LoadCredential=hsm-pin:FILE)'}
UMask=0077
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths=${writable.map(up).join(' ')}
ProtectHome=${protectHome(writable)}
${privateTmp(writable)}
${s.devices ? '# PrivateDevices= left off: the PKCS#11 module may need the HSM device.' : 'PrivateDevices=yes'}
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
RemoveIPC=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
${privileged ? 'CapabilityBoundingSet=CAP_NET_BIND_SERVICE\nAmbientCapabilities=CAP_NET_BIND_SERVICE' : 'CapabilityBoundingSet='}
# MemoryDenyWriteExecute= is left off: V8's JIT compiler needs writable executable memory.

[Install]
WantedBy=multi-user.target
`;
}
