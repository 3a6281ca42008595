#!/usr/bin/env node
/**
 * Table rendering: the linear renderer (listTable, used by `keys list` and `audit query`) against
 * cli-table3 (table, used for bounded tables), on the same rows; both must print the same text.
 * Usage: npm run build && node bench/render.mjs [--rows N]   (default 10,000; cli-table3 takes seconds)
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { listTable, table } = await import(path.join(ROOT, 'dist', 'cli', 'render.js'));
const i = process.argv.indexOf('--rows');
const N = i > 0 ? Number(process.argv[i + 1]) : 10_000;

const head = ['id', 'name', 'role', 'status', 'uses', 'age', 'expires'];
const rows = Array.from({ length: N }, (_, n) => [`${n}`.padStart(12, '0'), `service-${n}`, 'developer', 'active', n * 7, '3d', 'never']);
const time = (fn) => {
  const start = performance.now();
  const out = fn();
  return { ms: performance.now() - start, out };
};
const linear = time(() => listTable({ color: false }, head, rows));
const t3 = time(() => table({ color: false }, head, rows));
console.log(`${N} rows: listTable ${linear.ms.toFixed(0)} ms, cli-table3 ${t3.ms.toFixed(0)} ms (${(t3.ms / linear.ms).toFixed(0)}x)`);
if (linear.out !== t3.out) {
  console.error('the two renderers printed different text');
  process.exit(1);
}
