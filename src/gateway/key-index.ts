/**
 * The gateway's in-memory view of the keys table. Verifying a request never touches the store: it
 * looks the key id up here. Changes made by other processes (revocation, rotation, emergency) are
 * picked up by polling the store's change marker (`store.keys.version()`, SQLite's
 * `PRAGMA data_version`) every 250 ms; it changes only when another connection commits, so the poll
 * costs one tiny query and a reload happens only after a real change. A revocation is therefore
 * enforced within about 250 ms (the brief asks for 1 s). An engine that pushes changes
 * (PostgreSQL LISTEN/NOTIFY, store.watchKeys) triggers the poll at once; the timer stays as the
 * fallback for a lost notification connection.
 */
import type { Home } from '../app/home.js';
import { openSigningSecret, type KeyRow } from '../domain/key.js';
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
  #version: number | null = null;
  #timer: NodeJS.Timeout | null = null;
  #polling = false;
  #again = false;
  #unwatch: (() => Promise<void>) | null = null;
  reloads = 0;
  /** when the store last answered a poll or a reload (epoch ms): the age of what is in memory */
  lastGoodAt = 0;
  /** whether the last poll failed (the store is unreachable or locked) */
  failing = false;

  private constructor(
    private readonly home: Home,
    private readonly onReload?: (n: number) => void,
  ) {}

  /** The index of a home's keys, loaded. */
  static async load(home: Home, onReload?: (n: number) => void): Promise<KeyIndex> {
    const index = new KeyIndex(home, onReload);
    await index.reload();
    return index;
  }

  async reload(): Promise<void> {
    // The marker is read before the rows: a commit in between makes the next poll reload again,
    // never miss a change.
    const version = await this.home.store.keys.version();
    const next = new Map<string, IndexedKey>();
    for (const row of await this.home.store.keys.all()) {
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
    this.#version = version;
    this.lastGoodAt = Date.now();
    this.reloads++;
    this.onReload?.(next.size);
  }

  /** Reloads when another connection has committed since the last look. */
  async poll(): Promise<boolean> {
    try {
      const started = Date.now();
      if ((await this.home.store.keys.version()) === this.#version) {
        this.lastGoodAt = started;
        this.failing = false;
        return false;
      }
      await this.reload();
      this.failing = false;
      return true;
    } catch (e) {
      this.failing = true;
      throw e;
    }
  }

  start(intervalMs = POLL_MS): void {
    this.#timer = setInterval(() => this.#tick(), intervalMs);
    this.#timer.unref();
    // Where the store pushes key changes (PostgreSQL NOTIFY), reload at once; the poll stays as the fallback.
    this.home.store
      .watchKeys?.(() => this.#tick())
      .then((unwatch) => (this.#timer ? (this.#unwatch = unwatch) : void unwatch()))
      .catch(() => {});
  }

  /** One poll at a time; a change pushed while one runs polls again right after it. */
  #tick(): void {
    if (this.#polling) {
      this.#again = true;
      return;
    }
    this.#polling = true;
    this.#again = false;
    this.poll()
      .catch(() => {
        // a locked or briefly unreadable store: keep the last good view and try again
      })
      .finally(() => {
        this.#polling = false;
        if (this.#again && this.#timer) this.#tick();
      });
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    void this.#unwatch?.();
    this.#unwatch = null;
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
