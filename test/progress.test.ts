/**
 * Progress bars (src/cli/progress.ts) through a real pseudo-terminal (`script`): drawn on stderr
 * for backup, restore, audit verify, audit export, audit archive and rotate --due when it is a
 * terminal; nothing when the output is piped or with --json.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { DSK, dsk, makeHome, requireTool, tmpDir } from './helpers.js';

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs dsk on a pty (stdin, stdout and stderr all a terminal); returns everything the terminal got. */
function onPty(args: string[], env: NodeJS.ProcessEnv): { code: number; screen: string } {
  const cmd = [process.execPath, DSK, ...args].map(q).join(' ');
  const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], { env: { ...process.env, NO_COLOR: '1', TERM: 'xterm', DSK_HOME: undefined, ...env }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, screen: r.stdout };
}

const BAR = /\[[=-]{30}\] \d+% \| [\d,.]+( KiB| MiB)?\/[\d,.]+( KiB| MiB)? \| ETA: /;

describe.skipIf(!requireTool('script', 'the progress bar tests (a pseudo-terminal)', { install: 'util-linux (bsdutils)' }))('progress', () => {
  let t: ReturnType<typeof makeHome>;
  let work: string;
  beforeAll(() => {
    t = makeHome();
    work = tmpDir();
    for (let i = 0; i < 3; i++) expect(dsk(['keygen', '--name', `k${i}`, '--role', 'automation', '--rotate-every', '1s'], { env: t.env }).code).toBe(0);
  });

  it('backup and restore draw a bar with counts and an ETA on a terminal', () => {
    const b = onPty(['backup', '--out', path.join(work, 'a.tar')], t.env);
    expect(b.code, b.screen).toBe(0);
    expect(b.screen).toMatch(new RegExp(`copying pages ${BAR.source}`));
    expect(b.screen).toMatch(new RegExp(`writing ${BAR.source}`));
    const r = onPty(['restore', path.join(work, 'a.tar'), '--home', path.join(work, 'restored')], {});
    expect(r.code, r.screen).toBe(0);
    expect(r.screen).toMatch(new RegExp(`reading ${BAR.source}`));
    expect(r.screen).toMatch(new RegExp(`checking audit rows ${BAR.source}`));
  });

  it('audit verify, audit export and rotate --due draw theirs', async () => {
    expect(onPty(['audit', 'verify'], t.env).screen).toMatch(new RegExp(`verifying audit rows ${BAR.source}`));
    expect(onPty(['audit', 'export', '--format', 'jsonl', '--out', path.join(work, 'x.jsonl')], t.env).screen).toMatch(new RegExp(`exporting rows ${BAR.source}`));
    await new Promise((r) => setTimeout(r, 1100));
    const rot = onPty(['rotate', '--due'], t.env);
    expect(rot.code, rot.screen).toBe(0);
    expect(rot.screen).toMatch(new RegExp(`rotating keys ${BAR.source}`));
    const arch = onPty(['audit', 'archive', '--before', '0s', '--out', path.join(work, 'old.jsonl.gz')], t.env);
    expect(arch.code, arch.screen).toBe(0);
    expect(arch.screen).toMatch(new RegExp(`verifying audit rows ${BAR.source}`));
  });

  it('nothing when piped, and nothing with --json on a terminal', () => {
    const piped = dsk(['backup', '--out', path.join(work, 'b.tar')], { env: t.env });
    expect(piped.code).toBe(0);
    expect(piped.stderr).toBe('');
    expect(piped.stdout).not.toMatch(/ETA|\x1b/);
    const v = dsk(['audit', 'verify'], { env: t.env });
    expect(v.stderr).toBe('');
    const j = onPty(['--json', 'backup', '--out', path.join(work, 'c.tar')], t.env);
    expect(j.code, j.screen).toBe(0);
    expect(j.screen).not.toMatch(/ETA|\x1b\[/);
    expect(JSON.parse(j.screen).file).toBe(path.join(work, 'c.tar'));
  });
});
