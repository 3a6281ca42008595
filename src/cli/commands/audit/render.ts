/** How audit rows look in a terminal: tables, tail lines, colours by kind of action, bars. */
import type { Ctx } from '../../context.js';
import { listTable, paint } from '../../render.js';
import type { AuditRow } from '../../../audit/query.js';

function localTime(ts: string, utc: boolean): string {
  if (utc) return ts.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  const d = new Date(ts);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

/** Red for failures and revocations, yellow for rotations and other lifecycle moves, green for creation. */
export function actionKind(action: string): 'bad' | 'change' | 'create' | 'other' {
  if (/FAIL|REVOKE|BLOCK|DENIED|REFUSED|EMERGENCY|TAMPER|RATE_LIMITED|INVALID/.test(action)) return 'bad';
  if (/ROTAT|GRACE|RETIRE|EXPIRE|ARCHIVE|CONFIG|CHANGE/.test(action)) return 'change';
  if (/CREATE|INIT|ISSUE/.test(action)) return 'create';
  return 'other';
}

export function actionColour(ctx: Ctx, text: string): string {
  const c = paint(ctx);
  switch (actionKind(text.trim())) {
    case 'bad':
      return c.red(text);
    case 'change':
      return c.yellow(text);
    case 'create':
      return c.green(text);
    default:
      return text;
  }
}

function short(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

export function rowsTable(ctx: Ctx, rows: AuditRow[], utc: boolean): string {
  return listTable(
    ctx,
    ['seq', utc ? 'time (UTC)' : 'time', 'action', 'actor', 'source ip', 'key', 'details'],
    rows.map((r) => [r.seq, localTime(r.ts, utc), actionColour(ctx, r.action), r.actor, r.source_ip, r.key_id, short(r.details, 70)]),
  );
}

export function tailLine(ctx: Ctx, r: AuditRow, utc: boolean): string {
  return `${String(r.seq).padStart(6)}  ${localTime(r.ts, utc)}  ${actionColour(ctx, r.action.padEnd(16))}  ${r.actor}${r.source_ip ? ` ${r.source_ip}` : ''}${r.key_id ? ` key ${r.key_id}` : ''}  ${short(r.details, 100)}`;
}

export function bar(n: number, max: number, width: number): string {
  const eighths = Math.round((n / max) * width * 8);
  return '█'.repeat(Math.floor(eighths / 8)) + (eighths % 8 ? ' ▏▎▍▌▋▊▉'[eighths % 8] : '') || (n > 0 ? '▏' : '');
}
