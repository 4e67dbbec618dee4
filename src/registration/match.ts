// Maps an attested workload to a SPIFFE ID through registration entries.
import type { VerifiedAttestation } from '../attestation/facade.ts';
import { WritError } from '../errors.ts';
import type { RegistrationEntry } from '../store/types.ts';

export interface ResolvedIdentity {
  spiffeId: string;
  /** The entry whose limits apply; null for an identity bound by the evidence itself with no entry. */
  entry: RegistrationEntry | null;
}

/** An entry matches when every one of its selectors is among the attested ones. */
export function entryMatches(entry: RegistrationEntry, attested: ReadonlySet<string>): boolean {
  return entry.selectors.length > 0 && entry.selectors.every((s) => attested.has(s));
}

// Among several entries for one SPIFFE ID, the most specific (most selectors) decides the limits.
function mostSpecific(entries: RegistrationEntry[]): RegistrationEntry | null {
  let best: RegistrationEntry | null = null;
  for (const e of entries) {
    if (!best || e.selectors.length > best.selectors.length) best = e;
    else if (e.selectors.length === best.selectors.length && e.createdAt < best.createdAt) best = e;
  }
  return best;
}

/**
 * Resolves the identity to issue for.
 * - Evidence that binds a SPIFFE ID (a join token) yields exactly that ID; a matching entry for it, if any,
 *   supplies its limits.
 * - Otherwise the matching entries decide; `requested` picks one SPIFFE ID among several.
 */
export function resolveIdentity(
  attestation: VerifiedAttestation,
  entries: RegistrationEntry[],
  requested?: string,
): ResolvedIdentity {
  const attested = new Set(attestation.selectors);
  const matching = entries.filter((e) => entryMatches(e, attested));

  if (attestation.spiffeId !== undefined) {
    if (requested !== undefined && requested !== attestation.spiffeId) {
      throw new WritError('ERR_NO_MATCHING_ENTRY', 'the evidence does not attest the requested SPIFFE ID');
    }
    const bound = attestation.spiffeId;
    return { spiffeId: bound, entry: mostSpecific(matching.filter((e) => e.spiffeId === bound)) };
  }

  if (requested !== undefined) {
    const entry = mostSpecific(matching.filter((e) => e.spiffeId === requested));
    if (!entry)
      throw new WritError('ERR_NO_MATCHING_ENTRY', 'no registration entry grants the requested SPIFFE ID');
    return { spiffeId: requested, entry };
  }

  const ids = new Set(matching.map((e) => e.spiffeId));
  if (ids.size === 0) throw new WritError('ERR_NO_MATCHING_ENTRY');
  if (ids.size > 1) throw new WritError('ERR_AMBIGUOUS_ENTRY');
  const entry = mostSpecific(matching);
  return { spiffeId: entry!.spiffeId, entry };
}
