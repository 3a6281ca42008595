/**
 * The gateway's in-memory view of the keys table. Verifying a request never touches SQLite: it
 * looks the key id up here. Changes made by other processes (revocation, rotation, emergency) are
 * picked up by polling `PRAGMA data_version` every 250 ms; that pragma changes only when another
 * connection commits to keys.db, so the poll costs one tiny query and a reload happens only after
 * a real change. A revocation is therefore enforced within about 250 ms (the brief asks for 1 s).
 */
import type { Home } from '../app/home.js';
import type { KeyRow } from '../app/keys.js';
import { openSigningSecret } from '../app/keys.js';
import type { CidrList } from '../kernel/ip.js';
import { allowListOf, parseKeyOptions, type KeyOptions } from './key-options.js';

export interface IndexedKey {
  row: KeyRow;
  options: KeyOptions;
  allow: CidrList | null;
  /** opened lazily on the first signed request: most keys never sign */
  secret: string | null;
}

export const POLL_MS = 250;

export class KeyIndex {
  #keys = new Map<string, IndexedKey>();
  #version = -1;
  #timer: NodeJS.Timeout | null = null;
  #select;
  reloads = 0;

  constructor(
    private readonly home: Home,
    private readonly onReload?: (n: number) => void,
  ) {
    this.#select = home.db.prepare('SELECT * FROM keys');
    this.reload();
  }

  reload(): void {
    const next = new Map<string, IndexedKey>();
    for (const row of this.#select.all() as KeyRow[]) {
      const prev = this.#keys.get(row.id);
      const options = parseKeyOptions(row.options);
      next.set(row.id, {
        row,
        options,
        allow: allowListOf(options),
        // the secret of a key never changes; keep the opened copy across reloads
        secret: prev?.secret ?? null,
      });
    }
    this.#keys = next;
    this.#version = this.#dataVersion();
    this.reloads++;
    this.onReload?.(next.size);
  }

  #dataVersion(): number {
    return this.home.db.pragma('data_version', { simple: true }) as number;
  }

  /** Reloads when another connection has committed since the last look. */
  poll(): boolean {
    if (this.#dataVersion() === this.#version) return false;
    this.reload();
    return true;
  }

  start(intervalMs = POLL_MS): void {
    this.#timer = setInterval(() => {
      try {
        this.poll();
      } catch {
        // a locked or briefly unreadable store: keep the last good view and try again
      }
    }, intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }

  get(id: string): IndexedKey | undefined {
    return this.#keys.get(id);
  }

  secretOf(k: IndexedKey): string {
    if (k.secret === null) k.secret = openSigningSecret(this.home.requireUnsealed().sealKey, k.row);
    return k.secret;
  }

  all(): IndexedKey[] {
    return [...this.#keys.values()];
  }
}
