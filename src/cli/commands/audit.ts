/**
 * dsk audit query | tail | verify | export | stats | archive. Thin: parse and check flags before
 * any I/O, call src/audit (and src/app for the archive), render. Reading commands are in
 * audit/read.ts, verify and archive in audit/integrity.ts, row rendering in audit/render.ts.
 */
import type { Command } from 'commander';
import { registerExport, registerQuery, registerStats, registerTail } from './audit/read.js';
import { registerArchive, registerVerify } from './audit/integrity.js';

export function register(program: Command): void {
  const audit = program.command('audit').description('read, follow, check, export and archive the hash-chained audit log');
  registerQuery(audit);
  registerTail(audit);
  registerVerify(audit);
  registerExport(audit);
  registerStats(audit);
  registerArchive(audit);
}
