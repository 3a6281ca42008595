/**
 * dsk top on a real terminal: run in tmux against a running gateway, its screen read back with
 * capture-pane; a narrow window drops the chart and fits; NO_COLOR prints no escape codes; q quits.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { call, gateway, keys, openTestHome, startStubUpstream, type Gateway, type StubUpstream } from './gwkit.js';
import type { Home } from '../src/app/home.js';
import type { IssuedKey } from '../src/app/keys.js';
import { DSK, dskAsync, requireTool, tmpDir } from './helpers.js';

const HAVE_TMUX = requireTool('tmux', 'the dsk top terminal tests');
const SOCKET = `dsk-top-${process.pid}`;
const tmux = (...args: string[]) => execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });

let h: Home;
let up: StubUpstream;
let gw: Gateway;
let k: Record<string, IssuedKey>;
let keyFile: string;
let traffic: NodeJS.Timeout;

beforeAll(async () => {
  if (!HAVE_TMUX) return;
  h = (await openTestHome()).h;
  up = await startStubUpstream({ record: false });
  k = await keys(h, { aud: { name: 'dashboard', role: 'auditor' }, dev: { name: 'chat', role: 'developer' } });
  gw = await gateway(h, up.url, { maxFailures: 10_000 });
  keyFile = path.join(tmpDir(), 'auditor.key');
  fs.writeFileSync(keyFile, JSON.stringify({ api_key: k.aud.api_key }), { mode: 0o600 });
  const send = () => void call(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${k.dev.api_key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'a b c' }] }) });
  traffic = setInterval(() => (send(), send(), send()), 100);
});

afterAll(async () => {
  clearInterval(traffic);
  try {
    tmux('kill-server');
  } catch {
    // no server left
  }
  await gw?.close();
  await up?.close();
  await h?.close();
});

async function screen(until: (s: string) => boolean, ms = 8000, flags: string[] = []): Promise<string> {
  const deadline = Date.now() + ms;
  let s = '';
  while (Date.now() < deadline) {
    s = tmux('capture-pane', '-p', ...flags, '-t', 'top');
    if (until(s)) return s;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`screen never matched:\n${s}`);
}

describe.runIf(HAVE_TMUX)('dsk top in tmux', () => {
  it('draws keys with a chart, status codes, sources; fits a narrow window; q quits with status 0', async () => {
    tmux('new-session', '-d', '-s', 'top', '-x', '110', '-y', '30', `env NO_COLOR=1 TERM=xterm-256color ${process.execPath} ${DSK} top --gateway ${gw.url} --key-file ${keyFile}`);
    tmux('set-option', '-t', 'top', 'remain-on-exit', 'on');
    const wide = await screen((s) => s.includes(k.dev.id) && /[▁▂▃▄▅▆▇█]/.test(s), 30_000); // node starts slowly on a loaded machine
    expect(wide).toContain('q quits');
    expect(wide).toMatch(new RegExp(`${k.dev.id}\\s+chat\\s+\\d+\\.\\d\\s+\\d+\\.\\d\\s+[ ▁▂▃▄▅▆▇█]+`));
    expect(wide).toMatch(/status\s+200:\d+/);
    expect(wide).toMatch(/127\.0\.0\.1\s+\d+\s+-/);
    expect(wide).toContain('ALERTS');
    // no colour asked: the screen carries no attributes
    expect(tmux('capture-pane', '-p', '-e', '-t', 'top')).not.toMatch(/\x1b\[[0-9;]*m/);

    tmux('resize-window', '-t', 'top', '-x', '44', '-y', '30');
    const narrow = await screen((s) => !s.includes('LAST') && s.includes(k.dev.id));
    for (const l of narrow.split('\n')) expect(l.length).toBeLessThanOrEqual(44);
    expect(narrow).not.toMatch(/[▁▂▃▄▅▆▇█]/);

    tmux('send-keys', '-t', 'top', 'q');
    // the alternate screen is left (the frame is gone) and the command ended with status 0
    const after = await screen((s) => s.includes('Pane is dead'), 15_000);
    expect(after).toContain('Pane is dead (status 0');
    expect(after).not.toContain('ALERTS');
  });

  it('with colour the header is bold', async () => {
    tmux('new-session', '-d', '-s', 'top2', '-x', '100', '-y', '20', `env -u NO_COLOR TERM=xterm-256color ${process.execPath} ${DSK} top --gateway ${gw.url} --key-file ${keyFile}`);
    let s = '';
    for (let i = 0; i < 150 && !s.includes('q quits'); i++) {
      await new Promise((r) => setTimeout(r, 200));
      s = tmux('capture-pane', '-p', '-e', '-t', 'top2');
    }
    expect(s).toMatch(/\x1b\[1m/);
    tmux('send-keys', '-t', 'top2', 'q');
  });

  it('--json streams one frame per refresh; SIGTERM ends it with status 143', async () => {
    const p = dskAsync(['top', '--gateway', gw.url, '--key-file', keyFile, '--json', '--interval', '1s']);
    let out = '';
    p.stdout.on('data', (d) => (out += d));
    for (let i = 0; i < 200 && out.split('\n').length < 3; i++) await new Promise((r) => setTimeout(r, 50));
    p.kill('SIGTERM');
    const code = await new Promise<number | null>((r) => p.on('exit', r));
    expect(code).toBe(143);
    const frames = out.trim().split('\n').map((l) => JSON.parse(l));
    expect(frames.length).toBeGreaterThanOrEqual(2);
    expect(frames[0].keys.some((x: any) => x.key_id === k.dev.id && x.series.length === 60)).toBe(true);
  });

  it('a key without audit.view is refused with exit 3', async () => {
    const f = path.join(tmpDir(), 'dev.key');
    fs.writeFileSync(f, k.dev.api_key, { mode: 0o600 });
    // the gateway runs in this process: the command must run asynchronously
    const p = dskAsync(['top', '--gateway', gw.url, '--key-file', f, '--count', '1']);
    let stderr = '';
    p.stderr.on('data', (d) => (stderr += d));
    const code = await new Promise<number | null>((r) => p.on('exit', r));
    expect(code).toBe(3);
    expect(stderr).toContain('dsk top needs an auditor or admin key');
  });
});
