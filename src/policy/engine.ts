// The policy decision point: pre-parsed Cedar policies, one fail-closed decision per request.
import { randomUUID } from 'node:crypto';
import type { VerifiedAttestation } from '../attestation/facade.ts';
import { type AuthorizationAnswer, preparsePolicySet, statefulIsAuthorized } from './cedar.ts';
import { PolicyError } from './errors.ts';
import { type CompiledPolicySet, loadPolicySet, type PolicyInfo } from './loader.ts';
import { buildCedarRequest, type DecisionRequest } from './request.ts';

export interface Decision {
  decision: 'allow' | 'deny';
  /** The `@id` of every policy that determined the decision; empty for a deny with no permit. */
  reasons: string[];
  /** Why evaluation failed (for logs and audit; not for callers: it may name request values). */
  errors: string[];
  /** The smallest `@max_ttl` among the determining permits, in seconds. */
  ttlCap?: number;
  approvalRequired: boolean;
  /** The determining permits annotated `@approval("required")`. */
  approvalPolicies: string[];
}

interface Active {
  readonly set: CompiledPolicySet;
  readonly byId: ReadonlyMap<string, PolicyInfo>;
  readonly slot: 0 | 1;
  /** The pre-parsed slice of each action that has policies; an action without one is denied unevaluated. */
  readonly sliceIds: ReadonlyMap<string, string>;
  /** Decisions of this set by the exact Cedar request (see `decide`); dropped with the set. */
  readonly decisions: Map<string, Decision>;
}

export interface PolicyEngineOptions {
  /**
   * How many decisions to remember per loaded set (default 4,096; 0: none). A decision is a pure function of
   * the policies and the Cedar request, and the request holds only the attributes policies read: requests
   * that agree on all of those (the same workload, audience and action, with policies that read no
   * per-request value such as `task` or `now`) get the remembered answer without a call into Cedar.
   */
  decisionCache?: number | undefined;
}

const DEFAULT_DECISION_CACHE = 4096;
const MAX_CACHED_REQUEST = 2048;

export class PolicyEngine {
  // Cedar keeps pre-parsed sets in a process-wide cache without eviction: two slots per engine, alternating,
  // so reloads overwrite the sets no longer in use instead of piling up.
  readonly #base = `writ-policy-${randomUUID()}`;
  readonly #cacheSize: number;
  #active: Active;
  #reloads: Promise<unknown> = Promise.resolve();

  /** Loads `dir` (see loadPolicySet) and pre-parses it. Throws PolicyError. */
  static async load(opts: { dir: string } & PolicyEngineOptions): Promise<PolicyEngine> {
    return new PolicyEngine(await loadPolicySet({ dir: opts.dir }), opts);
  }

  constructor(set: CompiledPolicySet, opts: PolicyEngineOptions = {}) {
    const size = opts.decisionCache ?? DEFAULT_DECISION_CACHE;
    if (!Number.isSafeInteger(size) || size < 0) throw new TypeError('decisionCache must be a whole number');
    this.#cacheSize = size;
    this.#active = this.#prepare(set, 0);
  }

  get policySet(): CompiledPolicySet {
    return this.#active.set;
  }

  /** Changes whenever the loaded policies or schema change (for decision caches and audit records). */
  get version(): string {
    return this.#active.set.version;
  }

  /** Whether `action` can be decided on `resourceType` (a relying party's action is declared in the schema). */
  hasAction(action: string, resourceType: 'Audience' | 'Resource' = 'Resource'): boolean {
    return this.#active.set.actions.get(action)?.resourceTypes.includes(resourceType) ?? false;
  }

  /** Swaps in an already compiled set. Throws PolicyError (and keeps the current set) if Cedar refuses it. */
  replace(set: CompiledPolicySet): void {
    this.#active = this.#prepare(set, this.#active.slot === 0 ? 1 : 0);
  }

  /**
   * Loads and validates `dir` (default: the current set's directory) in full, then swaps it in. A bad set
   * throws PolicyError and the current set stays. Overlapping reloads run one after the other.
   */
  reload(dir?: string): Promise<CompiledPolicySet> {
    const run = this.#reloads.then(async () => {
      const from = dir ?? this.#active.set.dir;
      if (from === undefined)
        throw new TypeError('reload needs a directory: the current set was not loaded from one');
      const set = await loadPolicySet({ dir: from });
      this.replace(set);
      return set;
    });
    this.#reloads = run.catch(() => undefined);
    return run;
  }

  /** One decision. Never throws: anything that keeps Cedar from deciding is a deny with `errors`. */
  decide(request: DecisionRequest): Decision {
    const active = this.#active;
    const built = buildCedarRequest(active.set, request);
    if (typeof built === 'string') return deny([], [`request: ${built}`]);
    const sliceId = active.sliceIds.get(request.action);
    if (sliceId === undefined) return deny([], []); // no policy can permit this action
    // Keyed by everything Cedar is given (the slice is fixed by the action, which the request names).
    let key = this.#cacheSize > 0 ? JSON.stringify(built) : undefined;
    // Large requests (many caller facts at /v1/authorize) are not kept: the cache stays a few MB at most.
    if (key !== undefined && key.length > MAX_CACHED_REQUEST) key = undefined;
    if (key !== undefined) {
      const known = active.decisions.get(key);
      if (known !== undefined) return copy(known);
    }
    const decision = this.#evaluate(active, built, sliceId);
    // Only clean answers are kept: an evaluation that failed or erred is tried again next time.
    if (key !== undefined && decision.errors.length === 0) {
      const cache = active.decisions;
      if (cache.size >= this.#cacheSize) {
        // Oldest first (a Map iterates in insertion order).
        const oldest = cache.keys().next();
        if (!oldest.done) cache.delete(oldest.value);
      }
      cache.set(key, copy(decision));
    }
    return decision;
  }

  #evaluate(
    active: Active,
    built: Exclude<ReturnType<typeof buildCedarRequest>, string>,
    sliceId: string,
  ): Decision {
    let answer: AuthorizationAnswer;
    try {
      answer = statefulIsAuthorized({ ...built, preparsedPolicySetId: sliceId });
    } catch (e) {
      return deny([], [`evaluation failed: ${e instanceof Error ? e.message : String(e)}`]);
    }
    if (answer.type === 'failure')
      return deny(
        [],
        answer.errors.map((e) => `request: ${e.message}`),
      );
    const { decision, diagnostics } = answer.response;
    if (diagnostics.errors.length > 0) {
      // Cedar skips a policy that errs, so an erring forbid would let a permit through: fail closed instead.
      const errored = unique(diagnostics.errors.map((e) => e.policyId));
      const reasons = decision === 'deny' ? unique([...diagnostics.reason, ...errored]) : errored;
      return deny(
        reasons,
        diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`),
      );
    }
    if (decision === 'deny') return deny([...diagnostics.reason], []);
    return allow(active.byId, diagnostics.reason);
  }

  /** Decides every request (an issuance for several audiences): allowed only when all are. */
  decideAll(requests: readonly DecisionRequest[]): Decision {
    if (requests.length === 0) throw new TypeError('decideAll needs at least one request');
    return combine(requests.map((r) => this.decide(r)));
  }

  /** Pre-parses one slice per action into `slot` (never the one in use). */
  #prepare(set: CompiledPolicySet, slot: 0 | 1): Active {
    const sliceIds = new Map<string, string>();
    let n = 0;
    for (const [action, ids] of set.byAction) {
      if (ids.length === 0) continue;
      const sliceId = `${this.#base}-${slot}-${n++}`;
      const policies: Record<string, string> = {};
      for (const id of ids) policies[id] = set.staticPolicies[id]!;
      const parsed = preparsePolicySet(sliceId, { staticPolicies: policies });
      if (parsed.type === 'failure') {
        const where = set.dir ?? 'memory';
        throw new PolicyError(
          `cedar refused the policy set from ${where}`,
          parsed.errors.map((e) => ({ file: where, message: e.message })),
        );
      }
      sliceIds.set(action, sliceId);
    }
    return {
      set,
      byId: new Map(set.policies.map((p) => [p.id, p])),
      slot,
      sliceIds,
      decisions: new Map(),
    };
  }
}

/** The principal of a request, from what the attestor facade verified and the identity it resolved to. */
export function workloadFacts(
  attestation: VerifiedAttestation,
  identity: { spiffeId: string; trustDomain: string; task: string },
): DecisionRequest['principal'] {
  return {
    spiffeId: identity.spiffeId,
    trustDomain: identity.trustDomain,
    attestor: attestation.attestor,
    selectors: attestation.selectors,
    legacy: attestation.legacy,
    task: identity.task,
    posture: attestation.posture,
  };
}

function allow(byId: ReadonlyMap<string, PolicyInfo>, reasons: readonly string[]): Decision {
  let ttlCap: number | undefined;
  const approvalPolicies: string[] = [];
  for (const id of reasons) {
    const policy = byId.get(id);
    if (policy?.maxTtl !== undefined) ttlCap = Math.min(ttlCap ?? policy.maxTtl, policy.maxTtl);
    if (policy?.approval) approvalPolicies.push(id);
  }
  return {
    decision: 'allow',
    reasons: [...reasons],
    errors: [],
    ...(ttlCap === undefined ? {} : { ttlCap }),
    approvalRequired: approvalPolicies.length > 0,
    approvalPolicies,
  };
}

/** Every caller gets arrays of its own: a remembered decision is never shared. */
function copy(d: Decision): Decision {
  return {
    ...d,
    reasons: [...d.reasons],
    errors: [...d.errors],
    approvalPolicies: [...d.approvalPolicies],
  };
}

function deny(reasons: string[], errors: string[]): Decision {
  return { decision: 'deny', reasons, errors, approvalRequired: false, approvalPolicies: [] };
}

function combine(decisions: readonly Decision[]): Decision {
  const errors = unique(decisions.flatMap((d) => d.errors));
  const denied = decisions.filter((d) => d.decision === 'deny');
  if (denied.length > 0) return deny(unique(denied.flatMap((d) => d.reasons)), errors);
  const caps = decisions.flatMap((d) => (d.ttlCap === undefined ? [] : [d.ttlCap]));
  const approvalPolicies = unique(decisions.flatMap((d) => d.approvalPolicies));
  return {
    decision: 'allow',
    reasons: unique(decisions.flatMap((d) => d.reasons)),
    errors,
    ...(caps.length === 0 ? {} : { ttlCap: Math.min(...caps) }),
    approvalRequired: approvalPolicies.length > 0,
    approvalPolicies,
  };
}

function unique(items: readonly string[]): string[] {
  return [...new Set(items)];
}
