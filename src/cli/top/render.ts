/**
 * `dsk top` as text: a header, per-key rows with a requests-per-second chart of the last minute,
 * top sources with their site or country when known, and active alerts. Narrow terminals lose the
 * chart and then the name column; without colour the same text prints plain.
 */
import type { TopFrame } from './frame.js';

const SPARK = '▁▂▃▄▅▆▇█';

export interface Look {
  width: number;
  color: boolean;
}

/** A bar per value, scaled to the largest one; zero is a space. */
export function sparkline(values: number[], width: number): string {
  const v = values.slice(-width);
  const max = Math.max(...v, 0);
  return v.map((n) => (n <= 0 || max <= 0 ? ' ' : SPARK[Math.min(7, Math.floor((n / max) * 7.999))])).join('');
}

function fit(s: string, w: number): string {
  return s.length > w ? s.slice(0, Math.max(0, w - 1)) + '…' : s.padEnd(w);
}

export function renderTop(f: TopFrame, look: Look): string[] {
  const W = Math.max(20, look.width);
  const bold = (s: string) => (look.color ? `\x1b[1m${s}\x1b[22m` : s);
  const dim = (s: string) => (look.color ? `\x1b[2m${s}\x1b[22m` : s);
  const red = (s: string) => (look.color ? `\x1b[31m${s}\x1b[39m` : s);
  const out: string[] = [];
  const head = `dsk top  ${f.source}  ${f.at.slice(11, 19)}Z`;
  out.push(W >= 28 ? bold(fit(head, W - 9)) + '  q quits' : bold(fit(head, W)));
  const rps = f.keys.reduce((a, k) => a + k.rps, 0);
  const tps = f.window_s ? f.tokens / f.window_s : 0;
  out.push(fit(`requests ${rps.toFixed(1)}/s  tokens ${tps.toFixed(1)}/s  last ${f.window_s}s: ${f.requests} req, ${f.tokens} tok`, W));
  const codes = Object.entries(f.status).sort((a, b) => a[0].localeCompare(b[0]));
  out.push(fit(`status  ${codes.length ? codes.map(([c, n]) => `${c}:${n}`).join('  ') : '-'}`, W));
  out.push('');
  const showName = W >= 50;
  const chartW = Math.min(60, W - (showName ? 48 : 34));
  out.push(bold(fit(`${'KEY'.padEnd(13)}${showName ? 'NAME'.padEnd(14) : ''}${'REQ/S'.padStart(7)}${'TOK/S'.padStart(9)}  ${chartW >= 10 ? `LAST ${f.window_s}s` : ''}`, W)));
  if (!f.keys.length) out.push(dim('  no requests in this window'));
  for (const k of f.keys) {
    const chart = chartW >= 10 ? '  ' + sparkline(k.series, chartW) : '';
    out.push(fit(`${k.key_id.padEnd(13)}${showName ? fit(k.name ?? '-', 13) + ' ' : ''}${k.rps.toFixed(1).padStart(7)}${k.tokens_per_s.toFixed(1).padStart(9)}${chart}`, W));
  }
  if (f.sources.length) {
    out.push('');
    out.push(bold(fit(`${'SOURCE'.padEnd(40)}${'REQ'.padStart(8)}  SITE/COUNTRY`, W)));
    for (const s of f.sources) out.push(fit(`${s.ip.padEnd(40)}${String(s.requests).padStart(8)}  ${[s.site, s.country].filter(Boolean).join(' / ') || '-'}`, W));
  }
  out.push('');
  out.push(bold('ALERTS'));
  if (!f.alerts.length) out.push(dim('  none'));
  for (const a of f.alerts) out.push(red(fit(`  ${typeof a === 'string' ? a : JSON.stringify(a)}`, W)));
  return out;
}
