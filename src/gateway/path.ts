/**
 * The request target, made safe to match and forward (RFC 3986 sections 3.3 and 6.2.2).
 *
 * A prefix route such as `GET /v1/models/*` must not admit `/v1/models/../../metrics`: an upstream
 * that removes dot segments, or decodes `%2e%2e` / `%2f` before routing, would serve a path the
 * route table never allowed. Rather than guess how a given upstream normalises, the gateway refuses
 * (400) every target whose meaning could differ between it and the upstream:
 *
 *   - anything but origin-form (`/path?query`): absolute-form, authority-form, `*`
 *   - a dot segment (`.` or `..`, also with a path parameter: `..;x`), literal or percent-encoded
 *     in any case (`%2e`, `.%2E`)
 *   - an encoded slash or backslash (`%2f`, `%5c`), a literal backslash, and `%25` (an encoded
 *     percent, which a double-decoding upstream turns back into any of these)
 *   - a malformed escape (`%` not followed by two hex digits), control characters, NUL
 *
 * What remains is normalised in one way only: runs of slashes collapse to one (`/v1//models` →
 * `/v1/models`), which every upstream treats alike. Route matching and the upstream see exactly the
 * same normalised path; the query string is passed through untouched.
 */

export type NormalisedTarget = { ok: true; path: string; query: string } | { ok: false; reason: string };

const MAX_TARGET = 8192;
// %2e %2f %5c %25 in any case; a malformed escape; a backslash; controls and DEL
const FORBIDDEN = /%(?:2[eEfF5]|5[cC])|%(?![0-9A-Fa-f]{2})|\\|[\x00-\x20\x7f]/;
// a dot segment, bare or with a path parameter (`..;x` is `..` to servers that strip parameters, RFC 2396 section 3.3)
const DOT_SEGMENT = /\/\.\.?(?:;[^/]*)?(?=\/|$)/;
// the common path has none of these, and is returned as it came
const NEEDS_CHECK = /[%\\.\x00-\x20\x7f]|\/\//;

export function normaliseTarget(target: string): NormalisedTarget {
  if (target.length > MAX_TARGET) return { ok: false, reason: 'request target too long' };
  if (!target.startsWith('/')) return { ok: false, reason: 'request target must be a path starting with /' };
  const q = target.indexOf('?');
  const raw = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  if (!NEEDS_CHECK.test(raw)) return { ok: true, path: raw, query };
  if (FORBIDDEN.test(raw)) return { ok: false, reason: 'encoded dots, slashes, percent signs, backslashes and control characters are not allowed in the path' };
  const path = raw.replace(/\/{2,}/g, '/');
  if (DOT_SEGMENT.test(path)) return { ok: false, reason: 'dot segments (. and ..) are not allowed in the path' };
  return { ok: true, path, query };
}
