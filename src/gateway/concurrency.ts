/**
 * Requests in progress per key. A token bucket limits how often a key may start requests, not how
 * many it may hold open: one key under its rate limit could keep hundreds of server-sent-event
 * streams open and take every upstream socket, delaying every other key. A slot is taken before
 * the body is read and given back when the response closes (finished, failed or aborted), so a
 * key holds at most `limit` requests at any moment, streams included.
 */

export class ConcurrencyLimiter {
  readonly #open = new Map<string, number>();

  /** A release function (idempotent), or null when `key` already holds `limit` requests. */
  acquire(key: string, limit: number): (() => void) | null {
    const n = this.#open.get(key) ?? 0;
    if (n >= limit) return null;
    this.#open.set(key, n + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.#open.get(key) ?? 1) - 1;
      if (left > 0) this.#open.set(key, left);
      else this.#open.delete(key);
    };
  }

  /** Requests `key` holds now. */
  held(key: string): number {
    return this.#open.get(key) ?? 0;
  }
}
