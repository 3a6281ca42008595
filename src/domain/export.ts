/**
 * Handing a key to a workload, as text: a Kubernetes Secret manifest (the seed's section 4.1) or
 * env lines. Pure formatting; recovering the key and auditing the export is src/app/export.ts.
 */
import { stringify } from 'yaml';
import { UsageError } from '../kernel/errors.js';
import { iso } from '../kernel/clock.js';
import type { KeyRow } from './key.js';

export type ExportFormat = 'k8s' | 'env';

export interface Exported {
  row: KeyRow;
  apiKey: string;
  apiSecret: string;
}

/** DNS-1123 subdomain, as Kubernetes requires for object names and namespaces. */
const K8S_NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function checkK8sName(v: string, what: string): void {
  if (!K8S_NAME.test(v)) throw new UsageError('ERR_K8S_NAME', `invalid ${what} '${v}': use lower-case letters, digits, '-' and '.' (a DNS-1123 name)`);
}

/** Label values allow [A-Za-z0-9_.-] only, so the rotation time is also given in compact form. */
function compactTime(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
}

export function k8sSecret(e: Exported, o: { name: string; namespace?: string }): string {
  const b64 = (s: string) => Buffer.from(s).toString('base64');
  const manifest = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: o.name,
      ...(o.namespace ? { namespace: o.namespace } : {}),
      labels: {
        'app.kubernetes.io/managed-by': 'dsk',
        'dsk.io/key-id': e.row.id,
        'dsk.io/rotated-at': compactTime(e.row.created_at),
      },
      annotations: {
        'dsk.io/key-name': e.row.name,
        'dsk.io/role': e.row.role,
        'dsk.io/rotated-at': iso(e.row.created_at),
        ...(e.row.replaces ? { 'dsk.io/replaces': e.row.replaces } : {}),
        ...(e.row.expires_at ? { 'dsk.io/expires-at': iso(e.row.expires_at) } : {}),
      },
    },
    type: 'Opaque',
    data: { API_KEY: b64(e.apiKey), API_SECRET: b64(e.apiSecret) },
  };
  return stringify(manifest);
}

export function envLines(e: Exported, prefix = 'DEEPSEEK'): string {
  return `${prefix}_API_KEY=${e.apiKey}\n${prefix}_API_SECRET=${e.apiSecret}\n`;
}
