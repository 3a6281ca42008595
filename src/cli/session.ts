/**
 * Opens a home for one command and always closes it (wiping keys), also on errors.
 * Every command states the permission it needs here: the one place operator checks hook in.
 */
import { openHome, openUnsealed, type Home } from '../core/home.js';
import type { Permission } from '../core/config.js';
import { unsealInputs, type SecretFlags } from './secrets.js';
import type { Ctx } from './context.js';

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

export async function withHome<T>(ctx: Ctx, access: Access, fn: (h: Home) => T | Promise<T>): Promise<T> {
  const h = openHome(ctx.home, ctx.env, { readonly: access.readonly });
  try {
    return await fn(h);
  } finally {
    await h.close();
  }
}

export async function withUnsealed<T>(ctx: Ctx, flags: SecretFlags, access: Access, fn: (h: Home) => T | Promise<T>): Promise<T> {
  const h = await openUnsealed(ctx.home, ctx.env, unsealInputs(flags));
  try {
    return await fn(h);
  } finally {
    await h.close();
  }
}
