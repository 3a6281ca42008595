/**
 * `dsk service print`: a systemd unit for `dsk serve`, checked by systemd itself
 * (`systemd-analyze verify`, with ExecStart pointing at the real node and dsk), and read for the
 * hardening the operations guide promises: a dedicated user, NoNewPrivileges, ProtectSystem=strict,
 * only the home (and the access log's directory) writable, unseal material through LoadCredential=
 * and never through the environment.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DSK, dsk, json, makeHome, requireTool, tmpDir } from './helpers.js';
import { gatewayUnit } from '../src/domain/service-unit.js';

const HAS_SYSTEMD_ANALYZE = requireTool('systemd-analyze', 'the systemd unit checks', { install: 'systemd' });

let h: ReturnType<typeof makeHome>;
beforeAll(() => {
  h = makeHome();
});

/** systemd-analyze verify on the unit, saved under the name it is installed as. */
function verify(unit: string): { code: number; stderr: string } {
  const dir = tmpDir('dsk-unit-');
  const file = path.join(dir, 'dsk-serve.service');
  fs.writeFileSync(file, unit);
  const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', env: { ...process.env, SYSTEMD_LOG_LEVEL: 'warning' } });
  return { code: r.status ?? -1, stderr: r.stderr };
}

const setting = (unit: string, key: string) => unit.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));

describe('dsk service print', () => {
  it('prints a hardened unit for this home with the custodian files as credentials', () => {
    const dir = path.join(h.dir, 'logs');
    const r = dsk(['--home', h.home, 'service', 'print', '--user', 'dsk-gw', '--listen', '0.0.0.0:8443', '--upstream', 'http://10.0.0.5:8000', ...h.pass.slice(0, 3).flatMap((p) => ['--passphrase-file', p]), '--access-log', path.join(dir, 'access.log')]);
    expect(r.code, r.stderr).toBe(0);
    const unit = r.stdout;
    expect(setting(unit, 'User')).toEqual(['dsk-gw']);
    expect(setting(unit, 'ExecStart')).toEqual([`${process.execPath} ${DSK} --home ${h.home} serve --listen 0.0.0.0:8443 --upstream http://10.0.0.5:8000 --access-log json --access-log-file ${dir}/access.log`]);
    expect(setting(unit, 'NoNewPrivileges')).toEqual(['yes']);
    expect(setting(unit, 'ProtectSystem')).toEqual(['strict']);
    expect(setting(unit, 'ReadWritePaths')).toEqual([`${h.home} ${dir}`]);
    expect(setting(unit, 'LoadCredential')).toEqual(h.pass.slice(0, 3).map((p, i) => `passphrase-${i + 1}:${p}`));
    expect(setting(unit, 'CapabilityBoundingSet')).toEqual(['']);
    expect(setting(unit, 'ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
    // nothing secret, and no environment file: the environment is visible to every child and in systemctl show
    expect(setting(unit, 'EnvironmentFile')).toEqual([]);
    expect(setting(unit, 'Environment')).toEqual(['DSK_ACTOR=dsk-gateway']);
    for (const p of h.pass) expect(unit).not.toContain(fs.readFileSync(p, 'utf8').trim());
    // the home is under /tmp here, which PrivateTmp=yes would hide from the service
    expect(setting(unit, 'PrivateTmp')).toEqual([]);
    const j = json(dsk(['--home', h.home, 'service', 'print', '--json']));
    expect(j).toMatchObject({ name: 'dsk-serve.service', path: '/etc/systemd/system/dsk-serve.service' });
    expect(setting(j.unit, 'LoadCredential')).toEqual([]);
  });

  it.skipIf(!HAS_SYSTEMD_ANALYZE)('passes systemd-analyze verify, with and without an access log, for a home under /var/lib and under /home', () => {
    const printed = dsk(['--home', h.home, 'service', 'print', '--passphrase-file', h.pass[0], '--access-log', 'stdout']);
    expect(printed.code).toBe(0);
    expect(verify(printed.stdout)).toEqual({ code: 0, stderr: '' });
    const base = { node: process.execPath, dsk: DSK, user: 'dsk', listen: '127.0.0.1:443', passphraseFiles: [], readWrite: ['/var/lib/softhsm/tokens'], devices: true };
    const varLib = gatewayUnit({ ...base, home: '/var/lib/dsk', pinFile: '/etc/dsk/hsm.pin', accessLog: '/var/log/dsk/access.log' });
    expect(setting(varLib, 'PrivateTmp')).toEqual(['yes']);
    expect(setting(varLib, 'ProtectHome')).toEqual(['yes']);
    expect(setting(varLib, 'PrivateDevices')).toEqual([]);
    expect(setting(varLib, 'AmbientCapabilities')).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(setting(varLib, 'LoadCredential')).toEqual(['hsm-pin:/etc/dsk/hsm.pin']);
    expect(verify(varLib)).toEqual({ code: 0, stderr: '' });
    const underHome = gatewayUnit({ ...base, home: '/home/ops/.dsk', listen: '127.0.0.1:8080', devices: false, readWrite: [] });
    expect(setting(underHome, 'ProtectHome')).toEqual(['read-only']);
    expect(setting(underHome, 'PrivateDevices')).toEqual(['yes']);
    expect(verify(underHome)).toEqual({ code: 0, stderr: '' });
    // the check has teeth: a unit whose ExecStart does not exist, or with a misspelt setting, fails
    const missing = verify(varLib.replace(process.execPath, '/nonexistent/node'));
    expect(missing.code).not.toBe(0);
    expect(verify(varLib.replace('NoNewPrivileges=yes', 'NoNewPrivilege=yes')).stderr).toContain("Unknown key 'NoNewPrivilege'");
  });

  it('refuses bad input with exit 2 before printing anything', () => {
    const cases: [string[], string][] = [
      [['--user', 'Bad User'], "invalid --user 'Bad User'"],
      [['--listen', 'nowhere'], "invalid --listen 'nowhere'"],
      [['--passphrase-file', h.pass[0], '--pin-file', h.pass[1]], 'different backends'],
      [['--access-log', path.join(h.dir, 'with space', 'a.log')], 'contains white space'],
      [['--upstream', 'ftp://x'], "invalid --upstream 'ftp://x'"],
    ];
    for (const [args, msg] of cases) {
      const r = dsk(['--home', h.home, 'service', 'print', ...args]);
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
      expect(r.stderr).toContain(msg);
    }
    expect(dsk(['--home', path.join(h.dir, 'nowhere'), 'service', 'print']).code).toBe(4);
  });
});
