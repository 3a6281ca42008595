/** Shows a newly issued key once: to a 0600 file (--out) or to stdout. */
import { writePrivateFile } from '../core/files.js';
import type { IssuedKey } from '../core/keys.js';
import type { Ctx } from './context.js';
import { line, paint, printJson } from './render.js';

export function showIssued(ctx: Ctx, k: IssuedKey, out?: string): void {
  const c = paint(ctx);
  if (out) {
    writePrivateFile(out, JSON.stringify(k, null, 2) + '\n', { exclusive: true });
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
