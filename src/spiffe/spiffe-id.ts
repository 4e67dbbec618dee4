// SPIFFE IDs and trust domain names, parsed and validated strictly per the SPIFFE-ID standard.

import { z } from 'zod';
import { WritError } from '../errors.ts';

export interface SpiffeId {
  readonly trustDomain: string;
  /** '' for the ID of the trust domain itself, else '/a/b'. */
  readonly path: string;
  toString(): string;
}

const SCHEME_PREFIX = 'spiffe://';
// The standard counts bytes; every accepted character is ASCII, so string length equals byte length.
const MAX_ID_LENGTH = 2048;
// RFC 3986 limits the host to 255, and the trust domain is the host.
const MAX_TRUST_DOMAIN_LENGTH = 255;

// Character checks are done by code point rather than with a regex so that no `$`/multiline quirk
// (e.g. a trailing newline) can ever slip through.
function isLowerAlnum(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39);
}

function isUpper(c: number): boolean {
  return c >= 0x41 && c <= 0x5a;
}

function isPunct(c: number): boolean {
  return c === 0x2e /* . */ || c === 0x5f /* _ */ || c === 0x2d; /* - */
}

function trustDomainReason(td: string): string | null {
  if (td.length === 0) return 'trust domain is empty';
  if (td.length > MAX_TRUST_DOMAIN_LENGTH) return `trust domain exceeds ${MAX_TRUST_DOMAIN_LENGTH} bytes`;
  // Named before the generic character check because they are the usual URI mistakes worth explaining.
  if (td.includes('://')) return 'trust domain must be a bare name, not a uri';
  if (td.includes('@')) return 'trust domain must not contain userinfo';
  if (td.includes(':')) return 'trust domain must not contain a port';
  if (td.includes('%')) return 'trust domain must not contain percent-encoding';
  for (let i = 0; i < td.length; i++) {
    const c = td.charCodeAt(i);
    if (isLowerAlnum(c) || isPunct(c)) continue;
    // Refused rather than lowercased: a normalized name would not match the issued SVIDs byte for byte.
    if (isUpper(c)) return 'trust domain must be lowercase';
    return 'trust domain contains an invalid character';
  }
  return null;
}

function segmentReason(segment: string): string | null {
  if (segment === '.' || segment === '..') return 'path must not contain dot segments';
  if (segment.includes('%')) return 'path must not contain percent-encoding';
  for (let i = 0; i < segment.length; i++) {
    const c = segment.charCodeAt(i);
    if (!(isLowerAlnum(c) || isUpper(c) || isPunct(c))) return 'path contains an invalid character';
  }
  return null;
}

function pathReason(path: string): string | null {
  if (path === '') return null;
  const segments = path.slice(1).split('/');
  for (let i = 0; i < segments.length; i++) {
    const segment = segments[i]!;
    if (segment === '') {
      return i === segments.length - 1 ? 'path must not end with a slash' : 'path contains an empty segment';
    }
    const reason = segmentReason(segment);
    if (reason) return reason;
  }
  return null;
}

type Parsed = { ok: true; trustDomain: string; path: string } | { ok: false; reason: string };

function parse(input: string): Parsed {
  const fail = (reason: string): Parsed => ({ ok: false, reason });
  if (input.length === 0) return fail('spiffe id is empty');
  if (input.length > MAX_ID_LENGTH) return fail(`spiffe id exceeds ${MAX_ID_LENGTH} bytes`);
  // Case-sensitive on purpose: the scheme is only ever written `spiffe`, and accepting variants would
  // give one identity several spellings.
  if (!input.startsWith(SCHEME_PREFIX)) return fail('spiffe id must start with spiffe://');
  const rest = input.slice(SCHEME_PREFIX.length);
  const q = rest.indexOf('?');
  const h = rest.indexOf('#');
  // Whichever delimiter comes first decides, as in RFC 3986 (a `?` after `#` belongs to the fragment).
  if (q >= 0 && (h < 0 || q < h)) return fail('spiffe id must not contain a query');
  if (h >= 0) return fail('spiffe id must not contain a fragment');
  const slash = rest.indexOf('/');
  const trustDomain = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  const tdReason = trustDomainReason(trustDomain);
  if (tdReason) return fail(tdReason);
  const pReason = pathReason(path);
  if (pReason) return fail(pReason);
  return { ok: true, trustDomain, path };
}

function makeId(trustDomain: string, path: string): SpiffeId {
  const text = `${SCHEME_PREFIX}${trustDomain}${path}`;
  return Object.freeze({ trustDomain, path, toString: () => text });
}

function invalid(reason: string): WritError {
  return new WritError('ERR_SPIFFE_ID_INVALID', reason);
}

export function parseSpiffeId(input: string): SpiffeId {
  // A non-string here is a programming error, not bad client input, so it is not a WritError.
  if (typeof input !== 'string') throw new TypeError('spiffe id must be a string');
  const r = parse(input);
  if (!r.ok) throw invalid(r.reason);
  return makeId(r.trustDomain, r.path);
}

export function validateSpiffeId(input: string): string | null {
  if (typeof input !== 'string') return 'spiffe id must be a string';
  const r = parse(input);
  return r.ok ? null : r.reason;
}

export function isTrustDomainId(id: SpiffeId | string): boolean {
  if (typeof id !== 'string') return id.path === '';
  const r = parse(id);
  return r.ok && r.path === '';
}

export function parseTrustDomain(input: string): string {
  if (typeof input !== 'string') throw new TypeError('trust domain must be a string');
  // Anything URI-shaped is judged as an ID, so `SPIFFE://x` gets a scheme error rather than a port error.
  if (input.includes('://')) {
    const r = parse(input);
    if (!r.ok) throw invalid(r.reason);
    // Silently dropping a path would let a workload ID pass where a trust domain was meant.
    if (r.path !== '') throw invalid('trust domain id must not have a path');
    return r.trustDomain;
  }
  const reason = trustDomainReason(input);
  if (reason) throw invalid(reason);
  return input;
}

export function isMemberOf(id: SpiffeId | string, trustDomain: string): boolean {
  let td: string;
  try {
    td = parseTrustDomain(trustDomain);
  } catch {
    // Membership is an authorization question: anything unparseable is simply not a member.
    return false;
  }
  if (typeof id === 'string') {
    const r = parse(id);
    return r.ok && r.trustDomain === td;
  }
  return id.trustDomain === td;
}

export function formatSpiffeId(trustDomain: string, ...segments: string[]): string {
  const tdReason = trustDomainReason(trustDomain);
  if (tdReason) throw invalid(tdReason);
  for (const segment of segments) {
    if (segment === '') throw invalid('path contains an empty segment');
    // Said explicitly because joining would otherwise turn one argument into several segments.
    if (segment.includes('/')) throw invalid('path segment must not contain a slash');
    const reason = segmentReason(segment);
    if (reason) throw invalid(reason);
  }
  const id = `${SCHEME_PREFIX}${trustDomain}${segments.map((s) => `/${s}`).join('')}`;
  // Segments are valid individually; only the total length can still be wrong.
  const reason = validateSpiffeId(id);
  if (reason) throw invalid(reason);
  return id;
}

export const spiffeIdSchema = z.string().superRefine((value, ctx) => {
  const reason = validateSpiffeId(value);
  if (reason) ctx.addIssue({ code: 'custom', message: reason });
});

export const trustDomainSchema = z.string().superRefine((value, ctx) => {
  const reason = trustDomainReason(value);
  if (reason) ctx.addIssue({ code: 'custom', message: reason });
});
