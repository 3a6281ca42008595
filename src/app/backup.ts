/**
 * dsk backup: a consistent snapshot of a live home in one tar file (optionally encrypted with age).
 *
 * Order of work:
 *   1. copy keys.db and audit.db through the store's online backup at one instant, reading
 *      audit_log/HEAD, dsk.json, master_key.hsm and key_fragments/metadata.json (and, only when
 *      asked, the sealed fragments) at that same instant, into a private staging directory beside
 *      the output;
 *   2. check the copy: SQLite's integrity check on both databases, and the audit chain against the
 *      copied HEAD (structure: no unsealing is needed to take a backup);
 *   3. write the archive (manifest first) to a temporary name, fsync, link to the output name
 *      (never replacing a file), fsync the directory; then read it back and compare.
 * The staging directory is removed whatever happens; a failure leaves no output file.
 *
 * Fragments are left out by default: one file that holds every sealed fragment next to the
 * databases undoes part of what splitting the master key among custodians bought (whoever holds
 * the backup then needs only the passphrases, not the custodians' fragment files).
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConflictError, IntegrityError, NotFoundError } from '../kernel/errors.js';
import { hashFile, ioError, readTextIfExists, writePrivateFile, writePrivateStream } from '../kernel/files.js';
import { HOME_FILES } from '../kernel/home-layout.js';
import { tarStream, type TarEntry } from '../kernel/tar.js';
import { ageEncrypter, encryptStream } from '../kernel/age.js';
import { noProgress, type Progress } from '../kernel/progress.js';
import { loadConfig } from '../store/config-file.js';
import { SCHEMA_VERSION } from '../store/migrations.js';
import { snapshotStore } from '../store/snapshot.js';
import { BACKUP_FORMAT, MANIFEST_NAME, type BackupManifest, type ManifestFile } from './backup-manifest.js';
import { checkStagedHome } from './backup-check.js';
import { readArchive } from './backup-read.js';

export interface BackupOptions {
  out: string;
  includeFragments: boolean;
  /** age recipients (age1…); none: a plain tar */
  recipients: string[];
  /** "dsk <version>", recorded in the manifest */
  producer: string;
  now: number;
  progress?: Progress;
}

export interface BackupResult {
  file: string;
  bytes: number;
  sha256: string;
  encrypted: boolean;
  home_id: string;
  backend: string;
  fragments_included: boolean;
  /** fragments kept outside the home (--fragment-dir at init): never in a backup */
  fragments_elsewhere: string[];
  audit: BackupManifest['audit'];
  files: ManifestFile[];
}

/** Everything checked before any work: a bad recipient or an existing output costs no snapshot. */
export async function preflightBackup(o: Pick<BackupOptions, 'out' | 'recipients'>): Promise<void> {
  if (o.recipients.length) await ageEncrypter(o.recipients);
  if (fs.existsSync(o.out)) throw new ConflictError('ERR_FILE_EXISTS', `${o.out} already exists`, { hint: 'choose a new file name for each backup (for example with the date in it)' });
  const dir = path.dirname(path.resolve(o.out));
  if (!fs.existsSync(dir)) throw new NotFoundError('ERR_NOT_FOUND', `${dir}: no such directory`, { hint: 'create the directory first' });
}

export async function createBackup(home: string, o: BackupOptions): Promise<BackupResult> {
  const progress = o.progress ?? noProgress;
  const out = path.resolve(o.out);
  await preflightBackup({ ...o, out });
  const config = loadConfig(home);
  let staging: string;
  try {
    staging = fs.mkdtempSync(path.join(path.dirname(out), `.${path.basename(out)}.backup-`));
    fs.chmodSync(staging, 0o700);
  } catch (e) {
    throw ioError(e, path.dirname(out));
  }
  try {
    const elsewhere = await snapshotStore(home, staging, () => copySmallFiles(home, staging, o.includeFragments), (done, total) => progress('snapshot', done, total));
    const audit = await checkStagedHome(staging, { progress });
    const files = await stagedFiles(staging);
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      producer: o.producer,
      schema_version: SCHEMA_VERSION,
      home_id: config.home_id,
      backend: config.backend,
      created_at: new Date(o.now).toISOString(),
      fragments_included: o.includeFragments,
      audit,
      files,
    };
    const total = files.reduce((n, f) => n + f.size, 0);
    let written = 0;
    const entries: TarEntry[] = [
      bufferEntry(MANIFEST_NAME, Buffer.from(JSON.stringify(manifest, null, 2) + '\n'), o.now),
      ...files.map((f) => ({
        name: f.path,
        size: f.size,
        mode: 0o600,
        mtime: o.now,
        body: async function* () {
          for await (const c of fs.createReadStream(path.join(staging, f.path), { highWaterMark: 1 << 20 })) {
            written += (c as Buffer).length;
            progress('write', written, total);
            yield c as Buffer;
          }
        },
      })),
    ];
    const plain = tarStream(entries);
    const encrypted = o.recipients.length > 0;
    const w = await writePrivateStream(out, encrypted ? encryptStream(await ageEncrypter(o.recipients), plain) : plain, { exclusive: true });
    try {
      await readBack(out, w.sha256, encrypted ? null : manifest, progress);
    } catch (e) {
      fs.rmSync(out, { force: true });
      throw e;
    }
    return { file: out, bytes: w.bytes, sha256: w.sha256, encrypted, home_id: config.home_id, backend: config.backend, fragments_included: o.includeFragments, fragments_elsewhere: elsewhere, audit, files };
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
}

function bufferEntry(name: string, data: Buffer, mtime: number): TarEntry {
  return {
    name,
    size: data.length,
    mode: 0o600,
    mtime,
    body: async function* () {
      yield data;
    },
  };
}

/** Runs inside the snapshot's instant: the small files of the home, as they match the databases. */
function copySmallFiles(home: string, staging: string, includeFragments: boolean): string[] {
  const copy = (rel: string): string | null => {
    const text = fs.existsSync(path.join(home, rel)) ? fs.readFileSync(path.join(home, rel)) : null;
    if (text === null) return null;
    fs.mkdirSync(path.dirname(path.join(staging, rel)), { recursive: true, mode: 0o700 });
    writePrivateFile(path.join(staging, rel), text, { syncDir: false });
    return rel;
  };
  for (const rel of [HOME_FILES.config, HOME_FILES.hsm, HOME_FILES.auditHead]) copy(rel);
  const metaRel = path.join(HOME_FILES.fragments, 'metadata.json');
  const meta = readTextIfExists(path.join(home, metaRel));
  if (meta === null) return [];
  copy(metaRel);
  const elsewhere: string[] = [];
  let entries: { file?: unknown }[] = [];
  try {
    entries = (JSON.parse(meta) as { fragments?: { file?: unknown }[] }).fragments ?? [];
  } catch {
    // a damaged metadata.json is copied as it is; restore and unseal name the damage
  }
  for (const e of entries) {
    if (typeof e?.file !== 'string') continue;
    if (path.isAbsolute(e.file) || e.file.includes('/')) elsewhere.push(e.file);
    else if (includeFragments && /^frag[1-9][0-9]{0,2}\.enc$/.test(e.file)) copy(path.join(HOME_FILES.fragments, e.file));
  }
  return elsewhere;
}

/** The staged files in a fixed order (small files first, databases last), with sizes and hashes. */
async function stagedFiles(staging: string): Promise<ManifestFile[]> {
  const order = [HOME_FILES.config, HOME_FILES.hsm, HOME_FILES.auditHead, path.join(HOME_FILES.fragments, 'metadata.json')];
  const frags = fs.existsSync(path.join(staging, HOME_FILES.fragments)) ? fs.readdirSync(path.join(staging, HOME_FILES.fragments)).filter((n) => n.endsWith('.enc')).sort().map((n) => path.join(HOME_FILES.fragments, n)) : [];
  const rels = [...order, ...frags, HOME_FILES.keysDb, HOME_FILES.auditDb].filter((r) => fs.existsSync(path.join(staging, r)));
  const out: ManifestFile[] = [];
  for (const r of rels) {
    const h = await hashFile(path.join(staging, r));
    out.push({ path: r.split(path.sep).join('/'), size: h.bytes, sha256: h.sha256 });
  }
  return out;
}

/** The archive as it is on disk: the same bytes as written, and (when not encrypted) every entry against the manifest. */
async function readBack(file: string, sha256: string, manifest: BackupManifest | null, progress: Progress): Promise<void> {
  // An encrypted archive cannot be opened here (only the recipient can): its bytes are compared.
  const again = manifest ? await readArchive(file, { identity: null, progress, sink: null }) : { sha256: (await hashFile(file)).sha256, manifest: null };
  if (again.sha256 !== sha256) throw new IntegrityError('ERR_BACKUP_READBACK', `${file} does not read back as written (SHA-256 differs): the disk may be failing; the file was removed`, { hint: 'write the backup to another disk' });
  if (manifest && JSON.stringify(again.manifest) !== JSON.stringify(manifest)) throw new IntegrityError('ERR_BACKUP_READBACK', `${file} does not read back as written (manifest differs); the file was removed`, { hint: 'write the backup to another disk' });
}
