/** The operators and operator_failures tables (keys.db): CLI operators, their sealed TOTP secrets and lockout. */
import type { OperatorRow } from '../../domain/operator.js';
import type { Statements } from './statements.js';

export class SqliteOperators {
  constructor(private readonly st: Statements) {}

  get(name: string): OperatorRow | undefined {
    return this.st.get('SELECT * FROM operators WHERE name = ?').get(name) as OperatorRow | undefined;
  }

  list(): OperatorRow[] {
    return this.st.get('SELECT * FROM operators ORDER BY name').all() as OperatorRow[];
  }

  countEnrolled(role: string): number {
    return (this.st.get('SELECT count(*) AS n FROM operators WHERE role = ? AND enrolled_at IS NOT NULL').get(role) as { n: number }).n;
  }

  insert(r: Pick<OperatorRow, 'name' | 'role' | 'totp_sealed' | 'created_at' | 'created_by'>): void {
    this.st
      .get('INSERT INTO operators (name, role, totp_sealed, enrolled_at, created_at, created_by, last_otp_step, lock_until) VALUES (?, ?, ?, NULL, ?, ?, NULL, NULL)')
      .run(r.name, r.role, r.totp_sealed, r.created_at, r.created_by);
  }

  remove(name: string): void {
    this.st.get('DELETE FROM operators WHERE name = ?').run(name);
    this.#forget(name);
  }

  acceptCode(name: string, step: number): void {
    this.st.get('UPDATE operators SET last_otp_step = ? WHERE name = ?').run(step, name);
    this.#forget(name);
  }

  recordFailure(name: string, at: number, forgetThrough: number): number {
    this.st.get('INSERT INTO operator_failures (name, at) VALUES (?, ?)').run(name, at);
    this.st.get('DELETE FROM operator_failures WHERE name = ? AND at <= ?').run(name, forgetThrough);
    return (this.st.get('SELECT count(*) AS n FROM operator_failures WHERE name = ?').get(name) as { n: number }).n;
  }

  lock(name: string, until: number): void {
    this.st.get('UPDATE operators SET lock_until = ? WHERE name = ?').run(until, name);
    this.#forget(name);
  }

  confirmEnrolment(name: string, at: number): void {
    this.st.get('UPDATE operators SET enrolled_at = ? WHERE name = ?').run(at, name);
  }

  resetSecret(name: string, totpSealed: Buffer): void {
    this.st.get('UPDATE operators SET totp_sealed = ?, enrolled_at = NULL, last_otp_step = NULL, lock_until = NULL WHERE name = ?').run(totpSealed, name);
    this.#forget(name);
  }

  #forget(name: string): void {
    this.st.get('DELETE FROM operator_failures WHERE name = ?').run(name);
  }
}
