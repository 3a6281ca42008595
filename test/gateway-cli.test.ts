/** The real `dsk serve`, `dsk sign` and `dsk token issue`, spawned as a user would run them. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import Database from 'better-sqlite3';
import { dsk, dskAsync, json, makeHome, requireTool, snapshot } from './helpers.js';
import { readRest } from './gwkit.js';
import { startStubUpstream, type StubUpstream } from './stub-upstream.js';

let t: ReturnType<typeof makeHome>;
let up: StubUpstream;
const procs: ChildProcess[] = [];

beforeAll(async () => {
  t = makeHome();
  up = await startStubUpstream();
});
afterAll(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  await up?.close();
});

/** Spawns dsk serve and resolves with its URL once it listens. */
async function serve(args: string[]): Promise<{ url: string; proc: ChildProcess; exited: Promise<number>; stderr: () => string }> {
  const proc = dskAsync(['serve', '--listen', '127.0.0.1:0', '--json', ...args], { env: t.env });
  procs.push(proc);
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number>((r) => proc.on('exit', (code) => r(code ?? -1)));
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

function keygen(name: string, role: string, out?: string, extra: string[] = []) {
  return json(dsk(['keygen', '--name', name, '--role', role, '--json', ...(out ? ['--out', out] : []), ...extra], { env: t.env }));
}

const auth = (key: string) => ({ Authorization: `Bearer ${key}` });

describe('dsk serve (spawned)', () => {
  it('help with examples for serve, sign and token issue; the demo runs its gateway step', () => {
    for (const args of [['serve', '--help'], ['sign', '--help'], ['token', 'issue', '--help']]) {
      const r = dsk(args);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('Examples:');
    }
    const exp = spawnSync(process.execPath, ['--input-type=module', '-e', "import('dsk/client').then(m => console.log(typeof m.signedFetch, typeof m.signHeaders))"], { cwd: path.resolve(__dirname, '..'), encoding: 'utf8' });
    expect(exp.stdout.trim()).toBe('function function');
    const demo = json(dsk(['demo', '--json']));
    expect(demo.gateway).toMatchObject({ accepted: 200, refused: 401, refused_code: 'key_revoked', traversal: 400 });
  });

  it('rejects bad flags before unsealing, changing nothing', () => {
    const before = snapshot(t.home);
    const cases: [string[], RegExp][] = [
      [['serve'], /no upstream/],
      [['serve', '--upstream', 'ftp://x'], /invalid --upstream/],
      [['serve', '--upstream', 'http://127.0.0.1:1', '--listen', 'nowhere'], /invalid --listen/],
      [['serve', '--upstream', 'http://127.0.0.1:1', '--rps', '-3'], /invalid --rps/],
      [['serve', '--upstream', 'http://127.0.0.1:1', '--tls-cert', 'x.pem'], /--tls-cert and --tls-key go together/],
      [['token', 'issue', 'nothex'], /not a key id/],
      [['keygen', '--name', 'x', '--role', 'developer', '--allow-cidr', '10.0.0.0/33'], /invalid --allow-cidr/],
      [['keygen', '--name', 'x', '--role', 'developer', '--rate-limit', 'fast'], /invalid --rate-limit/],
      [['token', 'issue', '0123456789ab', '--ttl', '2d'], /at most 24h/],
    ];
    for (const [args, msg] of cases) {
      const r = dsk(args, { env: { DSK_HOME: t.home } });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.split('\n').filter(Boolean).length).toBeLessThanOrEqual(3);
    }
    expect(snapshot(t.home)).toEqual(before);
  });

  it('serves keys and tokens; a revocation by another dsk process takes effect within a second', async () => {
    const k = keygen('svc', 'developer');
    const office = keygen('office', 'developer', undefined, ['--allow-cidr', '10.0.0.0/8']);
    const slow = keygen('slow', 'developer', undefined, ['--rate-limit', '1:1', '--require-signature']);
    // the stored options are what keys show prints (and what docs/gateway.md shows)
    expect(json(dsk(['keys', 'show', office.id, '--json'], { env: t.env })).options).toEqual({ allowed_cidrs: ['10.0.0.0/8'] });
    expect(json(dsk(['keys', 'show', slow.id, '--json'], { env: t.env })).options).toEqual({ require_signature: true, rate_limit: { rps: 1, burst: 1 } });
    const gw = await serve(['--upstream', up.url]);
    expect((await fetch(`${gw.url}/v1/models`, { headers: auth(office.api_key) })).status).toBe(403);
    const unsigned = await fetch(`${gw.url}/v1/models`, { headers: auth(slow.api_key) });
    expect(unsigned.status).toBe(401);
    expect((await unsigned.json()).error.code).toBe('invalid_signature');
    const { signHeaders } = await import('../src/gateway/signature.js');
    const signed = () => fetch(`${gw.url}/v1/models`, { headers: signHeaders({ apiKey: slow.api_key, apiSecret: slow.api_secret, keyId: slow.id, method: 'GET', path: '/v1/models' }) });
    // the unsigned attempt did not spend the key's budget; the signed one does
    expect((await signed()).status).toBe(200);
    const limited = await signed();
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');
    const models = await fetch(`${gw.url}/v1/models`, { headers: auth(k.api_key) });
    expect(models.status).toBe(200);
    const tok = json(dsk(['token', 'issue', k.id, '--ttl', '15m', '--json'], { env: t.env }));
    expect(tok).toMatchObject({ key_id: k.id, scope: 'deepseek_api' });
    expect((await fetch(`${gw.url}/v1/models`, { headers: auth(tok.token) })).status).toBe(200);
    const rev = dsk(['keys', 'revoke', k.id, '--reason', 'test'], { env: t.env });
    expect(rev.code, rev.stderr).toBe(0);
    const revokedAt = Date.now();
    let status = 200;
    while (status === 200 && Date.now() - revokedAt < 3000) {
      status = (await fetch(`${gw.url}/v1/models`, { headers: auth(k.api_key) })).status;
      if (status === 200) await new Promise((r) => setTimeout(r, 25));
    }
    expect(status).toBe(401);
    expect(Date.now() - revokedAt).toBeLessThan(1000);
    const viaToken = await fetch(`${gw.url}/v1/models`, { headers: auth(tok.token) });
    expect(viaToken.status).toBe(401);
    expect((await viaToken.json()).error.code).toBe('key_revoked');
    gw.proc.kill('SIGTERM');
    expect(await gw.exited).toBe(0);
    const db = new Database(path.join(t.home, 'audit_log', 'audit.db'), { readonly: true });
    const rows = db.prepare("SELECT key_id, details FROM events WHERE action = 'TOKEN_ISSUE'").all() as any[];
    db.close();
    expect(rows).toHaveLength(1);
    expect(rows[0].key_id).toBe(k.id);
    expect(rows[0].details).not.toContain(tok.token.split('.')[2]);
  });

  it('dsk sign headers are accepted by a gateway that requires signatures', async () => {
    const dir = t.dir;
    const keyFile = path.join(dir, 'signer.key');
    const k = keygen('signer', 'automation', keyFile);
    expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
    const bodyFile = path.join(dir, 'req.json');
    const body = JSON.stringify({ model: 'deepseek-stub', messages: [{ role: 'user', content: 'hi' }] });
    fs.writeFileSync(bodyFile, body);
    // signed after the gateway started: a gateway refuses what was signed before its start
    const gw = await serve(['--upstream', up.url, '--require-signature']);
    const s = json(dsk(['sign', '--key-file', keyFile, '--path', '/v1/chat/completions', '--body-file', bodyFile, '--json']));
    expect(Object.keys(s.headers).sort()).toEqual(['X-Nonce', 'X-Signature', 'X-Timestamp']);
    const plain = dsk(['sign', '--key-file', keyFile, '--method', 'get', '--path', '/v1/models']);
    expect(plain.stdout).toMatch(/^X-Timestamp: \d+\nX-Nonce: \S+\nX-Signature: [0-9a-f]{64}\n$/);
    const keyText = JSON.parse(fs.readFileSync(keyFile, 'utf8'));
    expect(plain.stdout + plain.stderr).not.toContain(keyText.api_key);
    try {
      const r = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { ...auth(keyText.api_key), ...s.headers, 'content-type': 'application/json' }, body });
      expect(r.status).toBe(200);
      expect((await r.json()).choices[0].message.content).toBe('echo: hi');
      const unsigned = await fetch(`${gw.url}/v1/models`, { headers: auth(keyText.api_key) });
      expect(unsigned.status).toBe(401);
    } finally {
      gw.proc.kill('SIGTERM');
      expect(await gw.exited).toBe(0);
    }
    void k;
    fs.chmodSync(keyFile, 0o644);
    const loose = dsk(['sign', '--key-file', keyFile, '--path', '/v1/models']);
    expect(loose.code).toBe(5);
  });

  it('SIGTERM mid-stream: the stream completes, the process exits 0, usage is flushed', async () => {
    const k = keygen('streamer', 'developer');
    const gw = await serve(['--upstream', up.url]);
    const r = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...auth(k.api_key), 'content-type': 'application/json', 'x-stub-delay-ms': '100', 'x-stub-chunks': '8' },
      body: JSON.stringify({ model: 'deepseek-stub', stream: true, messages: [{ role: 'user', content: 'long' }] }),
    });
    expect(r.status).toBe(200);
    const reader = r.body!.getReader();
    let text = '';
    const first = await reader.read();
    text += Buffer.from(first.value!).toString();
    gw.proc.kill('SIGTERM');
    text = await readRest(reader, text);
    expect(text).toContain('[7]');
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(await gw.exited).toBe(0);
    expect(gw.stderr()).toContain('flushed');
    const db = new Database(path.join(t.home, 'keys.db'), { readonly: true });
    const row = db.prepare('SELECT use_count, last_used_at FROM keys WHERE id = ?').get(k.id) as any;
    db.close();
    expect(row.use_count).toBe(1);
    expect(row.last_used_at).not.toBeNull();
  });

  it.skipIf(!requireTool('openssl', 'the mutual TLS test'))('mutual TLS: a client certificate from the CA is required', async () => {
    const d = fs.mkdtempSync(path.join(t.dir, 'tls-'));
    const ssl = (args: string[]) => {
      const r = spawnSync('openssl', args, { cwd: d, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(r.stderr);
    };
    ssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', '/CN=dsk test CA']);
    for (const who of ['server', 'client']) {
      ssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who}`]);
      fs.writeFileSync(path.join(d, `${who}.ext`), who === 'server' ? 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' : 'extendedKeyUsage=clientAuth\n');
      ssl(['x509', '-req', '-in', `${who}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${who}.crt`, '-days', '1', '-extfile', `${who}.ext`]);
    }
    const k = keygen('tls', 'automation');
    const gw = await serve(['--upstream', up.url, '--tls-cert', path.join(d, 'server.crt'), '--tls-key', path.join(d, 'server.key'), '--client-ca', path.join(d, 'ca.crt')]);
    expect(gw.url.startsWith('https://')).toBe(true);
    const get = (withCert: boolean) =>
      new Promise<number>((resolve, reject) => {
        const req = https.request(`${gw.url}/v1/models`, {
          headers: auth(k.api_key),
          ca: fs.readFileSync(path.join(d, 'ca.crt')),
          ...(withCert ? { cert: fs.readFileSync(path.join(d, 'client.crt')), key: fs.readFileSync(path.join(d, 'client.key')) } : {}),
        });
        req.on('response', (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        req.end();
      });
    try {
      expect(await get(true)).toBe(200);
      await expect(get(false)).rejects.toThrow();
    } finally {
      gw.proc.kill('SIGTERM');
      expect(await gw.exited).toBe(0);
    }
  });
});
