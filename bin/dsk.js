#!/usr/bin/env node
// Entry point kept tiny: everything else is loaded lazily by the command that needs it.
// `dsk --version` is answered without loading the CLI framework (scripts call it to probe dsk).
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  import('../dist/cli/version.js').then((m) => process.stdout.write(`${m.VERSION}\n`));
} else {
  // Key derivations (PBKDF2) run on libuv's pool, 4 threads by default; use every core on bigger
  // machines. Must be set before the pool's first use, hence here.
  const { availableParallelism } = await import('node:os');
  process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism()));
  import('../dist/cli/main.js').then((m) => m.main(args));
}
