import fs from 'node:fs';
import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { line, printJson } from '../render.js';
import { readSecretFile } from '../secrets.js';
import { UsageError } from '../../kernel/errors.js';
import { ioError } from '../../kernel/files.js';
import { parseApiKey } from '../../domain/key-text.js';
import { signHeaders } from '../../gateway/signature.js';

export function register(program: Command): void {
  program
    .command('sign')
    .description('print the X-Timestamp, X-Nonce and X-Signature headers for one request (see docs/gateway.md)')
    .requiredOption('--key-file <file>', "the key file written by dsk keygen --out (0600; '-' = stdin)")
    .option('--method <method>', 'HTTP method', 'POST')
    .requiredOption('--path <path>', 'path with query exactly as sent, e.g. /v1/chat/completions')
    .option('--body-file <file>', 'the exact request body (default: empty)')
    .addHelpText(
      'after',
      '\nThe key and secret come from the file, never from the command line. The Authorization header\n(Bearer <api_key>) is not printed; send it from your own secret store.\n\nExamples:\n  dsk sign --key-file chat.key --path /v1/chat/completions --body-file req.json\n  dsk sign --key-file chat.key --method GET --path /v1/models --json',
    )
    .action(async (o, c: Command) => {
      const ctx = ctxOf(c);
      const method = String(o.method).toUpperCase();
      if (!/^[A-Z]{1,16}$/.test(method)) throw new UsageError('ERR_HTTP_METHOD', `invalid --method '${o.method}'`);
      if (!o.path.startsWith('/') || /[\s]/.test(o.path)) throw new UsageError('ERR_HTTP_PATH', `invalid --path '${o.path}': must start with / and contain no spaces`);
      let k: { id?: string; api_key?: string; api_secret?: string };
      try {
        k = JSON.parse(readSecretFile(o.keyFile, 'key').toString());
      } catch (e) {
        if ((e as { exitCode?: number }).exitCode) throw e;
        throw new UsageError('ERR_KEY_FILE', `${o.keyFile} is not a key file (JSON as written by dsk keygen --out)`);
      }
      const p = parseApiKey(String(k.api_key ?? ''));
      if (!p.ok || typeof k.api_secret !== 'string' || !k.api_secret) throw new UsageError('ERR_KEY_FILE', `${o.keyFile} is not a key file (JSON with api_key and api_secret, as written by dsk keygen --out)`);
      let body: Buffer = Buffer.alloc(0);
      if (o.bodyFile) {
        try {
          body = fs.readFileSync(o.bodyFile);
        } catch (e) {
          throw ioError(e, o.bodyFile);
        }
      }
      const { Authorization: _a, ...h } = signHeaders({ apiKey: k.api_key!, apiSecret: k.api_secret, keyId: p.id, method, path: o.path, body });
      if (ctx.json) return printJson({ key_id: p.id, method, path: o.path, headers: h });
      for (const [name, v] of Object.entries(h)) line(`${name}: ${v}`);
    });
}
