/**
 * The checks of `dsk doctor` that read the store (opened read-only): audit_log/HEAD against the
 * chain, keys expiring soon, rotations overdue. HEAD's MAC needs the audit key, so it is left to
 * `dsk audit verify`; the doctor compares sequence numbers and hashes only.
 */
import type { DskConfig } from '../domain/config.js';
import { dueTrigger, type KeyRow } from '../domain/key.js';
import { formatDuration, humanAge } from '../kernel/duration.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { readHead } from '../audit/head.js';
import { errorText, failureOf, type Check, type DoctorOptions } from './doctor-check.js';

const STORE_CHECKS = ['audit_head', 'expiring_keys', 'rotations'];

export async function storeChecks(home: string, config: DskConfig | null, o: DoctorOptions, skipReason: string | null): Promise<Check[]> {
  if (skipReason || !config) return STORE_CHECKS.map((name) => ({ name, status: 'skip', detail: skipReason ?? 'no usable dsk.json' }));
  const fix = config.store?.url ? 'restore the PostgreSQL store from a backup (pg_dump / pg_basebackup); dsk audit verify checks it afterwards' : 'restore keys.db and audit_log/ from a backup of the home';
  let store: Store;
  try {
    store = await openStore(home, { readonly: true });
  } catch (e) {
    return [{ name: 'store', status: 'fail', failure: failureOf(e), detail: errorText(e), fix }];
  }
  try {
    return [await headCheck(home, store), await expiringCheck(store, o), await rotationsCheck(store, o)];
  } catch (e) {
    return [{ name: 'store', status: 'fail', failure: failureOf(e), detail: errorText(e), fix }];
  } finally {
    await store.close();
  }
}

async function headCheck(home: string, store: Store): Promise<Check> {
  const name = 'audit_head';
  const verify = 'dsk audit verify names the breach; restore the home from a backup taken before it';
  const last = await store.events.last();
  const head = readHead(home);
  if (!last) return { name, status: 'ok', detail: 'the audit log is empty' };
  if (head.state === 'missing')
    return { name, status: 'fail', failure: 'damage', detail: 'audit_log/HEAD is missing, so rows cut off the end of the chain would go unnoticed', fix: `${verify}; if verify finds nothing else, the next command that writes recreates HEAD` };
  if (head.state === 'unreadable') return { name, status: 'fail', failure: 'damage', detail: `audit_log/HEAD is unreadable (${head.reason})`, fix: verify };
  const h = head.head;
  if (h.seq > last.seq)
    return { name, status: 'fail', failure: 'damage', detail: `audit_log/HEAD records row #${h.seq} but the chain ends at #${last.seq}: rows were cut off the end`, fix: verify };
  const first = (await store.events.bounds()).first ?? 0;
  if (h.seq < first) return { name, status: 'ok', detail: `HEAD (#${h.seq}) precedes the archived part of the chain; the chain now ends at #${last.seq}` };
  if ((await store.events.hashAt(h.seq)) !== h.hash)
    return { name, status: 'fail', failure: 'damage', detail: `row #${h.seq} is not the row audit_log/HEAD records: the chain was cut back and rewritten`, fix: verify };
  if (h.seq < last.seq)
    return {
      name,
      status: 'warn',
      detail: `audit_log/HEAD is ${last.seq - h.seq} row(s) behind the chain (#${h.seq} of #${last.seq}): a writer stopped between its commit and its HEAD update`,
      fix: 'dsk audit verify checks the rows after HEAD; the next command that writes moves HEAD forward',
    };
  return { name, status: 'ok', detail: `audit_log/HEAD matches the end of the chain (#${last.seq}; its MAC is checked by dsk audit verify)` };
}

async function expiringCheck(store: Store, o: DoctorOptions): Promise<Check> {
  const name = 'expiring_keys';
  const soon = await store.keys.expiringWithin(o.now, o.now + o.expiringWithinMs);
  const within = formatDuration(o.expiringWithinMs);
  if (!soon.length) return { name, status: 'ok', detail: `no active key expires within ${within}` };
  const list = soon.slice(0, 5).map((k) => `${k.id} (${k.name}, ${new Date(k.expires_at!).toISOString()})`).join(', ') + (soon.length > 5 ? ` and ${soon.length - 5} more` : '');
  return { name, status: 'warn', detail: `${soon.length} active key(s) expire within ${within}: ${list}`, fix: `rotate them before they expire: dsk rotate ${soon[0].id} (one) or give them a rotation policy` };
}

/** Since when a due key has been due; null when the store cannot tell (a use-count threshold). */
function dueSince(row: KeyRow): number | null {
  const trigger = dueTrigger(row);
  if (trigger === 'SCHEDULED' && row.rotate_every_ms !== null) return row.created_at + row.rotate_every_ms;
  if (trigger === 'EMERGENCY') return row.revoked_at;
  return null;
}

async function rotationsCheck(store: Store, o: DoctorOptions): Promise<Check> {
  const name = 'rotations';
  const due = await store.keys.rotationDue(o.now);
  if (!due.length) return { name, status: 'ok', detail: 'no key is due for rotation' };
  const overdue: { id: string; late: number }[] = [];
  for (const d of due) {
    const row = await store.keys.get(d.id);
    const since = row ? dueSince(row) : null;
    if (since !== null && o.now - since > o.overdueAfterMs) overdue.push({ id: d.id, late: o.now - since });
  }
  if (!overdue.length) return { name, status: 'ok', detail: `${due.length} key(s) due for rotation; the next dsk rotate --due run rotates them` };
  const list = overdue.slice(0, 5).map((k) => `${k.id} (due ${humanAge(k.late)} ago)`).join(', ') + (overdue.length > 5 ? ` and ${overdue.length - 5} more` : '');
  return {
    name,
    status: 'fail',
    failure: 'unavailable',
    detail: `${overdue.length} key(s) overdue for rotation by more than ${formatDuration(o.overdueAfterMs)}: ${list}; the scheduled rotation job is not running`,
    fix: 'run dsk rotate --due now, and install the job: dsk cron install --dir DIR (systemd timer or crontab)',
  };
}
