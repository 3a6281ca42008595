/**
 * `dsk serve` on the HSM backend stops the way it does on the software backend: SIGTERM drains
 * in-flight requests, flushes usage counts and refusal rows, closes the master key (C_Finalize),
 * and exits 0. Regression: the PKCS#11 layer once installed its own process-wide SIGTERM handler,
 * which won the race and exited 143 with nothing drained or flushed. Real SoftHSM2, the real CLI.
 */
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dsk, dskAsync, json } from './helpers.js';
import { pkcs11Home, requireSoftHsm, softHsm, type Setup } from './hsm-helpers.js';
import { readRest } from './gwkit.js';
import { freshChat, spawnReplica } from './replica-kit.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';

const HSM = requireSoftHsm();

describe.skipIf(!HSM)('dsk serve with the pkcs11 backend', () => {
  let s: Setup;
  let up: StubUpstream;
  beforeAll(async () => {
    s = pkcs11Home(softHsm(), 'dsk-gw');
    up = await startStubUpstream();
  });
  afterAll(async () => {
    await up?.close();
  });

  it('SIGTERM during a slow stream: the stream completes, usage and refusals are flushed, the key is closed, exit 0', async () => {
    const k = json(dsk(['keygen', '--name', 'streamer', '--role', 'developer', '--json'], { env: s.env }));
    const auditor = json(dsk(['keygen', '--name', 'reader', '--role', 'auditor', '--json'], { env: s.env }));
    const proc = dskAsync(['serve', '--listen', '127.0.0.1:0', '--json', '--upstream', up.url], { env: s.env });
    let stderr = '';
    proc.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | string>((r) => proc.on('exit', (code, sig) => r(code ?? String(sig))));
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = '';
        proc.stdout.on('data', (d) => {
          out += d;
          const m = /"url":\s*"([^"]+)"/.exec(out);
          if (m) resolve(m[1]);
        });
        proc.on('exit', (c) => reject(new Error(`dsk serve exited ${c}: ${stderr}`)));
      });
      const stream = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${k.api_key}`, 'content-type': 'application/json', 'x-stub-delay-ms': '150', 'x-stub-chunks': '8' },
        body: JSON.stringify({ model: 'deepseek-stub', stream: true, messages: [{ role: 'user', content: 'long' }] }),
      });
      expect(stream.status).toBe(200);
      const reader = stream.body!.getReader();
      let text = Buffer.from((await reader.read()).value!).toString();
      // An auditor may not invoke the model: a refusal row waits in the gateway's batch.
      const refused = await fetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${auditor.api_key}`, 'content-type': 'application/json' }, body: '{}' });
      expect(refused.status).toBe(403);
      proc.kill('SIGTERM');
      text = await readRest(reader, text);
      expect(text).toContain('[7]');
      expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
      expect(await exited, stderr).toBe(0);
    } finally {
      if (proc.exitCode === null) proc.kill('SIGKILL');
    }
    expect(stderr).toContain('dsk: SIGTERM: draining in-flight requests');
    expect(stderr).toContain('dsk: gateway stopped; usage counters flushed and the master key closed');
    expect(stderr).not.toContain('interrupted');

    const keys = new Database(path.join(s.home, 'keys.db'), { readonly: true });
    const audit = new Database(path.join(s.home, 'audit_log', 'audit.db'), { readonly: true });
    try {
      expect(keys.prepare('SELECT use_count FROM keys WHERE id = ?').get(k.id)).toEqual({ use_count: 1 });
      const rows = audit.prepare("SELECT details FROM events WHERE action = 'AUTH_FAILURE' AND key_id = ?").all(auditor.id) as { details: string }[];
      expect(rows.map((r) => JSON.parse(r.details))).toEqual([expect.objectContaining({ reason: 'ROLE_DENIED', status: 403, count: 1 })]);
    } finally {
      keys.close();
      audit.close();
    }
    // the token is free again: a one-shot command logs in and derives with it
    expect(dsk(['audit', 'verify', '--json'], { env: s.env }).code).toBe(0);
  });

  it('--workers 2: the primary reads the PIN once and hands it to both workers, which log in to the token and serve; SIGTERM drains both', async () => {
    const k = json(dsk(['keygen', '--name', 'workers', '--role', 'developer', '--json'], { env: s.env }));
    const gw = await spawnReplica(s.env, up.url, ['--workers', '2']);
    try {
      const rs = await Promise.all([0, 1, 2, 3].map(() => freshChat(gw.url, k.api_key)));
      expect(rs.map((r) => r.status)).toEqual([200, 200, 200, 200]);
      gw.proc.kill('SIGTERM');
      expect(await gw.exited, gw.stderr()).toBe(0);
      expect(gw.stderr()).toContain('every worker flushed');
    } finally {
      if (gw.proc.exitCode === null) gw.proc.kill('SIGKILL');
    }
    expect(dsk(['audit', 'verify', '--json'], { env: s.env }).code).toBe(0);
  });
});
