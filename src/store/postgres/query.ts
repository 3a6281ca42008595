/** How a table module runs SQL: on the pool (reads) or on one transaction's client. */
export interface Q {
  rows<T = any>(sql: string, params?: unknown[]): Promise<T[]>;
  /** rows as arrays in column order (no object per row) */
  arrays<T = unknown[]>(sql: string, params?: unknown[]): Promise<T[]>;
  /** how many rows a write changed */
  run(sql: string, params?: unknown[]): Promise<number>;
}

export async function one<T>(q: Q, sql: string, params?: unknown[]): Promise<T | undefined> {
  return (await q.rows<T>(sql, params))[0];
}
