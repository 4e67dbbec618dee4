// Which policies read facts of attestation time (selectors, posture): a decision made without attestation
// (/v1/authorize at use time, an X.509-SVID renewal over mTLS) cannot honour them, so it fails closed.
import type { PolicyEngine } from './engine.ts';

/** Attributes only attestation knows: the workload's selectors and posture facts. */
const ATTESTATION_FACTS: readonly string[] = ['selectors', 'posture'];
const cache = new WeakMap<object, Map<string, string[]>>();

/**
 * The ids of the policies for `action` that read `selectors` or `posture`. A forbid on selectors must never be
 * skipped because the request has none: a caller that cannot supply them denies when this is not empty.
 */
export function policiesNeedingAttestationFacts(policy: PolicyEngine, action: string): string[] {
  const set = policy.policySet;
  let byAction = cache.get(set);
  if (!byAction) {
    byAction = new Map();
    cache.set(set, byAction);
  }
  let ids = byAction.get(action);
  if (!ids) {
    // From Cedar's parse of each policy (every `.attr`, `["attr"]` and `has attr`), not from its text: a
    // spelling the text search missed would skip a forbid. Any attribute of these names counts.
    ids = (set.byAction.get(action) ?? []).filter((id) => {
      const read = set.attributesByPolicy.get(id);
      return read === undefined || ATTESTATION_FACTS.some((a) => read.has(a));
    });
    byAction.set(action, ids);
  }
  return ids;
}
