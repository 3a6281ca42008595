#!/usr/bin/env node
// Entry point kept tiny: everything else is loaded lazily by the command that needs it.
// `dsk --version` is answered without loading the CLI framework (scripts call it to probe dsk).
const args = process.argv.slice(2);
if (args.length === 1 && (args[0] === '--version' || args[0] === '-V')) {
  import('../dist/cli/version.js').then((m) => process.stdout.write(`${m.VERSION}\n`));
} else {
  import('../dist/cli/main.js').then((m) => m.main(args));
}
