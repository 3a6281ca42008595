/**
 * `dsk doctor`: a home's health, checked without unsealing and without writing anything. Each check
 * says ok, warn (worth knowing, not broken) or fail, and a failure is either damage (the home's
 * files are wrong: restore or repair, exit 5) or unavailable (something it depends on is missing or
 * down: exit 7). Every finding carries the command or step that fixes it.
 *
 * The store is opened read-only and only after its schema version was read without migrating, so
 * the doctor never upgrades, cleans up or takes the lock of the home it examines.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { DskConfig } from '../domain/config.js';
import { configFromText } from '../store/config-file.js';
import { storeSchema } from '../store/open.js';
import { inspectLock } from '../kernel/lock.js';
import { homePath, HOME_FILES } from '../kernel/home-layout.js';
import { NotFoundError } from '../kernel/errors.js';
import { fragmentFileHealth, readMetadata } from '../master/fragments.js';
import { hsmInfo, readHsmFile } from '../master/pkcs11/backend.js';
import { storeChecks } from './doctor-store.js';
import { errorText, failureOf, worstFailure, type Check, type DoctorOptions, type DoctorReport } from './doctor-check.js';

export { DOCTOR_DEFAULTS, worstFailure, type Check, type CheckStatus, type DoctorOptions, type DoctorReport, type Failure } from './doctor-check.js';

export async function runDoctor(dir: string, o: DoctorOptions): Promise<DoctorReport> {
  const home = path.resolve(dir);
  if (!fs.existsSync(homePath(home, 'config')))
    throw new NotFoundError('ERR_NO_HOME', fs.existsSync(home) ? `${home} is not a dsk home (no dsk.json)` : `no dsk home at ${home}`, { hint: 'point --home / DSK_HOME at an existing home, or run dsk init' });
  const checks: Check[] = [];
  const modes = modesCheck(home);
  checks.push(modes);
  const { check: configCheck, config } = readConfig(home);
  checks.push(configCheck);
  const schema = await schemaCheck(home, config, modes.status === 'fail');
  checks.push(schema);
  checks.push(lockCheck(home));
  checks.push(...(await masterChecks(home, config)));
  const storeUsable = schema.status === 'ok' && config !== null;
  checks.push(...(await storeChecks(home, config, o, storeUsable ? null : 'needs a readable store and dsk.json at the current schema (see above)')));
  checks.push(await upstreamCheck(config, o.upstreamTimeoutMs));
  const failure = worstFailure(checks);
  return { home, healthy: failure === null, failure, checks };
}

/** Every file and directory of the home private to its owner, as ssh wants ~/.ssh. */
function modesCheck(home: string): Check {
  const loose: string[] = [];
  const walk = (p: string) => {
    const st = fs.lstatSync(p);
    if (st.isSymbolicLink()) return;
    if ((st.mode & 0o077) !== 0) loose.push(`${path.relative(home, p) || '.'} (${(st.mode & 0o777).toString(8).padStart(3, '0')})`);
    if (st.isDirectory()) for (const e of fs.readdirSync(p)) walk(path.join(p, e));
  };
  walk(home);
  if (!loose.length) return { name: 'file_modes', status: 'ok', detail: 'the home and every file in it are private to their owner (0700 / 0600)' };
  const shown = loose.slice(0, 5).join(', ') + (loose.length > 5 ? ` and ${loose.length - 5} more` : '');
  return { name: 'file_modes', status: 'fail', failure: 'damage', detail: `readable or writable by group or others: ${shown}; dsk refuses to use them`, fix: `chmod -R go-rwx ${home}` };
}

function readConfig(home: string): { check: Check; config: DskConfig | null } {
  const p = homePath(home, 'config');
  try {
    const config = configFromText(fs.readFileSync(p, 'utf8'), p);
    return { check: { name: 'config', status: 'ok', detail: `dsk.json is well-formed (backend ${config.backend})` }, config };
  } catch (e) {
    return { check: { name: 'config', status: 'fail', failure: failureOf(e), detail: errorText(e), fix: 'fix the field named, or restore dsk.json from a backup of the home' }, config: null };
  }
}

async function schemaCheck(home: string, config: DskConfig | null, modesFailed: boolean): Promise<Check> {
  if (modesFailed) return { name: 'schema', status: 'skip', detail: 'the store is not opened while its files are not private', fix: 'fix the file modes first' };
  const shared = Boolean(config?.store?.url);
  try {
    const v = await storeSchema(home, config);
    if (v.engine === 'postgres') {
      if (v.version === v.current) return { name: 'schema', status: 'ok', detail: `the store at ${v.address} at schema version ${v.current}` };
      return { name: 'schema', status: 'warn', detail: `the store at ${v.address} at version ${v.version}; this dsk writes ${v.current}`, fix: 'the next dsk command that opens the home upgrades the shared store in place (for example dsk status); take a backup (pg_dump) first' };
    }
    if (v.keys === v.current && v.audit === v.current) return { name: 'schema', status: 'ok', detail: `keys.db and audit_log/audit.db at schema version ${v.current}` };
    return { name: 'schema', status: 'warn', detail: `keys.db at version ${v.keys}, audit_log/audit.db at ${v.audit}; this dsk writes ${v.current}`, fix: 'the next dsk command that opens the home upgrades it in place (for example dsk status); take a backup first' };
  } catch (e) {
    const code = (e as { code?: string }).code;
    const fix =
      code === 'ERR_SCHEMA_TOO_NEW'
        ? 'upgrade dsk to the version that wrote this home'
        : shared
          ? ((e as { hint?: string }).hint ?? 'check store.url in dsk.json and that PostgreSQL answers there')
          : 'restore keys.db and audit_log/ from a backup of the home';
    return { name: 'schema', status: 'fail', failure: failureOf(e), detail: errorText(e), fix };
  }
}

function lockCheck(home: string): Check {
  const l = inspectLock(home);
  if (l.state === 'free') return { name: 'lock', status: 'ok', detail: 'no run holds the home lock' };
  const who = `pid ${l.pid}, ${l.purpose}, since ${l.acquired_at || 'unknown'}`;
  if (l.state === 'held') return { name: 'lock', status: 'ok', detail: `a running dsk holds the lock (${who})` };
  return {
    name: 'lock',
    status: 'warn',
    detail: `stale lock left by a run that died (${who}); the next run takes it over`,
    fix: `check that the run was not killed half-way (dsk rotate --due --dry-run), then rm ${homePath(home, 'lock')}`,
  };
}

/** Fragments present and intact for the threshold (software, or HSM recovery); the PKCS#11 module and token. */
async function masterChecks(home: string, config: DskConfig | null): Promise<Check[]> {
  const out: Check[] = [];
  const fragDir = homePath(home, 'fragments');
  const hasFragments = fs.existsSync(path.join(fragDir, 'metadata.json'));
  if (config?.backend === 'software' || hasFragments) out.push(fragmentsCheck(fragDir));
  if (config?.backend === 'pkcs11') out.push(await pkcs11Check(home));
  return out;
}

function fragmentsCheck(fragDir: string): Check {
  const name = 'fragments';
  let meta;
  try {
    meta = readMetadata(fragDir);
  } catch (e) {
    return { name, status: 'fail', failure: 'damage', detail: errorText(e), fix: `restore ${HOME_FILES.fragments}/metadata.json from a backup of the home` };
  }
  const h = fragmentFileHealth(meta, fragDir);
  const k = meta.threshold;
  const n = meta.shares;
  const gone = [...h.missing.map((m) => `missing ${m}`), ...h.problems];
  const lost = gone.length ? `; ${gone.join('; ')}` : '';
  if (h.intact.length < k)
    return {
      name,
      status: 'fail',
      failure: h.problems.length ? 'damage' : 'unavailable',
      detail: `only ${h.intact.length} of the ${k} fragments needed to unseal are reachable and intact (${k}-of-${n})${lost}`,
      fix: 'copy the missing fragments back from their custodians or a backup (or name their directory with --fragment-dir when unsealing)',
    };
  if (gone.length)
    return { name, status: 'warn', detail: `${h.intact.length} of ${n} fragments reachable and intact, ${k} needed${lost}`, fix: 'restore the others from their custodians, so losing one more does not lock the home' };
  return { name, status: 'ok', detail: `all ${n} fragments reachable and intact (${k} needed to unseal)` };
}

async function pkcs11Check(home: string): Promise<Check> {
  const name = 'pkcs11';
  let f;
  try {
    f = readHsmFile(home);
  } catch (e) {
    return { name, status: 'fail', failure: 'damage', detail: errorText(e), fix: 'restore master_key.hsm from a backup of the home' };
  }
  try {
    const info = await hsmInfo({ module: f.module, tokenLabel: f.token_label });
    return { name, status: 'ok', detail: `module ${f.module} loads; token '${info.token_label}' present (the key object is checked when unsealing, with the PIN)` };
  } catch (e) {
    return { name, status: 'fail', failure: 'unavailable', detail: errorText(e), fix: `install the PKCS#11 module at ${f.module} and connect the token '${f.token_label}' (dsk hsm info --module ${f.module} lists what it sees)` };
  }
}

/** The configured upstream answers HTTP at all (any status: the gateway, not dsk doctor, authenticates). */
async function upstreamCheck(config: DskConfig | null, timeoutMs: number): Promise<Check> {
  const name = 'upstream';
  const up = config?.gateway?.upstream;
  if (typeof up !== 'string' || !up) return { name, status: 'skip', detail: 'no gateway.upstream in dsk.json' };
  const url = `${up.replace(/\/$/, '')}/v1/models`;
  try {
    const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'manual' });
    await r.body?.cancel();
    return { name, status: 'ok', detail: `${up} answers (GET /v1/models: HTTP ${r.status})` };
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code ?? ((e as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : errorText(e));
    return { name, status: 'fail', failure: 'unavailable', detail: `gateway.upstream ${up} is not reachable (${cause})`, fix: 'start the model server, or correct gateway.upstream in dsk.json' };
  }
}
