/**
 * Alert rules (domain/alert-rules.ts) evaluated by the gateway itself, once a second, off the
 * request path: request counts come from the /metrics counters (the differences since the last
 * tick), audit-action rules (quota, anomaly) from the audit rows written since the last tick —
 * read back from the store, so rows another part of dsk or another gateway wrote count too.
 *
 * Each rule has episodes (one, or one per key for a per-key QPS rule). An episode fires once when
 * its condition holds (for `for`, for QPS), and resolves once when it stops holding (audit rules:
 * after `clear_after` with no matching row). Each transition is an ALERT audit row (committed with
 * the next usage flush), the gauge dsk_gateway_alert_firing, and a webhook message when one is set.
 */
import { iso, type Clock } from '../kernel/clock.js';
import type { AlertRule } from '../domain/alert-rules.js';
import type { AuditReads } from '../store/store.js';
import type { Metrics } from './metrics.js';
import type { SideWrites } from './side-writes.js';
import type { WebhookSender } from './webhook.js';

/** Routes that are not traffic: scrapes and health checks do not count toward QPS or error rate. */
const NOT_TRAFFIC = new Set(['/metrics', '/healthz']);
const AUDIT_PAGE = 1000;

interface Sample {
  at: number;
  ms: number;
  total: number;
  perKey: Map<string, number>;
  authFailures: number;
  errors: number;
}

interface Episode {
  rule: AlertRule;
  key: string | null;
  pendingSince: number | null;
  firingSince: number | null;
  lastMatch: number;
  value: number;
  keys?: Set<string>;
}

export interface AlertDeps {
  metrics: Metrics;
  events: AuditReads;
  side: SideWrites;
  webhook: WebhookSender | null;
  clock: Clock;
}

export class AlertEngine {
  readonly #samples: Sample[] = [];
  readonly #prev = new Map<string, number>();
  readonly #episodes = new Map<string, Episode>();
  readonly #watched: Map<string, AlertRule[]>;
  readonly #keepMs: number;
  readonly auditCounts = new Map<string, number>();
  readonly episodes = new Map<string, number>();
  #lastTick = 0;
  #auditSeq = 0;
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<void> | null = null;

  constructor(
    readonly rules: AlertRule[],
    private readonly deps: AlertDeps,
  ) {
    this.#watched = new Map();
    for (const r of rules) if (r.kind === 'audit') for (const a of r.actions) this.#watched.set(a, [...(this.#watched.get(a) ?? []), r]);
    this.#keepMs = Math.max(1000, ...rules.map((r) => ('windowMs' in r ? r.windowMs : 0)));
  }

  /** Starts from now: counts and audit rows from before do not count. Ticks every `tickMs` unless 0 (tests tick by hand). */
  async start(tickMs = 1000): Promise<void> {
    this.#delta();
    this.#lastTick = this.deps.clock.now();
    if (this.#watched.size) this.#auditSeq = (await this.deps.events.last())?.seq ?? 0;
    if (tickMs > 0) {
      this.#timer = setInterval(() => void this.tick(), tickMs);
      this.#timer.unref();
    }
  }

  /** One evaluation; a call while one runs waits for it instead of overlapping. */
  tick(): Promise<void> {
    this.#running ??= this.#evaluate().finally(() => (this.#running = null));
    return this.#running;
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
  }

  /** Firing episodes: alert name and key (null for rules over all keys). */
  firing(): { alert: string; key: string | null; since: number; value: number }[] {
    return [...this.#episodes.values()].filter((e) => e.firingSince !== null).map((e) => ({ alert: e.rule.name, key: e.key, since: e.firingSince!, value: e.value }));
  }

  /** Counter differences since the last call. */
  #delta(): Omit<Sample, 'at' | 'ms'> {
    const s = { total: 0, perKey: new Map<string, number>(), authFailures: 0, errors: 0 };
    for (const [key, route, status, n] of this.deps.metrics.requestCounters()) {
      const id = `${key}\u0000${route}\u0000${status}`;
      const d = n - (this.#prev.get(id) ?? 0);
      this.#prev.set(id, n);
      if (d <= 0) continue;
      if (status === 401) s.authFailures += d;
      if (NOT_TRAFFIC.has(route)) continue;
      s.total += d;
      if (status >= 500) s.errors += d;
      if (key !== '-') s.perKey.set(key, (s.perKey.get(key) ?? 0) + d);
    }
    return s;
  }

  async #evaluate(): Promise<void> {
    const now = this.deps.clock.now();
    const sample: Sample = { ...this.#delta(), at: now, ms: Math.max(1, now - this.#lastTick) };
    this.#lastTick = now;
    this.#samples.push(sample);
    while (this.#samples.length && this.#samples[0].at <= now - this.#keepMs) this.#samples.shift();
    const hits = await this.#auditHits();
    for (const rule of this.rules) {
      switch (rule.kind) {
        case 'qps': {
          const perSecond = (n: number) => (n * 1000) / sample.ms;
          if (rule.scope === 'all') this.#hold(rule, null, perSecond(sample.total), now, sample.ms);
          else if (rule.scope === 'per_key') {
            const keys = new Set([...sample.perKey.keys(), ...[...this.#episodes.values()].filter((e) => e.rule === rule).map((e) => e.key!)]);
            for (const k of keys) this.#hold(rule, k, perSecond(sample.perKey.get(k) ?? 0), now, sample.ms);
          } else this.#hold(rule, rule.scope.key, perSecond(sample.perKey.get(rule.scope.key) ?? 0), now, sample.ms);
          break;
        }
        case 'auth_failures':
          this.#hold(rule, null, this.#window(rule.windowMs, now, (s) => s.authFailures), now, 0);
          break;
        case 'upstream_error_rate': {
          const total = this.#window(rule.windowMs, now, (s) => s.total);
          const rate = total >= rule.minRequests ? this.#window(rule.windowMs, now, (s) => s.errors) / total : 0;
          this.#hold(rule, null, rate, now, 0);
          break;
        }
        case 'audit': {
          const h = hits.get(rule);
          const e = this.#episode(rule, null);
          if (h) {
            e.lastMatch = now;
            e.value = h.count;
            for (const k of h.keys) if ((e.keys ??= new Set()).size < 20) e.keys.add(k);
            if (e.firingSince === null) this.#fire(e, now);
          } else if (e.firingSince !== null && now - e.lastMatch >= rule.clearAfterMs) this.#resolve(e, now);
          break;
        }
      }
    }
  }

  #window(ms: number, now: number, f: (s: Sample) => number): number {
    let n = 0;
    for (const s of this.#samples) if (s.at > now - ms) n += f(s);
    return n;
  }

  #episode(rule: AlertRule, key: string | null): Episode {
    const id = `${rule.name}\u0000${key ?? ''}`;
    let e = this.#episodes.get(id);
    if (!e) this.#episodes.set(id, (e = { rule, key, pendingSince: null, firingSince: null, lastMatch: 0, value: 0 }));
    return e;
  }

  /** A threshold rule: `value` above it for `for` (QPS) fires; back at or under it resolves. */
  #hold(rule: AlertRule & { above: number }, key: string | null, value: number, now: number, sampleMs: number): void {
    const e = this.#episode(rule, key);
    e.value = value;
    if (value > rule.above) {
      e.pendingSince ??= now - sampleMs;
      const forMs = rule.kind === 'qps' ? rule.forMs : 0;
      if (e.firingSince === null && now - e.pendingSince >= forMs) this.#fire(e, now);
      return;
    }
    e.pendingSince = null;
    if (e.firingSince !== null) this.#resolve(e, now);
    if (key !== null && rule.kind === 'qps' && rule.scope === 'per_key') this.#episodes.delete(`${rule.name}\u0000${key}`);
  }

  /** Audit rows since the last tick with a watched action, per rule. */
  async #auditHits(): Promise<Map<AlertRule, { count: number; keys: string[] }>> {
    const hits = new Map<AlertRule, { count: number; keys: string[] }>();
    if (!this.#watched.size) return hits;
    try {
      for (let page = 0; page < 10; page++) {
        const rows = await this.deps.events.after(this.#auditSeq, AUDIT_PAGE);
        for (const r of rows) {
          this.#auditSeq = r.seq;
          const rules = this.#watched.get(r.action);
          if (!rules) continue;
          this.auditCounts.set(r.action, (this.auditCounts.get(r.action) ?? 0) + 1);
          for (const rule of rules) {
            const h = hits.get(rule) ?? { count: 0, keys: [] };
            h.count++;
            if (r.key_id && !h.keys.includes(r.key_id)) h.keys.push(r.key_id);
            hits.set(rule, h);
          }
        }
        if (rows.length < AUDIT_PAGE) break;
      }
    } catch {
      // the store is busy: the same rows are read at the next tick
    }
    return hits;
  }

  #fire(e: Episode, now: number): void {
    e.firingSince = now;
    this.episodes.set(e.rule.name, (this.episodes.get(e.rule.name) ?? 0) + 1);
    this.#emit(e, 'firing', now);
  }

  #resolve(e: Episode, now: number): void {
    this.#emit(e, 'resolved', now);
    e.firingSince = null;
    e.pendingSince = null;
    e.keys = undefined;
  }

  #emit(e: Episode, state: 'firing' | 'resolved', now: number): void {
    const r = e.rule;
    const threshold = 'above' in r ? r.above : null;
    const details: Record<string, unknown> = {
      alert: r.name,
      kind: r.kind === 'audit' ? r.source : r.kind,
      state,
      value: Math.round(e.value * 1000) / 1000,
      ...(threshold !== null ? { threshold } : { actions: r.kind === 'audit' ? r.actions : [] }),
      ...(e.keys?.size ? { keys: [...e.keys] } : {}),
      since: iso(e.firingSince),
      via: 'dsk serve',
    };
    this.deps.side.audit({ action: 'ALERT', actor: 'dsk serve', source_ip: null, key_id: e.key, details });
    this.deps.webhook?.send({ ...details, key_id: e.key, at: iso(now) });
  }
}
