/**
 * Writes that ride along with the usage flush (usage-sink.ts → flush-worker.ts): audit rows the
 * gateway raises itself (ANOMALY, ALERT) and newly learned key sources. They commit in the same
 * transaction as the counters, off the request path; a failed flush gives them back for the next.
 * Bounded: past MAX rows waiting (a store that stays down), new rows are dropped and counted.
 */
import type { KeySourceRow } from '../store/store.js';

export interface SideRow {
  action: string;
  actor: string;
  source_ip: string | null;
  key_id: string | null;
  details: Record<string, unknown>;
}

export interface SideBatch {
  rows: SideRow[];
  sources: KeySourceRow[];
}

export class SideWrites {
  static readonly MAX = 10_000;
  #rows: SideRow[] = [];
  #sources: KeySourceRow[] = [];
  dropped = 0;

  audit(row: SideRow): void {
    if (this.#rows.length >= SideWrites.MAX) this.dropped++;
    else this.#rows.push(row);
  }

  learned(row: KeySourceRow): void {
    if (this.#sources.length >= SideWrites.MAX) this.dropped++;
    else this.#sources.push(row);
  }

  get size(): number {
    return this.#rows.length + this.#sources.length;
  }

  /** What is waiting, or null when nothing is. */
  take(): SideBatch | null {
    if (!this.size) return null;
    const b = { rows: this.#rows, sources: this.#sources };
    this.#rows = [];
    this.#sources = [];
    return b;
  }

  /** Puts a batch whose flush failed back in front, so order is kept. */
  restore(b: SideBatch): void {
    this.#rows = [...b.rows, ...this.#rows].slice(0, SideWrites.MAX);
    this.#sources = [...b.sources, ...this.#sources].slice(0, SideWrites.MAX);
  }
}
