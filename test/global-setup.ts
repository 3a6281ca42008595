/**
 * Builds dist/ before any test runs, and again before each rerun in watch mode. CLI tests spawn
 * bin/dsk.js, which loads dist/, and worker threads started from sources load their dist/ file
 * (audit/verify-worker.js, gateway/flush-worker.js): without this, `npx vitest` after an edit
 * would test the previous build. The build is incremental (dist/.tsbuildinfo), so it costs about
 * a second when nothing changed. A type error fails the run: tests never run against a build that
 * `npm run build` would refuse.
 *
 * An incremental build does not notice an output deleted by hand, so a source without its .js in
 * dist/ drops the build info first and rebuilds everything.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { ROOT } from './helpers.js';

const SRC = path.join(ROOT, 'src');
const DIST = path.join(ROOT, 'dist');

function outputMissing(dir = SRC): boolean {
  return fs.readdirSync(dir, { withFileTypes: true }).some((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return outputMissing(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') && !fs.existsSync(path.join(DIST, path.relative(SRC, p)).replace(/\.ts$/, '.js'));
  });
}

function build(): void {
  if (outputMissing()) fs.rmSync(path.join(DIST, '.tsbuildinfo'), { force: true });
  const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(ROOT, 'tsconfig.json')], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`the TypeScript build failed (tsc exit ${r.status ?? r.signal}); no test ran:\n${r.stdout}${r.stderr}`);
}

export default function setup(project: TestProject): void {
  build();
  project.onTestsRerun(() => build());
}
