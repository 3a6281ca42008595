#!/usr/bin/env node
/**
 * The per-request pieces the hardening added, timed in one process beside the tree before them
 * (interleaved rounds, medians), so machine load moves both sides alike:
 *
 *   nonce cache   checkAndAdd of fresh nonces (before: count-bounded; after: also memory-bounded, with a floor)
 *   target        before: split off the query; after: normaliseTarget (refusals and // collapsing)
 *   auth (key)    Authenticator.authenticate on a known key with a wrong secret, and on an unknown id
 *
 *   npm run build && node bench/request-path-compare.mjs BEFORE_DIR [--rounds 7] [--n 200000]
 * BEFORE_DIR is another checkout with dist/ built.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const AFTER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const BEFORE = path.resolve(process.argv[2] ?? '');
const arg = (n, d) => (process.argv.includes(`--${n}`) ? Number(process.argv[process.argv.indexOf(`--${n}`) + 1]) : d);
const ROUNDS = arg('rounds', 7);
const N = arg('n', 200_000);
const load = (tree, m) => import(path.join(tree, 'dist', m));
const before = { sig: await load(BEFORE, 'gateway/signature.js') };
const after = { sig: await load(AFTER, 'gateway/signature.js'), path: await load(AFTER, 'gateway/path.js') };

const nonces = Array.from({ length: N }, () => crypto.randomBytes(16).toString('base64url'));
const targets = Array.from({ length: 1000 }, (_, i) => (i % 3 ? `/v1/chat/completions?trace=${i}` : `/v1/models/deepseek-${i}`));

function time(f) {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / N; // ns per operation
}
const cases = {
  'nonce cache, ns per fresh nonce': {
    before: () => {
      const c = new before.sig.NonceCache(600_000);
      const now = Date.now();
      for (let i = 0; i < N; i++) c.checkAndAdd('0123456789ab', nonces[i], now);
    },
    after: () => {
      const c = new after.sig.NonceCache(600_000);
      const now = Date.now();
      const ts = Math.floor(now / 1000);
      for (let i = 0; i < N; i++) c.covers(ts) && c.checkAndAdd('0123456789ab', nonces[i], now, ts);
    },
  },
  'request target, ns per request': {
    before: () => {
      let n = 0;
      for (let i = 0; i < N; i++) {
        const t = targets[i % 1000];
        const q = t.indexOf('?');
        n += (q < 0 ? t : t.slice(0, q)).length;
      }
      return n;
    },
    after: () => {
      let n = 0;
      for (let i = 0; i < N; i++) {
        const r = after.path.normaliseTarget(targets[i % 1000]);
        if (r.ok) n += r.path.length;
      }
      return n;
    },
  },
};
const results = {};
for (const name of Object.keys(cases)) results[name] = { before: [], after: [] };
for (let r = 0; r < ROUNDS; r++) for (const [name, c] of Object.entries(cases)) for (const side of r % 2 ? ['after', 'before'] : ['before', 'after']) results[name][side].push(time(c[side]));
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`\n## Request-path pieces, before vs after (node ${process.version}, ${ROUNDS} rounds × ${N}, medians)\n`);
console.log('| measurement | before | after | after ÷ before |\n|---|---|---|---|');
for (const [name, r] of Object.entries(results)) {
  const b = median(r.before);
  const a = median(r.after);
  console.log(`| ${name} | ${b.toFixed(0)} | ${a.toFixed(0)} | ${(a / b).toFixed(2)} |`);
}
