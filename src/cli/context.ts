/** Global options (--home, --json, --no-color, --actor) resolved once per command. */
import os from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { defaultEnv, type Env } from '../app/home.js';
import { UsageError } from '../kernel/errors.js';

export interface Ctx {
  home: string;
  json: boolean;
  color: boolean;
  actor: string;
  env: Env;
  /** --otp / DSK_OTP: the operator's one-time code for a sensitive command. */
  otp?: string;
}

export function osUser(): string {
  try {
    return os.userInfo().username;
  } catch {
    return process.env.USER ?? 'unknown';
  }
}

export function resolveHome(opt: string | undefined): string {
  return path.resolve(opt ?? process.env.DSK_HOME ?? path.join(os.homedir(), '.dsk'));
}

export function ctxOf(cmd: Command): Ctx {
  const g = cmd.optsWithGlobals() as { home?: string; json?: boolean; color?: boolean; actor?: string; otp?: string };
  const actor = g.actor ?? process.env.DSK_ACTOR ?? osUser();
  if (!/^[\w.@+-]{1,64}$/.test(actor)) throw new UsageError('ERR_ACTOR', `invalid --actor '${actor}': use letters, digits and . _ @ + - (at most 64)`);
  const color = g.color !== false && !process.env.NO_COLOR && !!process.stdout.isTTY;
  return { home: resolveHome(g.home), json: !!g.json, color, actor, env: defaultEnv(actor), otp: g.otp ?? process.env.DSK_OTP };
}
