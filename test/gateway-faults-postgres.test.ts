/**
 * PostgreSQL stops under a running gateway and starts again (a throwaway cluster of this test, on a
 * port of its own: stopping the shared one would disturb every other test). Keys in memory are
 * served for the cache lifetime, then 503 in OpenAI's error shape; when the server is back, the
 * gateway serves again and every count it held is written, exactly; the chain verifies.
 */
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { dsk, json, passphraseFiles, tmpDir } from './helpers.js';
import { requirePostgres } from './pg-helpers.js';
import { chat, spawnReplica, timeUntil } from './replica-kit.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';

const PG = requirePostgres('the PostgreSQL outage test');
const BIN = fs.existsSync('/usr/lib/postgresql') ? path.join('/usr/lib/postgresql', fs.readdirSync('/usr/lib/postgresql').sort().at(-1)!, 'bin') : '';
const root = process.getuid?.() === 0;
const base = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-pg-outage-'));
const data = path.join(base, 'data');
// a port nobody listens on now (the kernel's pick), for the cluster of this test
const port = await new Promise<number>((resolve) => {
  const srv = net.createServer().listen(0, '127.0.0.1', () => {
    const p = (srv.address() as net.AddressInfo).port;
    srv.close(() => resolve(p));
  });
});
const procs: ChildProcess[] = [];
let up: StubUpstream | undefined;

/** A PostgreSQL tool, as the `postgres` OS user when we are root (initdb refuses root). */
function pgTool(tool: string, args: string[]): void {
  const cmd = root ? 'runuser' : path.join(BIN, tool);
  const full = root ? ['-u', 'postgres', '--', path.join(BIN, tool), ...args] : args;
  const r = spawnSync(cmd, full, { encoding: 'utf8', cwd: base, timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.stdout}`);
}
const start = () => pgTool('pg_ctl', ['-D', data, '-l', path.join(base, 'pg.log'), '-w', '-o', `-p ${port} -k ${base} -c listen_addresses=127.0.0.1`, 'start']);
const stop = () => pgTool('pg_ctl', ['-D', data, '-m', 'fast', '-w', 'stop']);

async function query<T = any>(text: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ host: '127.0.0.1', port, user: 'postgres', database: 'dsk' });
  await c.connect();
  try {
    return (await c.query(text, params)).rows as T[];
  } finally {
    await c.end();
  }
}

afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
  if (fs.existsSync(path.join(data, 'postmaster.pid'))) spawnSync(root ? 'runuser' : path.join(BIN, 'pg_ctl'), [...(root ? ['-u', 'postgres', '--', path.join(BIN, 'pg_ctl')] : []), '-D', data, '-m', 'immediate', 'stop']);
  fs.rmSync(base, { recursive: true, force: true });
});

describe.runIf(PG && BIN)('PostgreSQL stops and starts under a running gateway', () => {
  it('serves from memory for the cache lifetime, then 503; writes every held count when the server is back', async () => {
    if (root) spawnSync('chown', ['postgres', base]);
    fs.chmodSync(base, 0o755);
    pgTool('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
    start();
    pgTool('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', 'dsk']);

    const dir = tmpDir('dsk-pg-outage-home-');
    const home = path.join(dir, 'home');
    const pass = passphraseFiles(dir, 2);
    const env = { DSK_HOME: home, DSK_PASSPHRASE_FILES: pass.join(':'), DSK_STORE_CONNECT_TIMEOUT_MS: '1000' };
    const init = dsk(['init', '--home', home, '--shares', '2', '--threshold', '2', '--kdf', 'scrypt', '--kdf-cost', '15', '--store', `postgres://postgres@127.0.0.1:${port}/dsk`, ...pass.flatMap((p) => ['--passphrase-file', p])]);
    expect(init.code, init.stderr).toBe(0);
    const k = json(dsk(['keygen', '--name', 'outage', '--role', 'developer', '--json'], { env }));
    up = await startStubUpstream();
    const gw = await spawnReplica(env, up.url, ['--cache-ttl', '3s'], procs);
    expect((await chat(gw.url, k.api_key)).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1300));
    const useCount = async () => Number((await query('SELECT use_count FROM keys WHERE id = $1', [k.id]))[0].use_count);
    const before = await useCount();

    const stoppedAt = Date.now(); // pg_ctl -w returns up to a second after the server went away
    stop();
    let served = 0;
    // inside the cache lifetime the keys in memory still work
    for (let i = 0; i < 5; i++) {
      const r = await chat(gw.url, k.api_key);
      if (r.status === 200) served++;
      else expect(Date.now() - stoppedAt).toBeGreaterThan(2500);
    }
    expect(served).toBeGreaterThan(0);
    // past it, nothing can be checked: 503 in OpenAI's shape
    await timeUntil(async () => {
      const s = (await chat(gw.url, k.api_key)).status;
      if (s === 200) served++;
      return s === 503;
    }, 6000);
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(3000 - 300);
    const refused = await chat(gw.url, k.api_key);
    expect(refused.body.error).toMatchObject({ type: 'server_error', code: 'store_unavailable' });
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/^dsk_gateway_store_up 0$/m);
    expect(Number(/^dsk_gateway_held_requests (\d+)$/m.exec(metrics)?.[1])).toBeGreaterThanOrEqual(served);

    start();
    await timeUntil(async () => (await chat(gw.url, k.api_key)).status === 200, 8000);
    served++;
    // the writer thread reconnects on its next batch after a failed one
    await timeUntil(async () => (await useCount()) === before + served, 15_000).catch(async (e) => {
      throw new Error(`use_count ${await useCount()}, expected ${before} + ${served}: ${e.message}; ${gw.stderr()}`);
    });
    await new Promise((r) => setTimeout(r, 1200));
    expect(await useCount()).toBe(before + served);
    const v = dsk(['audit', 'verify'], { env });
    expect(v.code, v.stderr + v.stdout).toBe(0);
  });
});
