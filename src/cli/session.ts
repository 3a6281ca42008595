/**
 * Opens a home for one command and always closes it (wiping keys), also on errors.
 * Every command states the permission it needs here: the one place operator checks hook in
 * (src/app/operators.ts). In a fresh home (no enrolled admin) the checks are off: see
 * docs/operators.md, "Bootstrap".
 */
import { openHome, openUnsealed, type Home } from '../app/home.js';
import type { Permission } from '../domain/roles.js';
import { checkOperator, verifyOperatorOtp, type Decision } from '../app/operators.js';
import { canPrompt, unsealInputs, type SecretFlags } from './secrets.js';
import type { Ctx } from './context.js';
import type { UnsealInputs } from '../master/unseal.js';

export interface Access {
  /** The permission of the seed's matrix this command needs (checked against the operator). */
  permission: Permission | 'admin' | null;
  /** Sensitive commands (rotation, revocation, export, operator and policy changes) need a second factor. */
  sensitive?: boolean;
  /**
   * May run unattended (cron, systemd timer) with no operator present to give a second factor:
   * set only on idempotent, policy-driven jobs such as `rotate --due`.
   */
  automationAllowed?: boolean;
  readonly?: boolean;
}

/**
 * Operators whose one-time code was accepted in this process. A command that opens the home twice
 * (check, then act) asks for one code, not two; a code is single-use, so asking again would fail.
 */
const approved = new Set<string>();

function needsCode(ctx: Ctx, d: Decision): boolean {
  return d.mode === 'enforced' && d.needsOtp && !approved.has(ctx.actor);
}

/** The operator's one-time code: --otp, DSK_OTP, or a prompt on a terminal; null (never a hang) otherwise. */
export async function otpCode(ctx: Ctx, message = `one-time code for operator ${ctx.actor}:`): Promise<string | null> {
  const given = ctx.otp ?? process.env.DSK_OTP;
  if (given) return given;
  if (!canPrompt()) return null;
  const { default: input } = await import('@inquirer/input');
  return input({ message }, { output: process.stderr });
}

export async function withHome<T>(ctx: Ctx, access: Access, fn: (h: Home) => T | Promise<T>): Promise<T> {
  const h = await openHome(ctx.home, ctx.env, { readonly: access.readonly });
  let d: Decision;
  try {
    d = await checkOperator(h, ctx.actor, access);
  } catch (e) {
    await h.close();
    throw e;
  }
  if (needsCode(ctx, d)) {
    // The TOTP secret is sealed under the master key: a sensitive command must unseal to check it.
    await h.close();
    return withUnsealed(ctx, {}, access, fn);
  }
  try {
    return await fn(h);
  } finally {
    await h.close();
  }
}

/** `inputs` replaces the unseal inputs read from `flags` (serve --workers keeps a copy for its workers). */
export async function withUnsealed<T>(ctx: Ctx, flags: SecretFlags, access: Access, fn: (h: Home) => T | Promise<T>, inputs?: UnsealInputs): Promise<T> {
  // Role checks first, so a refused operator costs the custodians no passphrase. Opened writable
  // (it writes nothing unless it refuses) so a hot journal left by a killed run is rolled back.
  const pre = await openHome(ctx.home, ctx.env);
  let d: Decision;
  try {
    d = await checkOperator(pre, ctx.actor, access);
  } finally {
    await pre.close();
  }
  const h = await openUnsealed(ctx.home, ctx.env, inputs ?? unsealInputs(flags));
  try {
    if (needsCode(ctx, d)) {
      await verifyOperatorOtp(h, ctx.actor, await otpCode(ctx), 'command', access.permission ?? 'none');
      approved.add(ctx.actor);
    }
    return await fn(h);
  } finally {
    await h.close();
  }
}

/**
 * For a command that unseals by its own means (`hsm recover` rebuilds the master key from recovery
 * fragments because the token is gone): the role checks run on the sealed home before anyone is
 * asked for a passphrase; the one-time code, whose secret is sealed under the master key, is
 * checked by `approve`, which the command hands to the use case to call with the home it unsealed.
 */
export async function withSealedHome<T>(ctx: Ctx, access: Access, fn: (h: Home, approve: (unsealed: Home) => Promise<void>) => Promise<T>): Promise<T> {
  const h = await openHome(ctx.home, ctx.env);
  try {
    const d = await checkOperator(h, ctx.actor, access);
    return await fn(h, async (unsealed) => {
      if (!needsCode(ctx, d)) return;
      await verifyOperatorOtp(unsealed, ctx.actor, await otpCode(ctx), 'command', access.permission ?? 'none');
      approved.add(ctx.actor);
    });
  } finally {
    await h.close();
  }
}

/** Admin-only commands that change operators or policy: a second factor is always needed. */
export const ADMIN_SENSITIVE = { permission: 'admin', sensitive: true } as const;

/** Checks arguments against the home (read-only) before anyone is asked for a passphrase or code. */
export async function preflight(ctx: Ctx, fn: (h: Home) => void | Promise<void>): Promise<void> {
  const h = await openHome(ctx.home, ctx.env, { readonly: true });
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}
