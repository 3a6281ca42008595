/** An operator of the CLI as the store keeps it (see src/app/operators.ts for the rules that use it). */

export interface OperatorRow {
  name: string;
  role: string;
  /** TOTP secret sealed under the home's seal key, the operator name bound in as associated data */
  totp_sealed: Buffer | null;
  /** when the operator proved the authenticator holds the secret; null while pending */
  enrolled_at: number | null;
  created_at: number;
  created_by: string;
  /** the newest accepted TOTP time step: a code of this step or an earlier one is a replay */
  last_otp_step: number | null;
  lock_until: number | null;
}

export type SecondFactor = 'enrolled' | 'pending' | 'none';

export function secondFactor(r: OperatorRow): SecondFactor {
  return r.totp_sealed == null ? 'none' : r.enrolled_at == null ? 'pending' : 'enrolled';
}

const NAME_RE = /^[\w.@+-]{1,64}$/;

export function isOperatorName(name: string): boolean {
  return NAME_RE.test(name);
}
