// Policy at use time from the relying party: asks the broker's POST /v1/authorize, with a short decision
// cache so that a busy route does not ask for every request. Fails closed.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { VerifyError } from './errors.ts';
import { url } from './verifier.ts';

export interface AuthorizerOptions {
  /** The broker's issuer URL (its base URL). */
  issuer: string;
  /** How long a decision is reused for the same token, action, resource and context. Default 1000 ms. */
  cacheTtlMs?: number | undefined;
  /** Most cached decisions; the oldest go first. Default 10,000. */
  maxEntries?: number | undefined;
  timeoutMs?: number | undefined;
  fetch?: typeof fetch | undefined;
  now?: (() => number) | undefined;
  /** Allow plain http:// to hosts other than loopback. Default false. */
  allowInsecureHttp?: boolean | undefined;
}

export interface AuthorizeQuery {
  action: string;
  resource: string;
  /** The address of the client presenting the token (policy's `source_ip`); the middleware sends req.ip. */
  sourceIp?: string | undefined;
  context?: Record<string, string | number | boolean> | undefined;
}

export interface AuthorizeDecision {
  decision: 'allow' | 'deny';
  /** The ids of the policies that decided (or `credential_inactive`). */
  reasons: string[];
}

const decisionSchema = z.object({
  decision: z.enum(['allow', 'deny']),
  reasons: z.array(z.string().max(256)).max(256),
  policyVersion: z.string().max(128).optional(),
});

export class Authorizer {
  readonly #url: string;
  readonly #ttl: number;
  readonly #max: number;
  readonly #timeout: number;
  readonly #fetch: typeof fetch;
  readonly #now: () => number;
  readonly #cache = new Map<string, { at: number; decision: AuthorizeDecision }>();
  #policyVersion: string | undefined;

  constructor(o: AuthorizerOptions) {
    // The same transport rule as the verifier's: https, plain http only to loopback or when allowed.
    this.#url = new URL('/v1/authorize', url('issuer', o.issuer, o.allowInsecureHttp)).href;
    this.#ttl = o.cacheTtlMs ?? 1_000;
    this.#max = o.maxEntries ?? 10_000;
    this.#timeout = o.timeoutMs ?? 2_000;
    this.#fetch = o.fetch ?? globalThis.fetch;
    this.#now = o.now ?? Date.now;
  }

  /** The broker's decision; throws VerifyError ERR_AUTHORIZE_UNAVAILABLE when it cannot be had (fail closed). */
  async authorize(token: string, query: AuthorizeQuery): Promise<AuthorizeDecision> {
    const key = createHash('sha256')
      .update(
        JSON.stringify([token, query.action, query.resource, query.sourceIp ?? null, query.context ?? null]),
      )
      .digest('base64url');
    const now = this.#now();
    const cached = this.#cache.get(key);
    if (cached && now - cached.at < this.#ttl) return cached.decision;
    let decision: AuthorizeDecision;
    try {
      const res = await this.#fetch(this.#url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ token, ...query }),
        signal: AbortSignal.timeout(this.#timeout),
      });
      if (res.status !== 200) throw new Error(`status ${res.status}`);
      const parsed = decisionSchema.parse(await res.json());
      // New policies at the broker: no cached answer of the old ones may be reused.
      if (parsed.policyVersion !== undefined && parsed.policyVersion !== this.#policyVersion) {
        if (this.#policyVersion !== undefined) this.#cache.clear();
        this.#policyVersion = parsed.policyVersion;
      }
      decision = { decision: parsed.decision, reasons: parsed.reasons };
    } catch (cause) {
      throw new VerifyError('ERR_AUTHORIZE_UNAVAILABLE', undefined, { cause });
    }
    this.#cache.delete(key);
    this.#cache.set(key, { at: now, decision });
    if (this.#cache.size > this.#max) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    return decision;
  }
}

export function createAuthorizer(options: AuthorizerOptions): Authorizer {
  return new Authorizer(options);
}
