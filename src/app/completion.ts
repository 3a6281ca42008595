/**
 * Candidates for shell completion, read from a home without unsealing it: key ids (with name and
 * state, never anything secret), role names, operator names. Completion runs at every TAB, so it
 * opens the store read-only and answers nothing rather than an error when the home is unusable.
 */
import { loadConfig } from '../store/config-file.js';
import { openStore } from '../store/open.js';
import type { KeyStatus } from '../domain/key.js';

export type CandidateSource = 'roles' | 'keys-all' | 'keys-live' | 'operators';

const LIVE: KeyStatus[] = ['active', 'grace'];

/** Lines `value<TAB>description`; [] when the home cannot be read. */
export async function completionCandidates(home: string, source: CandidateSource): Promise<string[]> {
  try {
    if (source === 'roles') return Object.keys(loadConfig(home).roles).map((r) => `${r}\trole`);
    const store = await openStore(home, { readonly: true });
    try {
      if (source === 'operators') return (await store.operators.list()).map((o) => `${o.name}\t${o.role}`);
      const rows = await store.keys.list(source === 'keys-live' ? { status: LIVE } : {});
      return rows.map((k) => `${k.id}\t${k.name} (${k.status})`);
    } finally {
      await store.close();
    }
  } catch {
    return [];
  }
}
