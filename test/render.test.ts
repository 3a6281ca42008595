/** The two table renderers: cli-table3 for bounded tables, the linear one for unbounded lists; same text. */
import { describe, expect, it } from 'vitest';
import { displayWidth, listTable, table } from '../src/cli/render.js';

const HEAD = ['id', 'name', 'role', 'status', 'uses', 'age', 'expires'];
const ROWS = [
  ['0123456789ab', '服务-前端', 'developer', 'active', 3, '3d', null],
  ['9ff43bc0dd81', 'a', 'admin', 'revoked', 12345, '0s', 'never'],
  ['x', '😀emoji', 'auditor', 'grace', '', '1d', '27d'],
];

describe.each([
  ['table', table],
  ['listTable', listTable],
])('%s', (_, render) => {
  it('pads columns to the widest cell, four spaces apart, CJK and emoji two columns wide', () => {
    expect(render({ color: false }, HEAD, ROWS)).toBe(
      [
        'id              name         role         status     uses     age    expires',
        '0123456789ab    服务-前端    developer    active     3        3d     -',
        '9ff43bc0dd81    a            admin        revoked    12345    0s     never',
        'x               😀emoji      auditor      grace               1d     27d',
      ].join('\n'),
    );
  });

  it('ignores colour codes when measuring, and bolds the header only with colour on', () => {
    expect(render({ color: true }, ['id', 'name'], [['\x1b[32mactive\x1b[39m', 'b']])).toBe('\x1b[1mid\x1b[22m        \x1b[1mname\x1b[22m\n\x1b[32mactive\x1b[39m    b');
    expect(render({ color: false }, ['id', 'name'], [])).toBe('id    name');
  });
});

describe('listTable', () => {
  it('renders 10,000 rows in linear time (cli-table3 takes over 10 s)', () => {
    const rows = Array.from({ length: 10_000 }, (_, i) => [`${i}`.padStart(12, '0'), `service-${i}`, 'developer']);
    const start = performance.now();
    const out = listTable({ color: false }, ['id', 'name', 'role'], rows).split('\n');
    expect(performance.now() - start).toBeLessThan(2_000);
    expect(out).toHaveLength(10_001);
    expect(out[10_000]).toBe('000000009999    service-9999    developer');
  });
});

describe('displayWidth', () => {
  it('counts ANSI codes as zero columns and CJK as two', () => {
    expect(displayWidth('\x1b[31mrevoked\x1b[39m')).toBe(7);
    expect(displayWidth('密钥')).toBe(4);
  });
});
