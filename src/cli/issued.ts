/** Shows a newly issued key once: to a 0600 file (--out) or to stdout. */
import fs from 'node:fs';
import { ConflictError } from '../kernel/errors.js';
import { writePrivateFile } from '../kernel/files.js';
import type { IssuedKey } from '../app/keys.js';
import type { Ctx } from './context.js';
import { line, paint, printJson } from './render.js';

/** Writes the issued key to a new 0600 file; refuses (exit 6) an existing one. */
export function writeIssuedFile(out: string, k: IssuedKey): void {
  writePrivateFile(out, JSON.stringify(k, null, 2) + '\n', { exclusive: true });
}

/** Fails early (exit 6), before any unsealing, when --out names an existing file. */
export function assertOutFree(out: string | undefined): void {
  if (out && fs.existsSync(out)) throw new ConflictError('ERR_FILE_EXISTS', `${out} already exists`, { hint: 'choose another path or remove the file first' });
}

/** `alreadyWritten`: the caller wrote --out itself (inside the issuing transaction). */
export function showIssued(ctx: Ctx, k: IssuedKey, out?: string, opts: { alreadyWritten?: boolean } = {}): void {
  const c = paint(ctx);
  if (out) {
    if (!opts.alreadyWritten) writeIssuedFile(out, k);
    const { api_key: _k, api_secret: _s, ...pub } = k;
    if (ctx.json) return printJson({ ...pub, written_to: out });
    line(`${c.green('✓')} issued key ${c.bold(k.id)} (${k.name}, role ${k.role}); key and signing secret written to ${out} (0600)`);
    return;
  }
  if (ctx.json) return printJson(k);
  line(`${c.green('✓')} issued key ${c.bold(k.id)} (${k.name}, role ${k.role}${k.expires_at ? `, expires ${k.expires_at}` : ''})`);
  line(`  api key        ${k.api_key}`);
  line(`  signing secret ${k.api_secret}`);
  line(c.yellow('  shown once: store them now (dsk never stores the key itself)'));
}
