/** Gateways as separate `dsk serve` processes on one home, on loopback ports, as replicas run. */
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import { dskAsync } from './helpers.js';

export interface Replica {
  url: string;
  proc: ChildProcess;
  exited: Promise<number>;
  stderr: () => string;
}

/** Spawns `dsk serve` with `args` and resolves once it prints its URL (limits high: the tests poll, and the IP is one). */
export async function spawnReplica(env: NodeJS.ProcessEnv, upstream: string, args: string[] = [], procs?: ChildProcess[]): Promise<Replica> {
  const proc = dskAsync(['serve', '--upstream', upstream, '--listen', '127.0.0.1:0', '--json', '--rps', '100000', '--burst', '100000', '--max-failures', '1000000', '--max-concurrent', '1000', ...args], { env });
  procs?.push(proc);
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number>((r) => proc.on('exit', (code, sig) => r(code ?? (sig === 'SIGKILL' ? 137 : -1))));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /"url":\s*"([^"]+)"/.exec(out);
      if (m) resolve(m[1]);
    });
    proc.on('exit', (c) => reject(new Error(`dsk serve exited ${c}: ${err}`)));
  });
  return { url, proc, exited, stderr: () => err };
}

/** Stops a replica the way an orchestrator does (SIGTERM: drain, flush) and returns its exit code. */
export async function stopReplica(r: Replica): Promise<number> {
  if (r.proc.exitCode === null) r.proc.kill('SIGTERM');
  return r.exited;
}

export async function chat(url: string, key: string, headers: Record<string, string> = {}, body = '{"model":"m","messages":[]}') {
  const r = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers }, body });
  const text = await r.text();
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: r.status, body: json };
}

/** Polls `f` every 10 ms until it returns true; resolves with the milliseconds it took (or rejects after `limitMs`). */
export async function timeUntil(f: () => Promise<boolean>, limitMs = 5000): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    if (await f()) return performance.now() - t0;
    if (performance.now() - t0 > limitMs) throw new Error(`condition not met within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A POST on a new TCP connection of its own (workers behind one port take connections in turn). */
export function freshChat(url: string, key: string, headers: Record<string, string> = {}, body = '{"model":"m","messages":[]}'): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${url}/v1/chat/completions`, { method: 'POST', agent: false, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', connection: 'close', ...headers } }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => {
        let json: any = text;
        try {
          json = JSON.parse(text);
        } catch {
          // not JSON: keep the text
        }
        resolve({ status: res.statusCode ?? 0, body: json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}
