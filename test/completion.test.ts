/**
 * `dsk completion bash|zsh|fish`, sourced in the real shells and asked for completions: bash through
 * COMP_WORDS/COMP_CWORD driving the completion function, zsh through a capture of what the function
 * hands to compadd and through a real interactive zsh in a pseudo-terminal (zpty), fish through
 * `complete -C`. Key ids and roles come from the home at TAB time, without unsealing.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DSK, dsk, json, makeHome, requireTool, tmpDir } from './helpers.js';
import { COMMANDS } from '../src/cli/main.js';

let home: string;
let live: string;
let revoked: string;
let bin: string;
let cwd: string;

beforeAll(() => {
  const h = makeHome();
  home = h.home;
  live = json(dsk(['keygen', '--name', 'chat', '--role', 'developer', '--json'], { env: h.env })).id;
  revoked = json(dsk(['keygen', '--name', 'old', '--role', 'developer', '--json'], { env: h.env })).id;
  expect(dsk(['keys', 'revoke', revoked, '--reason', 'test'], { env: h.env }).code).toBe(0);
  expect(dsk(['policy', 'add-role', 'release-bot', '--from', 'automation'], { env: h.env }).code).toBe(0);
  const op = dsk(['operator', 'add', 'ops-alice', '--role', 'developer', '--json'], { env: h.env });
  expect(op.code, op.stderr).toBe(0);
  bin = tmpDir('dsk-bin-');
  fs.writeFileSync(path.join(bin, 'dsk'), `#!/bin/sh\nexec "${process.execPath}" "${DSK}" "$@"\n`, { mode: 0o755 });
  cwd = tmpDir('dsk-cwd-');
  fs.writeFileSync(path.join(cwd, 'key-out.json'), '');
});

function shellEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}:${process.env.PATH}`, NO_COLOR: '1', HOME: cwd, ...extra };
  if (!extra.DSK_HOME) delete env.DSK_HOME;
  return env;
}

function run(shell: string, args: string[], script: string, env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(shell, [...args, script], { env: shellEnv(env), cwd, encoding: 'utf8', timeout: 60_000 });
  expect(r.stderr, `${shell} stderr`).toBe('');
  expect(r.status).toBe(0);
  return r.stdout;
}

const split = (line: string | undefined) => (line ?? '').split(' ').filter(Boolean).sort();

describe('dsk completion bash', () => {
  const BASH_T = `source <(dsk completion bash)
t() { COMP_WORDS=(dsk "$@"); COMP_CWORD=$((\${#COMP_WORDS[@]} - 1)); COMP_LINE="dsk $*"; COMP_POINT=\${#COMP_LINE}; COMPREPLY=(); _dsk_complete; echo "\${COMPREPLY[*]}"; }`;
  const bash = (lines: string[], env?: NodeJS.ProcessEnv) => run('bash', ['--norc', '--noprofile', '-c'], [BASH_T, ...lines].join('\n'), env).split('\n');

  it('completes commands, subcommands, options and enumerated values from the command tree', () => {
    const out = bash([`t ''`, `t ke`, `t keys ''`, `t keys list --status ''`, `t keys revoke --r`, `t keys revoke --`, `t completion ''`, `t --json au`, `t policy set admin ''`, `t policy set admin model.invoke ''`, `t doctor --`]);
    const visible = Object.entries(COMMANDS).filter(([, c]) => !c.hidden).map(([n]) => n);
    expect(split(out[0])).toEqual([...visible].sort());
    expect(out[0]).not.toContain('__complete');
    expect(split(out[1])).toEqual(['keygen', 'keys']);
    expect(split(out[2])).toEqual(['list', 'revoke', 'set', 'show']);
    expect(split(out[3])).toEqual(['active', 'expired', 'grace', 'retired', 'revoked']);
    expect(split(out[4])).toEqual(['--reason']);
    expect(split(out[5])).toEqual(expect.arrayContaining(['--reason', '--passphrase-file', '--home', '--json', '--actor', '--help']));
    expect(split(out[5])).not.toContain('--version');
    expect(split(out[6])).toEqual(['bash', 'fish', 'zsh']);
    expect(split(out[7])).toEqual(['audit']);
    expect(split(out[8])).toEqual(['audit.view', 'key.manage', 'model.invoke', 'param.change']);
    expect(split(out[9])).toEqual(['off', 'on']);
    expect(split(out[10])).toEqual(expect.arrayContaining(['--overdue-after', '--expiring-within']));
  });

  it("reads key ids and roles from the home named by --home or DSK_HOME, without unsealing", () => {
    const out = bash([`t --home ${home} keys show ''`, `t --home ${home} keys revoke ''`, `t --home ${home} rotate ${live} ''`, `t --home ${home} export k8s ''`, `t --home ${home} keygen --name x --role ''`, `t --home ${home} policy set ''`]);
    expect(split(out[0])).toEqual([live, revoked].sort());
    expect(split(out[1])).toEqual([live]);
    expect(split(out[2])).toEqual([live]);
    expect(split(out[3])).toEqual([live]);
    expect(split(out[4])).toEqual(['admin', 'auditor', 'automation', 'developer', 'release-bot']);
    expect(split(out[5])).toEqual(split(out[4]));
    expect(split(bash([`t --home ${home} operator remove ''`])[0])).toEqual(['ops-alice']);
    const env = bash([`t keys show ''`], { DSK_HOME: home });
    expect(split(env[0])).toEqual([live, revoked].sort());
    // no home: nothing offered, nothing printed on stderr (run() checks)
    expect(bash([`t --home ${path.join(cwd, 'nowhere')} keys show ''`])[0]).toBe('');
  });

  it('walks the line as the shell splits it: a value with a colon does not shift the command path', () => {
    // readline breaks words at ':' too (COMP_WORDBREAKS): COMP_WORDS holds 127.0.0.1 : 8080
    const out = bash([`COMP_WORDS=(dsk --actor ops : alice keys ''); COMP_CWORD=6; COMP_LINE='dsk --actor ops:alice keys '; COMP_POINT=\${#COMP_LINE}; _dsk_complete; echo "\${COMPREPLY[*]}"`]);
    expect(split(out[0])).toEqual(['list', 'revoke', 'set', 'show']);
  });

  it('completes files and directories for path options', () => {
    fs.mkdirSync(path.join(cwd, 'units'), { recursive: true });
    const out = bash([`t keygen --out key-`, `t cron install --dir un`, `t --home un`]);
    expect(out[0]).toBe('key-out.json');
    expect(out[1]).toBe('units');
    expect(out[2]).toBe('units');
  });
});

describe('dsk __complete (the hidden source of dynamic values)', () => {
  it('prints ids with name and state, never key text or secrets; an unusable home gives nothing', () => {
    const r = dsk(['--home', home, '__complete', 'keys-all']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim().split('\n').sort()).toEqual([`${live}\tchat (active)`, `${revoked}\told (revoked)`].sort());
    expect(r.stdout).not.toMatch(/dsk_|dss_|[0-9a-f]{40}/);
    const none = dsk(['--home', path.join(cwd, 'nowhere'), '__complete', 'keys-all']);
    expect(none).toMatchObject({ code: 0, stdout: '', stderr: '' });
    expect(dsk(['__complete', 'passwords']).code).toBe(2);
    expect(dsk(['--help']).stdout).not.toContain('__complete');
  });
});

describe.skipIf(!requireTool('zsh', 'the zsh completion tests'))('dsk completion zsh', () => {
  it('offers through compadd what the command tree and the home hold', () => {
    // compadd, _files and _path_files replaced by functions that print what they were given
    const script = `autoload -U compinit && compinit -u -d ${cwd}/.zcompdump
source <(dsk completion zsh)
compadd() { local a seen=0; local -a out; for a in "$@"; do if ((seen)); then out+=("$a"); elif [[ $a == -- ]]; then seen=1; fi; done; print -r -- "\${out[*]}"; }
_files() { print -r -- @files; }
_path_files() { print -r -- @dirs; }
t() { words=(dsk "$@"); CURRENT=\${#words}; _dsk; }
t keys ''
t keys list --status ''
t --home ${home} keys revoke ''
t --home ${home} keygen --role ''
t keygen --out ''
t --home ''
t rotate --g`;
    const out = run('zsh', ['-f', '-c'], script).split('\n');
    expect(split(out[0])).toEqual(['list', 'revoke', 'set', 'show']);
    expect(split(out[1])).toEqual(['active', 'expired', 'grace', 'retired', 'revoked']);
    expect(split(out[2])).toEqual([live]);
    expect(split(out[3])).toEqual(['admin', 'auditor', 'automation', 'developer', 'release-bot']);
    expect(out[4]).toBe('@files');
    expect(out[5]).toBe('@dirs');
    expect(split(out[6])).toContain('--grace');
  });

  it('completes in a real interactive zsh (zpty): a subcommand, then a key id', () => {
    const script = `zmodload zsh/zpty zsh/datetime
zpty -b z 'zsh -f -i'
zpty -w z 'PS1="%% "; autoload -U compinit; compinit -u -d ${cwd}/.zcompdump-pty; source <(dsk completion zsh); print READY'
until_match() {
  local out="" line; local -F deadline=$(( EPOCHREALTIME + 30 ))
  while (( EPOCHREALTIME < deadline )); do
    if zpty -rt z line; then out+=\${line//$'\\r'/}; [[ $out == *$1* ]] && { print -r -- "MATCH $1"; return 0; }; else sleep 0.05; fi
  done
  print -r -- "NOMATCH $1"; return 1
}
until_match READY
zpty -w -n z $'dsk --home ${home} keys rev\\t'
until_match 'keys revoke'
zpty -w -n z $'\\t'
until_match '${live}'
zpty -d z`;
    const out = run('zsh', ['-f', '-c'], script);
    expect(out.trim().split('\n')).toEqual(['MATCH READY', 'MATCH keys revoke', `MATCH ${live}`]);
  });
});

describe.skipIf(!requireTool('fish', 'the fish completion tests'))('dsk completion fish', () => {
  it('answers complete -C with commands, values, key ids (described) and roles', () => {
    const script = `dsk completion fish | source
complete -C 'dsk keys '; echo ---
complete -C 'dsk keys list --status '; echo ---
complete -C 'dsk --home ${home} keys show '; echo ---
complete -C 'dsk --home ${home} keygen --role '; echo ---
complete -C 'dsk keygen --out key-'; echo ---
complete -C 'dsk doctor --ov'`;
    const parts = run('fish', ['--no-config', '-c'], script).split('---\n').map((p) => p.trim().split('\n'));
    expect(parts[0]).toEqual(['list', 'revoke', 'set', 'show']);
    expect(parts[1].sort()).toEqual(['active', 'expired', 'grace', 'retired', 'revoked']);
    expect(parts[2].sort()).toEqual([`${live}\tchat (active)`, `${revoked}\told (revoked)`].sort());
    expect(parts[3].map((l) => l.split('\t')[0]).sort()).toEqual(['admin', 'auditor', 'automation', 'developer', 'release-bot']);
    expect(parts[4]).toEqual(['key-out.json']);
    expect(parts[5]).toEqual(['--overdue-after']);
  });
});
