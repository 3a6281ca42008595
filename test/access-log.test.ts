/**
 * `dsk serve --access-log json`: the real gateway process, real HTTP requests, the log parsed back.
 * One JSON line per request with time, key id, route, status, latency, bytes and source; never the
 * key, its secret or a query string; the file is 0600 and reopened on SIGHUP after a rename (what
 * logrotate does). On stdout, the lines are all stdout carries. The stdout run unseals from
 * systemd credentials ($CREDENTIALS_DIRECTORY), as the unit of `dsk service print` arranges.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DSK, dsk, json, makeHome, tmpDir } from './helpers.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';
import { loggedPath } from '../src/gateway/access-log.js';
import { formatApiKey } from '../src/domain/key-text.js';

let h: ReturnType<typeof makeHome>;
let key: { id: string; api_key: string; api_secret: string };
let up: StubUpstream;
const children: ChildProcess[] = [];

beforeAll(async () => {
  h = makeHome();
  key = json(dsk(['keygen', '--name', 'chat', '--role', 'developer', '--json'], { env: h.env }));
  up = await startStubUpstream();
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await up.close();
});

/** Starts dsk serve and resolves with its URL once it listens (read from stdout or stderr). */
async function serve(args: string[], env: NodeJS.ProcessEnv, urlOn: 'stdout' | 'stderr') {
  const base: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  for (const k of ['DSK_HOME', 'DSK_PASSPHRASE_FILES', 'CREDENTIALS_DIRECTORY']) delete base[k];
  const child = spawn(process.execPath, [DSK, 'serve', '--upstream', up.url, '--listen', '127.0.0.1:0', '--json', ...args], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const stdoutLines: string[] = [];
  let stderr = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dsk serve did not start: ${stderr}`)), 60_000);
    const take = (l: string) => {
      const m = /"url":\s*"([^"]+)"/.exec(l);
      if (!m) return false;
      clearTimeout(timer);
      resolve(m[1]);
      return true;
    };
    readline.createInterface({ input: child.stdout! }).on('line', (l) => (urlOn === 'stdout' && take(l)) || stdoutLines.push(l));
    readline.createInterface({ input: child.stderr! }).on('line', (l) => {
      stderr += l + '\n';
      if (urlOn === 'stderr') take(l);
    });
    child.on('exit', (code) => reject(new Error(`dsk serve exited ${code}: ${stderr}`)));
  });
  return { child, url, stdoutLines, stderr: () => stderr };
}

const bearer = (k: string) => ({ authorization: `Bearer ${k}` });

async function until<T>(f: () => T | undefined, what: string, ms = 10_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const linesOf = (file: string) => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);
const fileWith = (file: string, n: number) => () => (linesOf(file).length >= n ? linesOf(file) : undefined);

describe('dsk serve --access-log json', () => {
  it('writes one JSON line per request to a file, never a key or secret, and reopens it on SIGHUP', async () => {
    const dir = tmpDir('dsk-log-');
    const file = path.join(dir, 'access.log');
    const gw = await serve(['--access-log', 'json', '--access-log-file', file], h.env, 'stdout');
    const chat = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...bearer(key.api_key), 'content-type': 'application/json' }, body: JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hi' }] }) });
    const chatBody = await chat.text();
    expect(chat.status).toBe(200);
    const forged = key.api_key.replace(/_[0-9a-f]{64}_/, `_${'0'.repeat(64)}_`);
    expect((await fetch(`${gw.url}/v1/models`, { headers: bearer(forged) })).status).toBe(401);
    expect((await fetch(`${gw.url}/v1/models?api_key=${encodeURIComponent(key.api_key)}&secret=${key.api_secret}`, { headers: bearer(key.api_key) })).status).toBe(200);
    await fetch(`${gw.url}/v1/${key.api_key}`, { headers: bearer(key.api_key) }).then((r) => r.text());

    const lines = await until(fileWith(file, 4), 'four access lines');
    expect(lines).toHaveLength(4);
    const rows = lines.map((l) => JSON.parse(l));
    for (const r of rows) {
      expect(Object.keys(r).sort()).toEqual(['bytes_in', 'bytes_out', 'key_id', 'latency_ms', 'method', 'path', 'route', 'source', 'status', 'time'].sort());
      expect(new Date(r.time).toISOString()).toBe(r.time);
      expect(r.source).toBe('127.0.0.1');
      expect(r.latency_ms).toBeGreaterThanOrEqual(0);
    }
    expect(rows[0]).toMatchObject({ key_id: key.id, method: 'POST', path: '/v1/chat/completions', status: 200, bytes_out: Buffer.byteLength(chatBody) });
    expect(rows[0].bytes_in).toBeGreaterThan(40);
    expect(rows[0].route).not.toBe('unknown');
    expect(rows[1]).toMatchObject({ key_id: null, path: '/v1/models', status: 401 });
    expect(rows[2]).toMatchObject({ key_id: key.id, path: '/v1/models', status: 200 });
    expect(rows[3].path).toBe(`/v1/dsk_${key.id}_…`);
    const text = fs.readFileSync(file, 'utf8');
    expect(text).not.toContain(key.api_key);
    expect(text).not.toContain(key.api_secret);
    expect(text).not.toContain(key.api_key.split('_')[2]);
    expect(text).not.toContain('0'.repeat(64));
    expect(text).not.toMatch(/authorization|bearer|api_key/i);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);

    // logrotate: rename, then SIGHUP; new lines go to a new file at the old name
    fs.renameSync(file, `${file}.1`);
    gw.child.kill('SIGHUP');
    await new Promise((r) => setTimeout(r, 300));
    expect((await fetch(`${gw.url}/v1/models`, { headers: bearer(key.api_key) })).status).toBe(200);
    const fresh = await until(fileWith(file, 1), 'a line in the reopened file');
    expect(JSON.parse(fresh[0])).toMatchObject({ key_id: key.id, path: '/v1/models', status: 200 });
    expect(linesOf(`${file}.1`)).toEqual(lines);
    expect(gw.child.exitCode).toBeNull();

    gw.child.kill('SIGTERM');
    expect(await new Promise((r) => gw.child.on('exit', r))).toBe(0);
  });

  it('on stdout, stdout carries only access lines; unseals from $CREDENTIALS_DIRECTORY (systemd LoadCredential=)', async () => {
    const creds = tmpDir('dsk-creds-');
    h.pass.slice(0, 3).forEach((p, i) => {
      fs.copyFileSync(p, path.join(creds, `passphrase-${i + 1}`));
      fs.chmodSync(path.join(creds, `passphrase-${i + 1}`), 0o400);
    });
    const gw = await serve(['--access-log', 'json'], { DSK_HOME: h.home, CREDENTIALS_DIRECTORY: creds }, 'stderr');
    expect((await fetch(`${gw.url}/v1/models`, { headers: bearer(key.api_key) })).status).toBe(200);
    await until(() => (gw.stdoutLines.length ? true : undefined), 'an access line on stdout');
    expect(gw.stdoutLines).toHaveLength(1);
    expect(JSON.parse(gw.stdoutLines[0])).toMatchObject({ key_id: key.id, path: '/v1/models', status: 200, source: '127.0.0.1' });
    gw.child.kill('SIGHUP'); // no file: reopening is a no-op, and the gateway keeps running
    await new Promise((r) => setTimeout(r, 200));
    expect(gw.child.exitCode).toBeNull();
    gw.child.kill('SIGTERM');
    expect(await new Promise((r) => gw.child.on('exit', r))).toBe(0);
  });

  it('refuses a bad format or an unwritable file before unsealing', () => {
    const bad = dsk(['serve', '--upstream', up.url, '--access-log', 'xml'], { env: h.env });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("invalid --access-log 'xml'");
    const nowhere = dsk(['serve', '--upstream', up.url, '--access-log-file', '/nonexistent-dir/a.log'], { env: h.env });
    expect(nowhere.code).toBe(4);
    expect(nowhere.stderr).toContain('/nonexistent-dir/a.log');
  });

  it('logged paths: no query string, key-shaped text cut to the id, bounded', () => {
    expect(loggedPath('/v1/models?api_key=dsk_0123456789ab_' + 'f'.repeat(64) + '_AbCdEf')).toBe('/v1/models');
    expect(loggedPath('/x/dsk_0123456789ab_' + 'f'.repeat(64) + '_AbCdEf/y')).toBe('/x/dsk_0123456789ab_…/y');
    expect(loggedPath('/' + 'z'.repeat(2000))).toHaveLength(513);
    expect(loggedPath('/x/dsk%5F0123456789ab%5F' + 'f'.repeat(64) + '%5FAbCdEf')).toBe('/x/dsk%5F0123456789ab%…%5FAbCdEf');
  });

  it('property: whatever surrounds a key in a request target, the logged path holds neither its secret nor the query', () => {
    const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`));
    fc.assert(
      fc.property(hex(12), hex(64), fc.string(), fc.string(), fc.string(), (id, secret, before, after, query) => {
        const text = formatApiKey(id, secret);
        const out = loggedPath(`/${before.replace(/\?/g, '')}${text}${after.replace(/\?/g, '')}?${query}`);
        expect(out).not.toContain(secret);
        expect(loggedPath(`/${before.replace(/\?/g, '')}${encodeURIComponent(text).replace(/_/g, '%5F')}`).toLowerCase()).not.toContain(secret);
        expect(out).not.toContain('?');
        expect(out.length).toBeLessThanOrEqual(513);
      }),
    );
  });
});
