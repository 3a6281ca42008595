/**
 * dsk top: a live view, refreshed every second, of a running gateway (--gateway URL, with an
 * auditor or admin key from --key-file or DSK_API_KEY; never from argv) or of the store. On a
 * terminal it draws on the alternate screen and `q` (or Ctrl-C) quits; otherwise, and with
 * --json, it prints one frame per refresh (JSON lines under --json) until --count frames or a signal.
 */
import type { Command } from 'commander';
import { ctxOf, type Ctx } from '../context.js';
import { withHome } from '../session.js';
import { takeNextSignal } from '../signals.js';
import { readSecretFile } from '../secrets.js';
import { parseDuration, parsePositiveInt } from '../../kernel/duration.js';
import { UsageError } from '../../kernel/errors.js';
import { parseApiKey } from '../../domain/key-text.js';
import { gatewayFrames, storeFrames, type TopFrame } from '../top/frame.js';
import { renderTop } from '../top/render.js';

function apiKeyFrom(file: string | undefined): string {
  let text = file ? readSecretFile(file, 'key').toString().trim() : (process.env.DSK_API_KEY ?? '').trim();
  if (!text) throw new UsageError('ERR_TOP_KEY', '--gateway needs an auditor or admin key', { hint: 'give --key-file FILE (as written by dsk keygen --out) or set DSK_API_KEY' });
  if (text.startsWith('{')) {
    try {
      text = String((JSON.parse(text) as { api_key?: unknown }).api_key ?? '');
    } catch {
      text = '';
    }
  }
  if (!parseApiKey(text).ok) throw new UsageError('ERR_TOP_KEY', `${file ?? 'DSK_API_KEY'} does not hold a dsk API key`, { hint: 'a key file written by dsk keygen --out, or the key text alone' });
  return text;
}

async function loop(ctx: Ctx, next: () => Promise<TopFrame>, intervalMs: number, count: number | null): Promise<void> {
  const tty = !ctx.json && !!process.stdout.isTTY;
  let stop = false;
  let wake: () => void = () => {};
  const quit = () => {
    stop = true;
    wake();
  };
  const onKey = (d: Buffer) => {
    const s = d.toString();
    if (s === 'q' || s === 'Q' || s === '\x03') quit();
  };
  // a signal ends the view like q does (the terminal is restored), with the signal's exit status
  const release = takeNextSignal((sig) => {
    process.exitCode = sig === 'SIGINT' ? 130 : 143;
    quit();
  });
  if (tty) {
    process.stdout.write('\x1b[?1049h\x1b[?25l');
    if (process.stdin.isTTY) {
      process.stdin.setRawMode(true);
      process.stdin.resume();
      process.stdin.on('data', onKey);
    }
  }
  try {
    for (let n = 0; !stop && (count === null || n < count); n++) {
      const f = await next();
      if (ctx.json) process.stdout.write(JSON.stringify(f) + '\n');
      else {
        const lines = renderTop(f, { width: process.stdout.columns ?? 80, color: ctx.color });
        if (tty) process.stdout.write('\x1b[H\x1b[2J' + lines.slice(0, Math.max(3, (process.stdout.rows ?? 40) - 1)).join('\n'));
        else process.stdout.write(lines.join('\n') + '\n\n');
      }
      if (count !== null && n + 1 >= count) break;
      await new Promise<void>((r) => {
        const t = setTimeout(r, intervalMs);
        wake = () => (clearTimeout(t), r());
      });
    }
  } finally {
    release();
    if (tty) {
      if (process.stdin.isTTY) {
        process.stdin.off('data', onKey);
        process.stdin.setRawMode(false);
        process.stdin.pause();
      }
      process.stdout.write('\x1b[?25h\x1b[?1049l');
    }
  }
}

export function register(program: Command): void {
  program
    .command('top')
    .description('live view: requests/s per key with a chart, status codes, tokens/s, top sources, alerts')
    .option('--gateway <url>', 'a running dsk serve (else: the store of --home)')
    .option('--key-file <file>', "auditor or admin key for --gateway (key file or key text; '-' = stdin; else DSK_API_KEY)")
    .option('--interval <duration>', 'refresh period', '1s')
    .option('--count <n>', 'stop after this many frames')
    .addHelpText('after', '\nq or Ctrl-C quits. --json prints one JSON object per refresh.\n\nExamples:\n  dsk top --gateway http://127.0.0.1:8080 --key-file auditor.key\n  dsk top                       # from the store: per-key requests, errors and tokens\n  dsk top --gateway http://gw:8080 --key-file auditor.key --json --count 10')
    .action(async (o, cmd: Command) => {
      const ctx = ctxOf(cmd);
      const intervalMs = parseDuration(String(o.interval), '--interval');
      const count = o.count === undefined ? null : parsePositiveInt(String(o.count), '--count');
      if (o.gateway) {
        let url: URL;
        try {
          url = new URL(String(o.gateway));
        } catch {
          throw new UsageError('ERR_GATEWAY_URL', `invalid --gateway '${o.gateway}': expected an http:// or https:// URL`);
        }
        if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError('ERR_GATEWAY_URL', `invalid --gateway '${o.gateway}': expected an http:// or https:// URL`);
        await loop(ctx, gatewayFrames(url.toString(), apiKeyFrom(o.keyFile)), intervalMs, count);
        // fetch keeps the gateway connection alive for seconds after the last frame: done is done
        process.exit(process.exitCode ?? 0);
      }
      await withHome(ctx, { permission: 'audit.view', readonly: true }, (h) => loop(ctx, storeFrames(h, () => ctx.env.clock.now()), intervalMs, count));
    });
}
