import { describe, expect, it } from 'vitest';
import type { VerifiedAttestation } from '../../../src/attestation/facade.ts';
import type { WritError } from '../../../src/errors.ts';
import { entryMatches, resolveIdentity } from '../../../src/registration/match.ts';
import type { RegistrationEntry } from '../../../src/store/types.ts';

let n = 0;
function entry(
  spiffeId: string,
  selectors: string[],
  extra: Partial<RegistrationEntry> = {},
): RegistrationEntry {
  n += 1;
  return { id: `e${n}`, spiffeId, selectors, createdAt: n, updatedAt: n, ...extra };
}

function attested(selectors: string[], spiffeId?: string): VerifiedAttestation {
  return { attestor: 'x', legacy: false, selectors, posture: {}, spiffeId };
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return (e as WritError).code;
  }
  return 'none';
}

describe('registration entry matching', () => {
  it('matches when all of the entry selectors are attested, never with no selectors', () => {
    const set = new Set(['x:a:1', 'x:b:2']);
    expect(entryMatches(entry('spiffe://t/a', ['x:a:1']), set)).toBe(true);
    expect(entryMatches(entry('spiffe://t/a', ['x:a:1', 'x:b:2']), set)).toBe(true);
    expect(entryMatches(entry('spiffe://t/a', ['x:a:1', 'x:c:3']), set)).toBe(false);
    expect(entryMatches(entry('spiffe://t/a', []), set)).toBe(false);
  });

  it('resolves the single matching SPIFFE ID, using the most specific entry for limits', () => {
    const broad = entry('spiffe://t/a', ['x:a:1'], { jwtTtl: 600 });
    const narrow = entry('spiffe://t/a', ['x:a:1', 'x:b:2'], { jwtTtl: 60 });
    const other = entry('spiffe://t/b', ['x:c:3']);
    const r = resolveIdentity(attested(['x:a:1', 'x:b:2']), [broad, narrow, other]);
    expect(r).toEqual({ spiffeId: 'spiffe://t/a', entry: narrow });
  });

  it('refuses when nothing matches, and when several IDs match unless one is requested', () => {
    const a = entry('spiffe://t/a', ['x:a:1']);
    const b = entry('spiffe://t/b', ['x:b:2']);
    expect(codeOf(() => resolveIdentity(attested(['x:z:9']), [a, b]))).toBe('ERR_NO_MATCHING_ENTRY');
    expect(codeOf(() => resolveIdentity(attested(['x:a:1', 'x:b:2']), [a, b]))).toBe('ERR_AMBIGUOUS_ENTRY');
    expect(resolveIdentity(attested(['x:a:1', 'x:b:2']), [a, b], 'spiffe://t/b').entry).toBe(b);
    expect(codeOf(() => resolveIdentity(attested(['x:a:1']), [a, b], 'spiffe://t/b'))).toBe(
      'ERR_NO_MATCHING_ENTRY',
    );
  });

  it('gives evidence-bound identities exactly their ID, with a matching entry for limits when there is one', () => {
    const limits = entry('spiffe://t/jt', ['join_token:spiffe_id:spiffe://t/jt'], { jwtTtl: 30 });
    const unrelated = entry('spiffe://t/other', ['join_token:spiffe_id:spiffe://t/jt']);
    const a = attested(['join_token:spiffe_id:spiffe://t/jt'], 'spiffe://t/jt');
    expect(resolveIdentity(a, [limits, unrelated])).toEqual({ spiffeId: 'spiffe://t/jt', entry: limits });
    expect(resolveIdentity(a, [])).toEqual({ spiffeId: 'spiffe://t/jt', entry: null });
    expect(codeOf(() => resolveIdentity(a, [unrelated], 'spiffe://t/other'))).toBe('ERR_NO_MATCHING_ENTRY');
  });
});
