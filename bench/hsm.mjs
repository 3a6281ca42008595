#!/usr/bin/env node
// HSM vs software master key, in one run: keygen per second (the seed's PBKDF2 at 100,000
// iterations + sealing + the SQLite insert and audit row) and single HMAC-SHA256 calls per second.
// Needs a build (npx tsc -p .) and SoftHSM2; the token lives in a throwaway SOFTHSM2_CONF.
//
//   node bench/hsm.mjs [--keys N] [--seconds S]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const KEYS = arg('--keys', 3);
const SECONDS = arg('--seconds', 2);
const MODULE = process.env.DSK_PKCS11_MODULE ?? '/usr/lib/softhsm/libsofthsm2.so';
if (!fs.existsSync(MODULE)) {
  console.error(`bench/hsm: SoftHSM2 module ${MODULE} not found; install softhsm2`);
  process.exit(4);
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dsk-bench-hsm-'));
fs.chmodSync(dir, 0o700);
fs.mkdirSync(path.join(dir, 'tokens'));
const conf = path.join(dir, 'softhsm2.conf');
fs.writeFileSync(conf, `directories.tokendir = ${dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n`);
process.env.SOFTHSM2_CONF = conf;
const t = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'bench', '--pin', '1234', '--so-pin', '5678'], { encoding: 'utf8' });
if (t.status !== 0) throw new Error(t.stderr);

const { initSoftwareHome, openUnsealed, defaultEnv } = await import(path.join(ROOT, 'dist/app/home.js'));
const { initPkcs11Home } = await import(path.join(ROOT, 'dist/app/hsm.js'));
const { issueKey } = await import(path.join(ROOT, 'dist/app/keys.js'));

const env = defaultEnv('bench');
const pass = ['a', 'b', 'c'].map((w) => ({ source: w, value: Buffer.from(`${w}-bench-passphrase`) }));
const swHome = path.join(dir, 'sw');
await initSoftwareHome({ home: swHome, shares: 3, threshold: 2, passphrases: pass.map((p) => ({ ...p, value: Buffer.from(p.value) })), fragmentDirs: [], kdf: 'scrypt', kdfCost: 15 }, env);
const hsmHome = path.join(dir, 'hsm');
await initPkcs11Home({ home: hsmHome, module: MODULE, tokenLabel: 'bench', pin: async () => Buffer.from('1234') }, env);

const inputs = { passphrases: async () => pass.slice(0, 2).map((p) => ({ ...p, value: Buffer.from(p.value) })), pin: async () => Buffer.from('1234') };

async function measure(home) {
  const h = await openUnsealed(home, env, inputs);
  try {
    const n = h.config.backend === 'pkcs11' ? KEYS : KEYS * 10;
    let t0 = performance.now();
    for (let i = 0; i < n; i++) await issueKey(h, { name: `bench-${i}`, role: 'automation' });
    const keygen = n / ((performance.now() - t0) / 1000);
    const data = Buffer.alloc(64, 7);
    let calls = 0;
    t0 = performance.now();
    while (performance.now() - t0 < SECONDS * 1000) {
      for (let i = 0; i < 100; i++) await h.master.hmac(data);
      calls += 100;
    }
    const hmac = calls / ((performance.now() - t0) / 1000);
    return { backend: h.config.backend, keygen, hmac, keys: n };
  } finally {
    await h.close();
  }
}

// What reuse saves: the same HMAC when each call opens its own session and logs in, and when each
// call loads and initializes the module (what "re-open the module per operation" would cost).
const { Pkcs11Module } = await import(path.join(ROOT, 'dist/master/pkcs11/module.js'));
function perCall(reload) {
  let calls = 0;
  const data = Buffer.alloc(64, 7);
  let mod = reload ? null : Pkcs11Module.load(MODULE);
  const t0 = performance.now();
  while (performance.now() - t0 < SECONDS * 1000) {
    const m = mod ?? Pkcs11Module.load(MODULE);
    const s = m.openSession('bench', []);
    s.login(Buffer.from('1234'));
    s.hmac(s.findKey('dsk-master'), data);
    s.close();
    if (!mod) m.release();
    calls++;
  }
  mod?.release();
  return calls / ((performance.now() - t0) / 1000);
}

try {
  const sw = await measure(swHome);
  const hsm = await measure(hsmHome);
  const f = (x) => (x >= 100 ? Math.round(x).toLocaleString('en') : x.toFixed(2));
  console.log(`node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'} x${os.cpus().length}, SoftHSM2 ${MODULE}`);
  console.log('| backend | keygen/s | ms per keygen | HMAC calls/s |');
  console.log('|---|---:|---:|---:|');
  for (const r of [sw, hsm]) console.log(`| ${r.backend} (${r.keys} keys) | ${f(r.keygen)} | ${f(1000 / r.keygen)} | ${f(r.hmac)} |`);
  const sess = perCall(false);
  const reload = perCall(true);
  console.log(`| pkcs11, new session + C_Login per call | | | ${f(sess)} |`);
  console.log(`| pkcs11, module loaded + C_Initialize per call | | | ${f(reload)} |`);
  console.log(`ratio software/hsm: keygen ${f(sw.keygen / hsm.keygen)}x, HMAC ${f(sw.hmac / hsm.hmac)}x`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
