import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { withUnsealed } from '../session.js';
import { collect, withUnsealOptions } from '../secrets.js';
import { keyOptionsFromFlags, policyFromFlags } from '../keyopts.js';
import fs from 'node:fs';
import { assertOutFree, showIssued, writeIssuedFile } from '../issued.js';
import { issueKey, resolveSpec, type IssuedKey } from '../../app/keys.js';
import { openHome } from '../../app/home.js';

export function register(program: Command): void {
  const cmd = program
    .command('keygen')
    .description("issue an API key (derived with the seed's generate_api_key) and a signing secret, shown once")
    .requiredOption('--name <name>', 'consumer name, e.g. chat-frontend')
    .requiredOption('--role <role>', 'admin | developer | auditor | automation (or a custom role)')
    .option('--owner <owner>', 'accountable person or team')
    .option('--expires <duration>', 'expire after this long (30d, 12h) or never')
    .option('--rotate-every <duration>', 'scheduled rotation period (default from policy: 90d) or never')
    .option('--max-uses <n>', 'rotate after this many calls (default from policy: 100000) or never')
    .option('--out <file>', 'write the key and secret to this new file (0600) instead of stdout')
    .option('--require-signature', 'dsk serve refuses this key without a request signature')
    .option('--allow-cidr <cidr>', 'dsk serve accepts this key only from these addresses (repeatable)', collect, [])
    .option('--rate-limit <rps[:burst]>', "dsk serve's per-key rate limit for this key, e.g. 5:20")
    .option('--max-concurrent <n>', 'requests this key may have in progress at once in dsk serve, streams included')
    .option('--models <list>', "only these models, * for any characters: 'deepseek-r1,deepseek-v3*'")
    .option('--token-quota <amount/period>', 'tokens per UTC day or month, e.g. 2M/month')
    .option('--request-quota <amount/period>', 'requests per UTC day or month, e.g. 10k/day');
  withUnsealOptions(cmd)
    .addHelpText('after', '\nExamples:\n  dsk keygen --name chat-frontend --role developer --owner web-team --expires 30d\n  dsk keygen --name nightly-batch --role automation --out batch.key --json\n  dsk keygen --name office-bot --role automation --require-signature --allow-cidr 10.0.0.0/8 --rate-limit 5:20\n  dsk keygen --name r1-team --role developer --models \'deepseek-r1,deepseek-v3*\' --token-quota 2M/month --request-quota 10k/day')
    .action(async (o, c: Command) => {
      const ctx = ctxOf(c);
      const options = keyOptionsFromFlags(o);
      const spec = { name: o.name, role: o.role, owner: o.owner, ...policyFromFlags(o), ...(Object.keys(options).length ? { options: options as Record<string, unknown> } : {}) };
      // Reject a bad role or name before asking anyone for a passphrase.
      const pre = await openHome(ctx.home, ctx.env, { readonly: true });
      try {
        resolveSpec(pre, spec);
      } finally {
        await pre.close();
      }
      assertOutFree(o.out);
      // --out is written inside the issuing transaction: if the file cannot be written, no key exists.
      let wrote = false;
      const deliver = o.out
        ? (issued: IssuedKey) => {
            writeIssuedFile(o.out, issued);
            wrote = true;
          }
        : undefined;
      let k: IssuedKey;
      try {
        k = await withUnsealed(ctx, o, { permission: 'key.manage' }, (h) => issueKey(h, spec, { deliver, file: o.out }));
      } catch (e) {
        if (wrote) fs.rmSync(o.out, { force: true }); // the commit failed after the file was written
        throw e;
      }
      showIssued(ctx, k, o.out, { alreadyWritten: true });
    });
}
