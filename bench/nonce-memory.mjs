#!/usr/bin/env node
/**
 * The nonce cache's memory bound is an estimate per entry (NonceCache.entryBytes). This measures
 * the heap one entry really takes, beside the estimate, so the bound is known to be conservative.
 *
 *   npm run build && node --expose-gc bench/nonce-memory.mjs [--entries N]
 */
import crypto from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { NonceCache } = await import(path.join(root, 'dist', 'gateway', 'signature.js'));
if (typeof gc !== 'function') {
  console.error('run with node --expose-gc');
  process.exit(2);
}
const i = process.argv.indexOf('--entries');
const N = i > 0 ? Number(process.argv[i + 1]) : 200_000;
gc();
const before = process.memoryUsage().heapUsed;
const cache = new NonceCache(600_000, 10 * N, Number.MAX_SAFE_INTEGER);
const now = Date.now();
// each nonce made here, as a request header's text would be: the cache keeps it alive
for (let j = 0; j < N; j++) cache.checkAndAdd('0123456789ab', crypto.randomBytes(16).toString('base64url'), now, Math.floor(now / 1000));
gc();
const measured = (process.memoryUsage().heapUsed - before) / cache.size;
const estimate = cache.bytes / cache.size;
console.log(`${cache.size} nonces of 22 characters for a 12-character key id`);
console.log(`estimate ${estimate.toFixed(0)} B/entry, measured heap ${measured.toFixed(0)} B/entry, estimate ÷ measured ${(estimate / measured).toFixed(2)}`);
