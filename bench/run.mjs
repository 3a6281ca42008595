#!/usr/bin/env node
/** Runs every bench/*.mjs script (except this one) in sequence; exits non-zero if any fails. */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const dir = path.dirname(fileURLToPath(import.meta.url));
const scripts = fs
  .readdirSync(dir)
  .filter((f) => f.endsWith('.mjs') && f !== 'run.mjs' && f !== 'fuzz.mjs') // fuzz.mjs: npm run fuzz
  .sort();
let failed = 0;
for (const s of scripts) {
  console.log(`\n=== bench/${s}`);
  const r = spawnSync(process.execPath, [path.join(dir, s), ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`bench/${s} failed (exit ${r.status})`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
