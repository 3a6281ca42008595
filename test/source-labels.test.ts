/**
 * Source labels and anomalies on the real MaxMind test databases (test/fixtures/geoip, see SOURCE.md there):
 * the labeler, its startup errors, and the gateway learning each key's sites, countries and ASNs
 * through X-Forwarded-For on loopback, then raising ANOMALY rows past the learning period.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { call, gateway, keys, openTestHome, rawDb, startStubUpstream, type Gateway, type StubUpstream } from './gwkit.js';
import { dsk, makeHome, tmpDir } from './helpers.js';
import type { Home } from '../src/app/home.js';
import type { IssuedKey } from '../src/app/keys.js';
import { fixedClock } from '../src/kernel/clock.js';
import { ExitCode } from '../src/kernel/errors.js';
import { SourceLabeler, openGeoDb } from '../src/gateway/source-labels.js';
import { checkConfig } from '../src/domain/config-schema.js';

const GEO = process.env.DSK_GEOIP_DIR ?? path.resolve(__dirname, 'fixtures/geoip');
const CITY = path.join(GEO, 'GeoIP2-City-Test.mmdb');
const COUNTRY = path.join(GEO, 'GeoLite2-Country-Test.mmdb');
const ASN = path.join(GEO, 'GeoLite2-ASN-Test.mmdb');
const NETWORK = { '10.0.0.0/8': 'corp', '10.1.0.0/16': 'dc-east', '10.1.7.0/24': 'lab', 'fd00::/8': 'v6-corp' };

describe('SourceLabeler on the real test databases', () => {
  it('labels the addresses SOURCE.md lists, with a City or a Country database, and the ASN', () => {
    for (const geoipDb of [CITY, COUNTRY]) {
      const l = new SourceLabeler({ network: NETWORK, geoipDb, asnDb: ASN });
      expect(l.labels('81.2.69.142')).toEqual({ site: 'unmapped', country: 'GB' });
      expect(l.labels('2.125.160.216').country).toBe('GB');
      expect(l.labels('89.160.20.112').country).toBe('SE');
      expect(l.labels('216.160.83.56').country).toBe('US');
      if (geoipDb === CITY) expect(l.labels('175.16.199.0').country).toBe('CN'); // not in the Country test database
      expect(l.labels('2001:218::1').country).toBe('JP');
      expect(l.labels('1.128.0.1')).toEqual({ site: 'unmapped', asn: 'AS1221', asnOrg: 'Telstra Pty Ltd' });
      // private addresses: the network map, most specific block first; no country
      expect(l.labels('10.9.9.9')).toEqual({ site: 'corp' });
      expect(l.labels('10.1.2.3')).toEqual({ site: 'dc-east' });
      expect(l.labels('10.1.7.200')).toEqual({ site: 'lab' });
      expect(l.labels('fd00::5')).toEqual({ site: 'v6-corp' });
      expect(l.labels('127.0.0.1')).toEqual({ site: 'unmapped' });
      expect(l.labels('not-an-address')).toEqual({ site: 'unmapped' });
    }
  });

  it('caches per address: a second request from the same address does not look it up again', () => {
    const l = new SourceLabeler({ geoipDb: CITY, asnDb: ASN });
    for (let i = 0; i < 5; i++) l.labels('81.2.69.142');
    l.labels('89.160.20.112');
    expect(l.lookups).toBe(2);
    expect(new SourceLabeler({}).enabled).toBe(false);
    expect(new SourceLabeler({ network: { '10.0.0.0/8': 'x' } }).labels('81.2.69.142')).toEqual({ site: 'unmapped' });
  });

  it('a missing file is exit 4, a damaged or truncated one exit 5, a database of the wrong kind exit 5', () => {
    const d = tmpDir();
    const garbage = path.join(d, 'garbage.mmdb');
    fs.writeFileSync(garbage, Buffer.alloc(4000, 0x6e));
    const truncated = path.join(d, 'truncated.mmdb');
    fs.writeFileSync(truncated, fs.readFileSync(CITY).subarray(0, 5000));
    const empty = path.join(d, 'empty.mmdb');
    fs.writeFileSync(empty, '');
    const cases: [string, 'country' | 'asn', string, number][] = [
      [path.join(d, 'nope.mmdb'), 'country', 'ERR_GEOIP_MISSING', ExitCode.NOT_FOUND],
      [garbage, 'country', 'ERR_GEOIP_CORRUPT', ExitCode.INTEGRITY],
      [truncated, 'country', 'ERR_GEOIP_CORRUPT', ExitCode.INTEGRITY],
      [empty, 'asn', 'ERR_GEOIP_CORRUPT', ExitCode.INTEGRITY],
      [ASN, 'country', 'ERR_GEOIP_KIND', ExitCode.INTEGRITY],
      [CITY, 'asn', 'ERR_GEOIP_KIND', ExitCode.INTEGRITY],
    ];
    for (const [file, kind, code, exit] of cases) {
      let err: any;
      try {
        openGeoDb(file, kind, 'gateway.geoip_db');
      } catch (e) {
        err = e;
      }
      expect({ file, code: err?.code, exit: err?.exitCode }).toEqual({ file, code, exit });
      expect(err.message).toContain(`gateway.geoip_db '${file}'`);
    }
  });

  it('dsk.json: a bad network block or site name is refused naming the field', () => {
    const base = { format: 'dsk-config/1', home_id: 'abcdef0123456789', backend: 'software', created_at: 'x' };
    expect(checkConfig({ ...base, network: NETWORK, gateway: { geoip_db: CITY, anomaly_learning: '7d' } }).ok).toBe(true);
    expect(checkConfig({ ...base, network: { '10.0.0.0/33': 'x' } })).toMatchObject({ ok: false, field: 'network.10.0.0.0/33' });
    expect(checkConfig({ ...base, network: { '10.0.0.0/8': 'bad name' } })).toMatchObject({ ok: false, field: 'network.10.0.0.0/8' });
    expect(checkConfig({ ...base, network: { '10.0.0.0/8': 'unmapped' } })).toMatchObject({ ok: false, field: 'network.10.0.0.0/8' });
    expect(checkConfig({ ...base, gateway: { anomaly_learning: 'soon' } })).toMatchObject({ ok: false, field: 'gateway.anomaly_learning' });
  });
});

describe('the gateway learns where each key is used from', () => {
  let h: Home;
  let homeDir: string;
  let env: NodeJS.ProcessEnv;
  let up: StubUpstream;
  let gw: Gateway;
  let k: Record<string, IssuedKey>;
  const clock = fixedClock(Date.now());

  beforeAll(async () => {
    const t = await openTestHome();
    h = t.h;
    homeDir = t.home;
    env = t.env;
    up = await startStubUpstream();
    k = await keys(h, { app: { name: 'app', role: 'developer' }, other: { name: 'other', role: 'developer' } });
    h.config.network = NETWORK;
    h.config.gateway = { geoip_db: CITY, asn_db: ASN, anomaly_learning: '1h' };
  });
  afterAll(async () => {
    await gw?.close();
    await up?.close();
    await h?.close();
  });

  const from = (key: IssuedKey, ip: string) => call(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${key.api_key}`, 'X-Forwarded-For': ip } });
  const anomalies = async () => (await h.store.events.query({ actions: ['ANOMALY'], limit: 1000 })).sort((a, b) => a.seq - b.seq).map((r) => ({ key: r.key_id, ip: r.source_ip, actor: r.actor, d: JSON.parse(r.details) }));

  it('no anomaly while learning; past it a new country, ASN or site is one ANOMALY row each, naming key, address and why', async () => {
    gw = await gateway(h, up.url, { trustProxy: true }, clock);
    for (const ip of ['81.2.69.142', '10.1.2.3', '2.125.160.216']) expect((await from(k.app, ip)).status).toBe(200);
    await gw.flush();
    expect(await anomalies()).toEqual([]);
    const db = rawDb(homeDir);
    expect(db.prepare('SELECT kind, value FROM key_sources WHERE key_id = ? ORDER BY kind, value').all(k.app.id)).toEqual([
      { kind: 'country', value: 'GB' },
      { kind: 'site', value: 'dc-east' },
      { kind: 'site', value: 'unmapped' },
    ]);

    clock.advance(2 * 3_600_000);
    // known sources: nothing new
    for (const ip of ['81.2.69.142', '2.125.160.216', '10.1.2.3']) expect((await from(k.app, ip)).status).toBe(200);
    // Sweden: a new country, three requests, one row
    for (let i = 0; i < 3; i++) expect((await from(k.app, '89.160.20.112')).status).toBe(200);
    // Telstra: a new ASN; the lab: a new site
    expect((await from(k.app, '1.128.0.1')).status).toBe(200);
    expect((await from(k.app, '10.1.7.9')).status).toBe(200);
    // another key still learning (its first use is now) raises nothing
    expect((await from(k.other, '175.16.199.0')).status).toBe(200);
    await gw.flush();
    const rows = await anomalies();
    // (the GB test addresses have no ASN in the test database; the Swedish one has AS29518)
    expect(rows.map((r) => [r.key, r.ip, r.d.reason])).toEqual([
      [k.app.id, '89.160.20.112', 'NEW_COUNTRY'],
      [k.app.id, '89.160.20.112', 'NEW_ASN'],
      [k.app.id, '1.128.0.1', 'NEW_ASN'],
      [k.app.id, '10.1.7.9', 'NEW_SITE'],
    ]);
    expect(rows[0]).toMatchObject({ actor: `key:${k.app.id}`, d: { country: 'SE', known: ['GB'], labels: { site: 'unmapped', country: 'SE', asn: 'AS29518' } } });
    expect(rows[1].d).toMatchObject({ asn: 'AS29518', asn_org: 'Bredband2 AB', known: [] });
    expect(rows[2].d).toMatchObject({ asn: 'AS1221', asn_org: 'Telstra Pty Ltd', known: ['AS29518'] });
    expect(rows[3].d).toMatchObject({ site: 'lab', known: ['unmapped', 'dc-east'] });
    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(/^dsk_gateway_anomalies_total 4$/m);
    db.close();
    expect(JSON.parse(dsk(['audit', 'verify', '--json'], { env }).stdout)).toMatchObject({ ok: true });
  });

  it('the history outlives a restart: a new gateway knows what the last one learned', async () => {
    await gw.close();
    gw = await gateway(h, up.url, { trustProxy: true }, clock);
    for (const ip of ['89.160.20.112', '1.128.0.1', '10.1.7.9', '81.2.69.142']) expect((await from(k.app, ip)).status).toBe(200);
    expect((await from(k.app, '216.160.83.56')).status).toBe(200); // the US: new
    await gw.flush();
    expect((await anomalies()).slice(4).map((r) => [r.d.reason, r.d.country ?? r.d.asn])).toEqual([
      ['NEW_COUNTRY', 'US'],
      ['NEW_ASN', 'AS209'],
    ]);
  });
});

describe('dsk serve with a bad GeoIP setting', () => {
  it('exits before asking for a passphrase: 4 for a missing file, 5 for a damaged one, 5 for a damaged network map', () => {
    const m = makeHome();
    const cfgPath = path.join(m.home, 'dsk.json');
    const cfg = JSON.parse(fs.readFileSync(cfgPath, 'utf8'));
    const bad = path.join(tmpDir(), 'GeoLite2-City.mmdb');
    fs.writeFileSync(bad, 'not a database');
    const cases: [Record<string, unknown>, number, RegExp][] = [
      [{ gateway: { geoip_db: '/nonexistent/GeoLite2-City.mmdb' } }, 4, /gateway\.geoip_db '\/nonexistent\/GeoLite2-City\.mmdb' does not exist/],
      [{ gateway: { geoip_db: bad } }, 5, /is not a readable MaxMind database/],
      [{ gateway: { asn_db: CITY } }, 5, /gateway\.asn_db .* is a GeoIP2-City database; expected an ASN database/],
      [{ network: { '10.0.0.0/99': 'x' } }, 5, /network\.10\.0\.0\.0\/99: expected a CIDR block/],
      [{ alerts: { rules: [], webhook: { url: 'http://127.0.0.1:9/', secret_file: '/nonexistent/secret' } } }, 4, /alerts\.webhook\.secret_file '\/nonexistent\/secret' does not exist/],
    ];
    for (const [extra, code, message] of cases) {
      fs.writeFileSync(cfgPath, JSON.stringify({ ...cfg, ...extra }));
      // no passphrase source at all: the error must come before the unseal would fail
      const r = dsk(['serve', '--upstream', 'http://127.0.0.1:1', '--listen', '127.0.0.1:0'], { env: { DSK_HOME: m.home } });
      expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code, stderr: expect.stringMatching(message) });
      expect(r.stderr.split('\n').filter(Boolean).length).toBeLessThanOrEqual(2);
    }
  });
});
