/**
 * Keys limited to some models (`dsk keygen --models 'deepseek-r1,deepseek-v3*'`). A request that
 * names another model, or a restricted key's request that names none, is refused with 403 in
 * OpenAI's error shape; the model lists (`GET /v1/models`, Ollama's `GET /api/tags`) are filtered
 * to the key's models; `GET /v1/models/{id}` of another model is refused like a request for it.
 */
import { modelAllowed, type ModelMatcher } from '../domain/model-patterns.js';
import type { Refusal } from './refusals.js';
import type { AnswerRewrite } from './usage-scan.js';

const LIST_ROUTES = new Set(['GET /v1/models', 'GET /api/tags']);
const MAX_LIST_BYTES = 8 * 1024 * 1024;

/** The refusal for a request naming `model` ('' when none) under allow-list `m`, or null to go on. */
export function modelRefusal(m: ModelMatcher, routeName: string, pathname: string, model: string, keyId: string): Refusal | null {
  if (m === null || LIST_ROUTES.has(routeName)) return null;
  let named = model;
  if (routeName === 'GET /v1/models/*') named = decodeURIComponent(pathname.slice('/v1/models/'.length));
  else if (routeName.startsWith('GET ') || routeName.startsWith('DELETE ')) return null;
  if (named && modelAllowed(m, named)) return null;
  const message = named ? `this key may not use model '${named.slice(0, 100)}'` : 'this key is limited to some models and the request names none';
  return { status: 403, type: 'permission_error', code: 'model_not_allowed', message, reason: 'MODEL_DENIED', keyId };
}

export function filtersModelList(m: ModelMatcher, routeName: string): boolean {
  return m !== null && LIST_ROUTES.has(routeName);
}

/** Buffers a (small) model list answer and drops the models the key may not use. */
export class ModelListFilter implements AnswerRewrite {
  #chunks: Buffer[] = [];
  #size = 0;
  constructor(private readonly m: ModelMatcher) {}

  chunk(c: Buffer): null {
    this.#size += c.length;
    if (this.#size > MAX_LIST_BYTES) throw new Error('model list too large');
    this.#chunks.push(c);
    return null;
  }

  end(): string {
    const text = Buffer.concat(this.#chunks).toString('utf8');
    try {
      const o = JSON.parse(text) as Record<string, unknown>;
      const keep = (e: unknown, field: 'id' | 'name') => !!e && typeof e === 'object' && typeof (e as Record<string, unknown>)[field] === 'string' && modelAllowed(this.m, (e as Record<string, string>)[field]);
      if (Array.isArray(o.data)) o.data = o.data.filter((e) => keep(e, 'id'));
      if (Array.isArray(o.models)) o.models = o.models.filter((e) => keep(e, 'name') || keep(e, 'id'));
      return JSON.stringify(o);
    } catch {
      // not a list we can read: show none rather than all
      return JSON.stringify({ object: 'list', data: [] });
    }
  }
}
