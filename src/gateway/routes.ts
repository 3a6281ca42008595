/**
 * The route table: the permission a request needs. A route is "METHOD /path" or "* /path" (any
 * method); a trailing "/*" matches every longer path under the prefix, not the prefix itself. The
 * first route in table order that matches wins. A path no route matches is refused with 404 and
 * never proxied.
 */
import type { Permission } from '../domain/roles.js';

export const DEFAULT_ROUTES: Record<string, Permission> = {
  'POST /v1/chat/completions': 'model.invoke',
  'POST /v1/completions': 'model.invoke',
  'POST /v1/embeddings': 'model.invoke',
  'GET /v1/models': 'model.invoke',
  'GET /v1/models/*': 'model.invoke',
  'POST /api/chat': 'model.invoke',
  'POST /api/generate': 'model.invoke',
  'POST /api/embed': 'model.invoke',
  'POST /api/embeddings': 'model.invoke',
  'GET /api/tags': 'model.invoke',
  'POST /api/pull': 'param.change',
  'POST /api/create': 'param.change',
  'DELETE /api/delete': 'param.change',
  'POST /api/copy': 'param.change',
  'POST /api/push': 'param.change',
  'POST /v1/load_lora_adapter': 'param.change',
  'POST /v1/unload_lora_adapter': 'param.change',
  'GET /dsk/audit': 'audit.view',
  'GET /dsk/stats': 'audit.view',
  'GET /dsk/keys': 'key.manage',
};

/** Routes the gateway answers itself instead of proxying (admin.ts). */
export const ADMIN_ROUTE_PREFIX = 'GET /dsk/';
export const ADMIN_ROUTES: ReadonlySet<string> = new Set(['GET /dsk/audit', 'GET /dsk/keys', 'GET /dsk/stats']);

/** A path the gateway owns: only its own endpoints may be routed there, and nothing under it is proxied. */
export function isGatewayPath(path: string): boolean {
  return path === '/dsk' || path.startsWith('/dsk/');
}

export function isRoutePattern(r: string): boolean {
  return /^(\*|[A-Z]+) \/\S*$/.test(r);
}

export interface Route {
  method: string | null;
  path: string;
  prefix: boolean;
  permission: Permission;
  /** the route as written in the table: what metrics and audit rows name, never the raw path */
  name: string;
}

export class RouteTable {
  readonly #routes: Route[];

  /** `table` is checked already (options.ts). */
  constructor(table: Record<string, Permission>) {
    this.#routes = Object.entries(table).map(([r, permission]) => {
      const [method, p] = r.split(' ');
      const prefix = p.endsWith('/*');
      return { method: method === '*' ? null : method, path: prefix ? p.slice(0, -1) : p, prefix, permission, name: r };
    });
  }

  /** `pathname` is normalised already (path.ts). Under /dsk/ only the gateway's own endpoints match. */
  match(method: string, pathname: string): Route | null {
    const own = isGatewayPath(pathname);
    for (const r of this.#routes) {
      if (own && !ADMIN_ROUTES.has(r.name)) continue;
      if (r.method && r.method !== method) continue;
      if (r.prefix ? pathname.startsWith(r.path) && pathname.length > r.path.length : pathname === r.path) return r;
    }
    return null;
  }
}
