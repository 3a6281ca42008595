/**
 * The gateway's own read-only endpoints, behind the same authentication and roles as the model
 * routes: `GET /dsk/keys` (key.manage) lists every key's public view, never a key or secret;
 * `GET /dsk/audit` (audit.view) runs the audit query `dsk audit query` runs (audit/query.ts), with
 * the filters of auditFilterFromParams: action, key_id, source_ip, actor, since, until and limit
 * (at most 1000, default 100). `GET /dsk/stats` (audit.view) is the last minute of traffic for
 * `dsk top` (live-stats.ts).
 */
import type http from 'node:http';
import type { Home } from '../app/home.js';
import { keyView, listKeys } from '../app/keys.js';
import { auditFilterFromParams, queryAudit } from '../audit/query.js';
import { UsageError } from '../kernel/errors.js';
import { errorBody } from './refusals.js';
import type { LiveStats } from './live-stats.js';

async function auditRows(home: Home, params: URLSearchParams, now: number) {
  return (await queryAudit(home.store, auditFilterFromParams(params, now))).map((r) => {
    let details: unknown = r.details;
    try {
      details = JSON.parse(r.details);
    } catch {
      // keep the text: the chain covers the text, and audit verify reports an edit
    }
    return { seq: r.seq, ts: r.ts, action: r.action, actor: r.actor, source_ip: r.source_ip, key_id: r.key_id, details };
  });
}

export class AdminEndpoints {
  constructor(
    private readonly home: Home,
    private readonly live?: LiveStats,
  ) {}

  /** Answers an authorized request for a `GET /dsk/…` route. `target` is the request target (path and query). */
  async answer(res: http.ServerResponse, routeName: string, target: string, now: number): Promise<void> {
    const send = (status: number, body: string) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(body);
    };
    const params = () => new URL(target, 'http://gateway').searchParams;
    try {
      if (routeName === 'GET /dsk/keys') return send(200, JSON.stringify({ object: 'list', data: (await listKeys(this.home)).map(keyView) }));
      if (routeName === 'GET /dsk/stats' && this.live) return send(200, JSON.stringify(this.live.snapshot(now)));
      if (routeName === 'GET /dsk/audit') return send(200, JSON.stringify({ object: 'list', data: await auditRows(this.home, params(), now) }));
      // a route added under /dsk/ in dsk.json: nothing here answers it, and it is never proxied
      return send(404, errorBody(`unknown route ${routeName}`, 'invalid_request_error', 'unknown_route'));
    } catch (e) {
      if (e instanceof UsageError) return send(400, errorBody(e.message, 'invalid_request_error', 'invalid_filter'));
      throw e;
    }
  }
}
