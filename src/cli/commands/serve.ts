import type { Command } from 'commander';
import { ctxOf } from '../context.js';
import { withUnsealed } from '../session.js';
import { capturingInputs, inputsFromPrimary, isWorker, onDrainRequest, startWorkers, tellPrimary } from '../serve-workers.js';
import { openUnsealed } from '../../app/home.js';
import { UnavailableError } from '../../kernel/errors.js';
import type { GatewayOptions } from '../../gateway/options.js';
import type { Ctx } from '../context.js';
import { onHangup, takeNextSignal } from '../signals.js';
import { readSecretFile, unsealInputs, withUnsealOptions } from '../secrets.js';
import { printJson } from '../render.js';
import { loadConfig } from '../../store/config-file.js';
import { gatewayOptions, startGateway, type GatewayOverrides } from '../../gateway/server.js';
import { checkMonitoringFiles } from '../../gateway/monitoring.js';
import { parsePositiveInt } from '../../kernel/duration.js';
import { UsageError } from '../../kernel/errors.js';
import { AccessLog } from '../../gateway/access-log.js';

/** Each gateway option's flag has the option's name in kebab case: maxBody is --max-body. */
function flagOf(option: string): string {
  return `--${option.replace(/[A-Z]/g, (x) => '-' + x.toLowerCase())}`;
}

export function register(program: Command): void {
  const cmd = program
    .command('serve')
    .description('run the authenticating gateway in front of an OpenAI-compatible upstream (vLLM, SGLang, Ollama, llama.cpp)')
    .option('--upstream <url>', 'the model server, e.g. http://127.0.0.1:11434 (or gateway.upstream in dsk.json)')
    .option('--listen <host:port>', 'address to listen on (default 127.0.0.1:8080; port 0 picks one)')
    .option('--require-signature', 'require X-Timestamp/X-Nonce/X-Signature on every request')
    .option('--allow-legacy-signature', "also accept the seed's weaker sha256(timestamp+method+path+key+secret)")
    .option('--max-body <bytes>', 'largest request body; larger gets 413 (default 1048576)')
    .option('--rps <n>', 'per-key requests per second (default 50; per-key options override)')
    .option('--burst <n>', 'per-key burst (default 100)')
    .option('--max-failures <n>', 'authentication failures per source address before it is blocked (default 10)')
    .option('--failure-window <duration>', 'window for counting failures (default 60s)')
    .option('--block-for <duration>', 'how long a brute-forcing address stays blocked (default 5m)')
    .option('--ipv6-prefix <bits>', 'IPv6 addresses count as their network of this many bits for blocking (default 64)')
    .option('--key-max-failures <n>', 'failures naming one key, from any address, before it is reported as under attack (default 100)')
    .option('--max-concurrent <n>', 'requests one key may have in progress, streams included (default 16; per-key options override)')
    .option('--body-timeout <duration>', 'a request body must arrive within this (default 30s)')
    .option('--max-buffered <bytes>', 'all request bodies being read at once, together (default 67108864)')
    .option('--max-connections <n>', 'open connections in total (default 4096)')
    .option('--max-connections-per-ip <n>', 'open connections from one address (default 256)')
    .option('--trust-proxy', 'take the client address from the last X-Forwarded-For entry (only behind your own proxy)')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
    .option('--tls-key <file>', 'private key for --tls-cert (PEM)')
    .option('--client-ca <file>', 'require client certificates signed by this CA (mutual TLS)')
    .option('--upstream-key-file <file>', 'a static key the upstream itself expects (vLLM --api-key), sent as Bearer')
    .option('--drain <duration>', 'on SIGTERM, wait this long for in-flight requests (default 30s)')
    .option('--access-log <format>', 'one line per request (time, key id, route, status, latency, bytes, source) on stdout; format: json')
    .option('--access-log-file <file>', 'write the access log to this file instead (0600, appended; reopened on SIGHUP for logrotate)')
    .option('--redis-url <url>', 'share per-key rate limits with every gateway through this Redis (password: DSK_REDIS_PASSWORD)')
    .option('--cache-ttl <duration>', 'serve keys in memory this long while the store is unreachable, then 503 (default and most 5m)')
    .option('--workers <n>', 'run N gateway processes behind the one port (one per core; default 1)');
  withUnsealOptions(cmd)
    .addHelpText(
      'after',
      '\nDefaults may also live in dsk.json under "gateway" (upstream, listen, rate_limit, brute_force,\nroutes, require_signature, max_body, max_concurrent, body_timeout, max_buffered, max_connections,\nmax_connections_per_ip, tls_cert, tls_key, client_ca, trust_proxy, drain, redis_url, cache_ttl).\nSee docs/gateway.md.\n\nExamples:\n  DSK_PASSPHRASE_FILES=a.pass:b.pass:c.pass dsk serve --upstream http://127.0.0.1:11434\n  dsk serve --upstream http://10.0.0.5:8000 --listen 0.0.0.0:8443 --tls-cert gw.crt --tls-key gw.key --client-ca ca.crt --pin-file pin.txt\n  dsk serve --upstream http://127.0.0.1:8000 --listen 0.0.0.0:8080 --workers 4 --passphrase-file a.pass --passphrase-file b.pass --passphrase-file c.pass',
    )
    .action(async (o, c: Command) => {
      const ctx = ctxOf(c);
      const flags: GatewayOverrides = { ...o };
      for (const f of ['maxBody', 'rps', 'burst', 'maxFailures', 'ipv6Prefix', 'keyMaxFailures', 'maxConcurrent', 'maxBuffered', 'maxConnections', 'maxConnectionsPerIp'] as const) if (o[f] !== undefined) flags[f] = parsePositiveInt(o[f], flagOf(f));
      // Reject bad flags and config before asking anyone for a passphrase. A value from a flag is
      // named by its flag, one from dsk.json by its key there.
      const config = loadConfig(ctx.home);
      const opts = gatewayOptions(config.gateway, flags, flagOf);
      checkMonitoringFiles(config); // GeoIP databases, webhook secret
      if (process.env.DSK_REDIS_PASSWORD) opts.redisPassword = process.env.DSK_REDIS_PASSWORD;
      if (o.upstreamKeyFile) opts.upstreamAuthorization = `Bearer ${readSecretFile(o.upstreamKeyFile, 'upstream key').toString()}`;
      const workers = o.workers === undefined ? 1 : parsePositiveInt(o.workers, '--workers');
      // The primary of --workers N serves nothing itself: each worker opens the access log (appends are whole lines).
      const accessLog = workers > 1 && !isWorker() ? null : openAccessLog(o.accessLog, o.accessLogFile);
      // SIGHUP must not end the gateway (systemctl reload sends it), with or without a log file.
      const stopHangup = onHangup(() => {
        try {
          accessLog?.reopen();
        } catch (e) {
          process.stderr.write(`dsk: warning: cannot reopen the access log (${(e as Error).message}); still writing to the old file\n`);
        }
      });
      if (isWorker()) return serveAsWorker(ctx, { ...opts, rateShare: 1 / workers }, accessLog);
      if (workers > 1) return servePrimary(ctx, o, opts, workers);
      await withUnsealed(ctx, o, { permission: 'key.manage' }, async (h) => {
        const gw = await startGateway(h, opts, undefined, { accessLog: accessLog ?? undefined });
        const msg = { url: gw.url, upstream: opts.upstream, keys: gw.index.all().length, pid: process.pid };
        // With the access log on stdout, stdout carries only its JSON lines: this goes to stderr.
        const logOnStdout = !!accessLog && !accessLog.file;
        if (ctx.json && !logOnStdout) printJson(msg);
        else if (ctx.json) process.stderr.write(JSON.stringify(msg) + '\n');
        else (logOnStdout ? process.stderr : process.stdout).write(`dsk: gateway listening on ${gw.url} → ${opts.upstream} (${msg.keys} keys)\n`);
        // The first SIGTERM or SIGINT drains; a second one interrupts (src/cli/signals.ts).
        await new Promise<void>((resolve) => {
          takeNextSignal((sig) => {
            process.stderr.write(`dsk: ${sig}: draining in-flight requests\n`);
            gw.close().then(resolve, resolve);
          });
        });
      }).finally(() => {
        stopHangup();
        accessLog?.close();
      });
      // Only now, after withUnsealed closed the home: the master key is closed (a PKCS#11 module finalized).
      process.stderr.write('dsk: gateway stopped; usage counters flushed and the master key closed\n');
    });
}

/** The access log asked for, opened now so a path that cannot be written fails before anyone unseals. */
function openAccessLog(format: string | undefined, file: string | undefined): AccessLog | null {
  if (format !== undefined && format !== 'json') throw new UsageError('ERR_ACCESS_LOG_FORMAT', `invalid --access-log '${format}': the format is json`);
  let warned = false;
  const warn = (e: Error) => {
    if (!warned) process.stderr.write(`dsk: warning: access log lines lost: ${e.message}\n`);
    warned = true;
  };
  if (file !== undefined) return AccessLog.toFile(file, warn);
  return format ? AccessLog.toStdout() : null;
}

/** The primary of --workers N: checks the operator and unseals once, then runs N workers until a signal. */
async function servePrimary(ctx: Ctx, o: Record<string, unknown>, opts: GatewayOptions, workers: number): Promise<void> {
  const cap = capturingInputs(unsealInputs(o));
  let pool;
  try {
    await withUnsealed(ctx, o, { permission: 'key.manage' }, () => undefined, cap.inputs);
    pool = await startWorkers(workers, cap.captured(), (line) => process.stderr.write(line));
  } finally {
    cap.wipe();
  }
  const msg = { url: pool.url, upstream: opts.upstream, keys: pool.keys, pid: process.pid, workers: pool.pids };
  if (ctx.json) printJson(msg);
  else process.stdout.write(`dsk: gateway listening on ${pool.url} → ${opts.upstream} (${msg.keys} keys, ${workers} workers)\n`);
  let signalled = false;
  const release = takeNextSignal((sig) => {
    signalled = true;
    process.stderr.write(`dsk: ${sig}: draining in-flight requests in ${workers} workers\n`);
    void pool.drain();
  });
  await pool.exited;
  release();
  if (!signalled) throw new UnavailableError('ERR_WORKERS_GONE', `every gateway worker exited (${workers} started)`, { hint: 'the workers reported why above; start dsk serve again' });
  process.stderr.write('dsk: gateway stopped; every worker flushed its usage counters and closed the master key\n');
}

/** One worker of --workers N: unseals with what the primary sends, serves until asked to drain. */
async function serveAsWorker(ctx: Ctx, opts: GatewayOptions, accessLog: AccessLog | null): Promise<void> {
  try {
    const h = await openUnsealed(ctx.home, ctx.env, await inputsFromPrimary());
    try {
      const gw = await startGateway(h, opts, undefined, { accessLog: accessLog ?? undefined });
      tellPrimary({ type: 'ready', url: gw.url, keys: gw.index.all().length });
      await new Promise<void>((resolve) => {
        const drain = () => void gw.close().then(resolve, resolve);
        onDrainRequest(drain);
        takeNextSignal(drain);
      });
    } finally {
      await h.close();
    }
  } catch (e) {
    tellPrimary({ type: 'failed', message: (e as Error).message, exitCode: (e as { exitCode?: number }).exitCode ?? 1 });
    throw e;
  }
  process.disconnect?.();
}
