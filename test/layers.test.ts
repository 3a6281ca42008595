/**
 * The layering of src/: every import points down (or sideways within a folder), never up.
 *
 *   kernel  <  domain  <  master | store  <  audit  <  app  <  gateway  <  cli  <  index.ts
 *
 * master and store are peers that never import each other. The test reads every import of every
 * file in src/ (static, type-only and dynamic) and names each arrow that points the wrong way; a
 * second part proves the check itself fails on an upward import.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from './helpers.js';

const SRC = path.join(ROOT, 'src');
const RANK: Record<string, number> = { kernel: 0, domain: 1, master: 2, store: 2, audit: 3, app: 4, gateway: 5, cli: 6, 'index.ts': 7 };

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?from\s*'([^']+)'|import\(\s*'([^']+)'\s*\)|new URL\(\s*'([^']+)'\s*,\s*import\.meta\.url/g;

export function importsOf(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(IMPORT)) out.push(m[1] ?? m[2] ?? m[3]);
  return out;
}

function layerOf(file: string): string {
  const rel = path.relative(SRC, file);
  return rel.includes(path.sep) ? rel.split(path.sep)[0] : rel;
}

export function violations(sources: { file: string; text: string }[]): string[] {
  const bad: string[] = [];
  for (const { file, text } of sources) {
    const from = layerOf(file);
    for (const spec of importsOf(text)) {
      if (!spec.startsWith('.')) continue;
      const target = path.resolve(path.dirname(file), spec);
      const to = layerOf(target);
      if (!(from in RANK) || !(to in RANK)) {
        bad.push(`${path.relative(ROOT, file)} imports ${spec}: ${!(from in RANK) ? from : to} is not a known layer`);
        continue;
      }
      if (from === to) continue;
      const peers = RANK[from] === RANK[to];
      if (RANK[to] > RANK[from] || peers) bad.push(`${path.relative(ROOT, file)} (${from}) imports ${spec} (${to})`);
    }
  }
  return bad;
}

const sources = () => files(SRC).map((file) => ({ file, text: fs.readFileSync(file, 'utf8') }));

/** Packages only one folder may import. */
const OWNED_PACKAGES: Record<string, string[]> = {
  pkcs11js: ['master/pkcs11'],
  'better-sqlite3': ['store'],
  pg: ['store'],
  pgpass: ['store'],
  chalk: ['cli'],
  '@inquirer/input': ['cli'],
  '@inquirer/password': ['cli'],
  uqr: ['cli'],
  'cli-table3': ['cli'],
  commander: ['cli'],
  maxmind: ['gateway/source-labels.ts'],
  'cli-progress': ['cli'],
  'age-encryption': ['kernel/age.ts'],
  ioredis: ['gateway/shared-rate-limit.ts'],
};

describe('layers', () => {
  it('no import in src/ points up a layer or across master/store', () => {
    expect(violations(sources())).toEqual([]);
  });

  it('the check fails on an upward import (domain → app) and on master → store', () => {
    const file = path.join(SRC, 'domain', 'example.ts');
    expect(violations([{ file, text: "import { issueKey } from '../app/keys.js';" }])).toHaveLength(1);
    expect(violations([{ file: path.join(SRC, 'master', 'x.ts'), text: "import type { DB } from '../store/sqlite.js';" }])).toHaveLength(1);
    expect(violations([{ file: path.join(SRC, 'kernel', 'x.ts'), text: "const m = await import('../cli/main.js');" }])).toHaveLength(1);
    expect(violations([{ file: path.join(SRC, 'cli', 'x.ts'), text: "import { issueKey } from '../app/keys.js';" }])).toEqual([]);
  });

  it('each third-party package with a single owner is imported only there', () => {
    const bad: string[] = [];
    for (const { file, text } of sources()) {
      const rel = path.relative(SRC, file);
      for (const spec of importsOf(text)) {
        const owners = OWNED_PACKAGES[spec];
        if (owners && !owners.some((o) => rel.startsWith(o))) bad.push(`${rel} imports ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });

  it('process control stays in cli/: no process.exit or signal handler below it', () => {
    const bad: string[] = [];
    for (const { file, text } of sources()) {
      const rel = path.relative(SRC, file);
      if (rel.startsWith('cli' + path.sep)) continue;
      if (/process\.exit\(|process\.(on|once)\(\s*'SIG/.test(text)) bad.push(rel);
    }
    expect(bad).toEqual([]);
  });
});
