/**
 * Caps on open connections, overall and per source address, so idle or half-open connections from
 * callers without a key cannot use up the process's file descriptors. A connection over a cap is
 * closed at once, before a byte of it is parsed. The per-address count is by the socket's peer:
 * behind a reverse proxy every connection comes from the proxy, so the per-address cap must then
 * be at least the proxy's connection pool (docs/gateway.md).
 */
import type net from 'node:net';
import type { Server } from 'node:net';

export interface ConnectionCaps {
  /** open connections in total */
  max: number;
  /** open connections from one peer address */
  perAddress: number;
}

export function capConnections(server: Server, caps: ConnectionCaps, onRefused: (reason: 'total' | 'address') => void): void {
  // node closes connections past maxConnections itself, and reports each with 'drop'
  server.maxConnections = caps.max;
  server.on('drop', () => onRefused('total'));
  const open = new Map<string, number>();
  server.on('connection', (socket: net.Socket) => {
    const addr = socket.remoteAddress ?? 'unknown';
    const n = open.get(addr) ?? 0;
    if (n >= caps.perAddress) {
      onRefused('address');
      socket.destroy();
      return;
    }
    open.set(addr, n + 1);
    socket.once('close', () => {
      const left = (open.get(addr) ?? 1) - 1;
      if (left > 0) open.set(addr, left);
      else open.delete(addr);
    });
  });
}
