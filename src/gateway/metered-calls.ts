/**
 * The per-request side of usage metering, between the rate limit and the upstream: the model
 * named in the body is checked against the key's allow-list, the key's quotas are checked, and
 * when the answer ends its status, tokens and source go to the hourly counters, the quota tracker
 * and the live view. With `countTokens` off, bodies are read only for keys limited to some models
 * and answers are not scanned (what the benchmark compares).
 */
import type http from 'node:http';
import type { Clock } from '../kernel/clock.js';
import { compileModelPatterns, type ModelMatcher } from '../domain/model-patterns.js';
import type { IndexedKey } from './key-index.js';
import type { KeyOptions } from './key-options.js';
import type { LiveStats } from './live-stats.js';
import { filtersModelList, modelRefusal, ModelListFilter } from './model-gate.js';
import type { QuotaTracker } from './quota-tracker.js';
import type { Refusal } from './refusals.js';
import { answerTap, meterRequest, type AnswerTap, type HourlyUsage } from './usage-meter.js';
import type { AnswerRewrite } from './usage-scan.js';

export interface MeteredCall {
  keyId: string;
  hasQuota: boolean;
  model: string;
  expectsUsage: boolean;
  ip: string;
  body: Buffer;
  answer: AnswerTap | null;
  tap: (ur: http.IncomingMessage) => AnswerRewrite | null;
}

const NO_MODELS: ModelMatcher = null;

export class MeteredCalls {
  /** compiled allow-lists, per options object (a key index reload makes new ones) */
  readonly #matchers = new WeakMap<KeyOptions, ModelMatcher>();

  constructor(
    private readonly countTokens: boolean,
    private readonly hourly: HourlyUsage,
    private readonly quotas: QuotaTracker,
    private readonly live: LiveStats,
    private readonly clock: Clock,
  ) {}

  #matcher(o: KeyOptions): ModelMatcher {
    if (!o.models) return NO_MODELS;
    let m = this.#matchers.get(o);
    if (m === undefined) this.#matchers.set(o, (m = compileModelPatterns(o.models)));
    return m;
  }

  /** The call to forward, or the refusal (model not allowed, quota used up). */
  begin(req: http.IncomingMessage, k: IndexedKey, routeName: string, pathname: string, body: Buffer, ip: string, now: number): MeteredCall | Refusal {
    const models = this.#matcher(k.options);
    const m = this.countTokens || models ? meterRequest(routeName, body, this.countTokens) : { model: '', body, injected: false, expectsUsage: false };
    const denied = modelRefusal(models, routeName, pathname, m.model, k.row.id);
    if (denied) return denied;
    const over = this.quotas.check(k.row.id, k.options, now);
    if (over) return over;
    const answer = this.countTokens ? answerTap(m.injected) : null;
    // a compressed answer cannot be read as it passes: ask the upstream for the plain one
    if (answer && m.expectsUsage) delete req.headers['accept-encoding'];
    const list = filtersModelList(models, routeName);
    return {
      keyId: k.row.id,
      hasQuota: !!k.options.quota,
      model: m.model,
      expectsUsage: m.expectsUsage,
      ip,
      body: m.body,
      answer,
      tap: (ur) => {
        if (list && (ur.statusCode ?? 500) < 300) return new ModelListFilter(models);
        return answer ? answer.attach(ur) : null;
      },
    };
  }

  /** The answer has ended (or the connection closed). */
  end(c: MeteredCall, status: number): void {
    const now = this.clock.now();
    const t = status < 400 && c.answer ? c.answer.finish() : null;
    const tokens = t ? t.prompt + t.completion : 0;
    this.hourly.record(c.keyId, c.model, status, t, c.expectsUsage && this.countTokens, now);
    if (c.hasQuota) this.quotas.add(c.keyId, tokens);
    this.live.record(c.keyId, status, tokens, c.ip, now);
  }
}
