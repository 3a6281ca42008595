/**
 * A key pasted where a key id is expected is refused naming only its id: the secret part never
 * reaches stderr, a --json error or the audit log.
 */
import crypto from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { dsk, makeHome, snapshot } from './helpers.js';
import { formatApiKey } from '../src/domain/key-text.js';
import { assertKeyId } from '../src/domain/key-text.js';

describe('a pasted key is never echoed', () => {
  const h = makeHome();
  const id = crypto.randomBytes(6).toString('hex');
  const secret = crypto.randomBytes(32).toString('hex');
  const key = formatApiKey(id, secret);
  const signing = `dss_${crypto.randomBytes(32).toString('base64url')}`;

  const commands: string[][] = [
    ['keys', 'show', key],
    ['keys', 'revoke', key],
    ['rotate', key],
    ['rotate', '--emergency', key],
    ['export', 'env', key],
    ['export', 'k8s', key],
    ['token', 'issue', key],
    ['audit', 'query', '--key', key],
  ];

  it.each(commands.map((c) => [c.slice(0, 2).join(' '), c]))('%s KEY: exit 2, the id named, the secret never printed', (_n, args) => {
    const before = snapshot(path.join(h.home, 'audit_log'));
    for (const json of [false, true]) {
      const r = dsk([...(args as string[]), ...(json ? ['--json'] : [])], { env: h.env });
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`this looks like an API key, not a key id`);
      expect(r.stderr).toContain(`the id is ${id}`);
      for (const out of [r.stderr, r.stdout]) {
        expect(out).not.toContain(secret);
        expect(out).not.toContain(secret.slice(0, 16));
        expect(out).not.toContain(key);
      }
      if (json) expect(JSON.parse(r.stderr).error).toMatchObject({ code: 'ERR_KEY_PASTED' });
    }
    expect(snapshot(path.join(h.home, 'audit_log'))).toEqual(before);
  });

  it('a signing secret or a long token is not shown at all; a short typo is quoted', () => {
    const s = dsk(['keys', 'show', signing], { env: h.env });
    expect(s.code).toBe(2);
    expect(s.stderr).toContain('this looks like a signing secret, not a key id');
    expect(s.stderr).not.toContain(signing.slice(4, 20));
    const hex = dsk(['keys', 'revoke', secret], { env: h.env });
    expect(hex.code).toBe(2);
    expect(hex.stderr).toContain('the value given (64 characters, not shown) is not a key id');
    expect(hex.stderr).not.toContain(secret.slice(0, 16));
    expect(dsk(['keys', 'show', 'xyz'], { env: h.env }).stderr).toContain("'xyz' is not a key id");
  });

  it('assertKeyId never repeats more than the id of any text containing a key', () => {
    for (const text of [key, ` ${key}`, `${key}\n`, `Bearer ${key}`, key.slice(0, 40), key.toUpperCase(), `id=${key}&x=1`]) {
      let msg = '';
      try {
        assertKeyId(text);
      } catch (e) {
        msg = `${(e as Error).message} ${(e as { hint?: string }).hint ?? ''}`;
      }
      expect(msg).not.toBe('');
      expect(msg).not.toContain(secret.slice(0, 12));
      expect(msg).not.toContain(secret.slice(0, 12).toUpperCase());
    }
  });
});
