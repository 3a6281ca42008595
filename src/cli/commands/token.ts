import type { Command } from 'commander';
import { keyIdArg } from '../key-id.js';
import { ctxOf } from '../context.js';
import { withUnsealed } from '../session.js';
import { withUnsealOptions } from '../secrets.js';
import { line, printJson } from '../render.js';
import { parseDuration } from '../../kernel/duration.js';
import { UsageError } from '../../kernel/errors.js';
import { issueKeyToken, JWT_MAX_TTL_MS } from '../../gateway/jwt.js';

export function register(program: Command): void {
  const token = program.command('token').description('short-lived bearer tokens (HS256 JWT) for a key');
  const issue = token
    .command('issue <id>')
    .description('mint a short-lived HS256 JWT (kid = key id, scope deepseek_api) that dsk serve accepts as a bearer token')
    .option('--ttl <duration>', 'lifetime, at most 24h', '15m');
  withUnsealOptions(issue)
    .addHelpText('after', '\nExamples:\n  dsk token issue 3f2a9c1b7e4d --ttl 15m\n  TOKEN=$(dsk token issue 3f2a9c1b7e4d --ttl 1h --json | jq -r .token)')
    .action(async (id: string, o, c: Command) => {
      const ctx = ctxOf(c);
      keyIdArg(id);
      const ttl = parseDuration(o.ttl, '--ttl');
      if (ttl > JWT_MAX_TTL_MS) throw new UsageError('ERR_TOKEN_TTL', '--ttl is at most 24h: tokens are meant to be short-lived', { hint: 'issue a new token when it expires' });
      const t = await withUnsealed(ctx, o, { permission: 'key.manage' }, (h) => issueKeyToken(h, id, ttl));
      if (ctx.json) return printJson(t);
      line(t.token);
      process.stderr.write(`dsk: token for key ${t.key_id}, expires ${t.expires_at}\n`);
    });
}
