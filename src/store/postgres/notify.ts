/**
 * Key changes pushed to the gateways: migration 7's trigger runs `pg_notify('dsk_keys_changed')` on
 * every change to keys except usage counting, and each gateway LISTENs on a connection of its own.
 * A lost connection is re-established a second later and reported as a possible change (one may
 * have been missed meanwhile); the gateway's poll of keys_version covers the gap either way.
 */
import type pg from 'pg';

export const KEYS_CHANNEL = 'dsk_keys_changed';

export async function listenForKeyChanges(connect: () => Promise<pg.PoolClient>, closed: () => boolean, onChange: () => void): Promise<() => Promise<void>> {
  let client: pg.PoolClient | null = null;
  let stopped = false;
  let retry: NodeJS.Timeout | null = null;
  const later = () => {
    if (!stopped) (retry = setTimeout(() => void listen(), 1000)).unref();
  };
  const listen = async (): Promise<void> => {
    if (stopped || closed()) return;
    let c: pg.PoolClient | null = null;
    try {
      c = await connect();
      const mine = c;
      const lost = (e?: Error) => {
        if (client !== mine) return;
        client = null;
        mine.release(e ?? new Error('connection lost'));
        onChange();
        later();
      };
      c.on('notification', (m) => m.channel === KEYS_CHANNEL && onChange());
      c.on('error', lost);
      c.on('end', () => lost());
      await c.query(`LISTEN ${KEYS_CHANNEL}`);
      client = c;
    } catch (e) {
      if (c && client !== c) c.release(e as Error);
      later();
    }
  };
  await listen();
  return async () => {
    stopped = true;
    if (retry) clearTimeout(retry);
    const c = client;
    client = null;
    if (c) {
      await c.query('UNLISTEN *').catch(() => {});
      c.release();
    }
  };
}
