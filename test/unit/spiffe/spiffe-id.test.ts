// Unit tests for SPIFFE ID and trust domain parsing against the SPIFFE-ID standard.

import { describe, expect, it } from 'vitest';
import { WritError } from '../../../src/errors.ts';
import {
  formatSpiffeId,
  isMemberOf,
  isTrustDomainId,
  parseSpiffeId,
  parseTrustDomain,
  spiffeIdSchema,
  trustDomainSchema,
  validateSpiffeId,
} from '../../../src/spiffe/spiffe-id.ts';

const PREFIX = 'spiffe://';
const TD_255 = 'a'.repeat(255);
const TD_256 = 'a'.repeat(256);
// 'spiffe://td' is 11 bytes; pad with one path segment to hit the limit exactly.
const ID_2048 = `${PREFIX}td/${'x'.repeat(2048 - PREFIX.length - 3)}`;
const ID_2049 = `${PREFIX}td/${'x'.repeat(2049 - PREFIX.length - 3)}`;
// The longest trust domain plus a path still within the total limit.
const ID_TD_255 = `${PREFIX}${TD_255}/${'y'.repeat(2048 - PREFIX.length - 255 - 1)}`;

function expectInvalid(fn: () => unknown, reason: string): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(WritError);
  const err = caught as WritError;
  expect(err.code).toBe('ERR_SPIFFE_ID_INVALID');
  expect(err.status).toBe(400);
  expect(err.detail).toBe(reason);
}

describe('boundary fixtures', () => {
  it('have the intended lengths', () => {
    expect(ID_2048).toHaveLength(2048);
    expect(ID_2049).toHaveLength(2049);
    expect(ID_TD_255).toHaveLength(2048);
  });
});

describe('parseSpiffeId: valid', () => {
  it.each([
    ['spiffe://example.org', 'example.org', ''],
    ['spiffe://example.org/workload', 'example.org', '/workload'],
    ['spiffe://staging.example.com/payments/mysql', 'staging.example.com', '/payments/mysql'],
    ['spiffe://k8s-west.example.com/ns/staging/sa/default', 'k8s-west.example.com', '/ns/staging/sa/default'],
    [
      'spiffe://example.com/9eebccd2-12bf-40a6-b262-65fe0487d453',
      'example.com',
      '/9eebccd2-12bf-40a6-b262-65fe0487d453',
    ],
    ['spiffe://a_b-c.d/x', 'a_b-c.d', '/x'],
    ['spiffe://0123456789/x', '0123456789', '/x'],
    ['spiffe://td/MixedCase/UPPER', 'td', '/MixedCase/UPPER'],
    ['spiffe://td/a_b-c.d', 'td', '/a_b-c.d'],
    ['spiffe://td/...', 'td', '/...'],
    ['spiffe://td/.a', 'td', '/.a'],
    ['spiffe://td/a.', 'td', '/a.'],
    ['spiffe://td/..a', 'td', '/..a'],
    ['spiffe://td/a/.../b', 'td', '/a/.../b'],
    ['spiffe://td/-/_', 'td', '/-/_'],
    [ID_2048, 'td', ID_2048.slice(`${PREFIX}td`.length)],
    [ID_TD_255, TD_255, ID_TD_255.slice(PREFIX.length + 255)],
  ])('accepts %s', (input, trustDomain, path) => {
    const id = parseSpiffeId(input);
    expect(id.trustDomain).toBe(trustDomain);
    expect(id.path).toBe(path);
    expect(id.toString()).toBe(input);
    expect(`${id}`).toBe(input);
    expect(validateSpiffeId(input)).toBeNull();
  });

  it('returns a frozen value', () => {
    const id = parseSpiffeId('spiffe://example.org/a');
    expect(Object.isFrozen(id)).toBe(true);
  });
});

const INVALID_IDS: ReadonlyArray<readonly [string, string, string]> = [
  // overall
  ['empty string', '', 'spiffe id is empty'],
  ['2049 bytes', ID_2049, 'spiffe id exceeds 2048 bytes'],
  // scheme
  ['uppercase scheme', 'SPIFFE://example.org/a', 'spiffe id must start with spiffe://'],
  ['mixed-case scheme', 'Spiffe://example.org/a', 'spiffe id must start with spiffe://'],
  ['missing scheme', 'example.org/a', 'spiffe id must start with spiffe://'],
  ['scheme-relative', '//example.org/a', 'spiffe id must start with spiffe://'],
  ['http scheme', 'http://example.org/a', 'spiffe id must start with spiffe://'],
  ['https scheme', 'https://example.org/a', 'spiffe id must start with spiffe://'],
  ['single slash', 'spiffe:/x', 'spiffe id must start with spiffe://'],
  ['no slashes', 'spiffe:example.org', 'spiffe id must start with spiffe://'],
  ['scheme only', 'spiffe', 'spiffe id must start with spiffe://'],
  ['leading space', ' spiffe://example.org/a', 'spiffe id must start with spiffe://'],
  ['leading newline', '\nspiffe://example.org/a', 'spiffe id must start with spiffe://'],
  // trust domain
  ['empty trust domain', 'spiffe://', 'trust domain is empty'],
  ['empty trust domain with path', 'spiffe:///a', 'trust domain is empty'],
  ['256-byte trust domain', `${PREFIX}${TD_256}/a`, 'trust domain exceeds 255 bytes'],
  ['uppercase trust domain', 'spiffe://Example.org/a', 'trust domain must be lowercase'],
  ['all-uppercase trust domain', 'spiffe://EXAMPLE.ORG', 'trust domain must be lowercase'],
  ['port', 'spiffe://example.org:8443/a', 'trust domain must not contain a port'],
  ['empty port', 'spiffe://example.org:/a', 'trust domain must not contain a port'],
  ['userinfo', 'spiffe://user@example.org/a', 'trust domain must not contain userinfo'],
  ['userinfo with password', 'spiffe://user:pw@example.org/a', 'trust domain must not contain userinfo'],
  [
    'percent-encoded trust domain',
    'spiffe://ex%61mple.org/a',
    'trust domain must not contain percent-encoding',
  ],
  ['space in trust domain', 'spiffe://example .org/a', 'trust domain contains an invalid character'],
  ['tab in trust domain', 'spiffe://example\t.org/a', 'trust domain contains an invalid character'],
  [
    'trailing newline after trust domain',
    'spiffe://example.org\n',
    'trust domain contains an invalid character',
  ],
  ['unicode trust domain', 'spiffe://exämple.org/a', 'trust domain contains an invalid character'],
  ['NUL in trust domain', 'spiffe://example\0.org/a', 'trust domain contains an invalid character'],
  ['IPv6 literal', 'spiffe://[::1]/a', 'trust domain must not contain a port'],
  ['plus in trust domain', 'spiffe://ex+ample.org/a', 'trust domain contains an invalid character'],
  ['backslash in trust domain', 'spiffe://example.org\\a', 'trust domain contains an invalid character'],
  // query and fragment
  ['query', 'spiffe://example.org/a?x=1', 'spiffe id must not contain a query'],
  ['empty query', 'spiffe://example.org/a?', 'spiffe id must not contain a query'],
  ['query on trust domain', 'spiffe://example.org?x', 'spiffe id must not contain a query'],
  ['fragment', 'spiffe://example.org/a#frag', 'spiffe id must not contain a fragment'],
  ['empty fragment', 'spiffe://example.org/a#', 'spiffe id must not contain a fragment'],
  ['fragment on trust domain', 'spiffe://example.org#x', 'spiffe id must not contain a fragment'],
  ['query then fragment', 'spiffe://example.org/a?q#f', 'spiffe id must not contain a query'],
  ['fragment then ?', 'spiffe://example.org/a#f?q', 'spiffe id must not contain a fragment'],
  // path structure
  ['trailing slash', 'spiffe://example.org/a/', 'path must not end with a slash'],
  ['root path only', 'spiffe://example.org/', 'path must not end with a slash'],
  ['empty segment', 'spiffe://example.org/a//b', 'path contains an empty segment'],
  ['leading empty segment', 'spiffe://example.org//a', 'path contains an empty segment'],
  ['double slash only', 'spiffe://example.org//', 'path contains an empty segment'],
  ['dot segment', 'spiffe://example.org/a/./b', 'path must not contain dot segments'],
  ['dot-dot segment', 'spiffe://example.org/a/../b', 'path must not contain dot segments'],
  ['dot as whole path', 'spiffe://example.org/.', 'path must not contain dot segments'],
  ['dot-dot as whole path', 'spiffe://example.org/..', 'path must not contain dot segments'],
  ['trailing dot segment', 'spiffe://example.org/a/.', 'path must not contain dot segments'],
  ['trailing dot-dot segment', 'spiffe://example.org/a/..', 'path must not contain dot segments'],
  // path characters
  ['percent-encoded path', 'spiffe://example.org/a%2Fb', 'path must not contain percent-encoding'],
  ['percent-encoded dot', 'spiffe://example.org/%2e', 'path must not contain percent-encoding'],
  ['space in path', 'spiffe://example.org/a b', 'path contains an invalid character'],
  ['tab in path', 'spiffe://example.org/a\tb', 'path contains an invalid character'],
  ['trailing newline', 'spiffe://a/b\n', 'path contains an invalid character'],
  ['trailing CRLF', 'spiffe://a/b\r\n', 'path contains an invalid character'],
  ['embedded newline', 'spiffe://a/b\nc', 'path contains an invalid character'],
  ['multi-line input', 'spiffe://a/b\nspiffe://a/c', 'path contains an invalid character'],
  ['trailing space', 'spiffe://a/b ', 'path contains an invalid character'],
  ['unicode path', 'spiffe://example.org/caf\u00e9', 'path contains an invalid character'],
  ['emoji path', 'spiffe://example.org/\u{1f600}', 'path contains an invalid character'],
  ['NUL in path', 'spiffe://example.org/a\0b', 'path contains an invalid character'],
  ['colon in path', 'spiffe://example.org/a:b', 'path contains an invalid character'],
  ['at sign in path', 'spiffe://example.org/a@b', 'path contains an invalid character'],
  ['tilde in path', 'spiffe://example.org/~a', 'path contains an invalid character'],
  ['backslash in path', 'spiffe://example.org/a\\b', 'path contains an invalid character'],
];

describe('parseSpiffeId: invalid', () => {
  it.each(INVALID_IDS)('refuses %s', (_name, input, reason) => {
    expectInvalid(() => parseSpiffeId(input), reason);
  });
});

describe('validateSpiffeId', () => {
  it.each(INVALID_IDS)('reports %s', (_name, input, reason) => {
    expect(validateSpiffeId(input)).toBe(reason);
  });

  it('reports a non-string instead of throwing', () => {
    expect(validateSpiffeId(42 as unknown as string)).toBe('spiffe id must be a string');
  });
});

describe('parseSpiffeId: non-string input', () => {
  it.each([[undefined], [null], [42], [{}], [['spiffe://a/b']], [new String('spiffe://a/b')]])(
    'throws TypeError for %o',
    (input) => {
      expect(() => parseSpiffeId(input as unknown as string)).toThrow(TypeError);
    },
  );
});

describe('isTrustDomainId', () => {
  it.each([
    ['spiffe://example.org', true],
    ['spiffe://example.org/a', false],
    ['spiffe://example.org/', false],
    ['spiffe://Example.org', false],
    ['example.org', false],
    ['', false],
  ])('%s -> %s', (input, expected) => {
    expect(isTrustDomainId(input)).toBe(expected);
  });

  it('accepts parsed values', () => {
    expect(isTrustDomainId(parseSpiffeId('spiffe://example.org'))).toBe(true);
    expect(isTrustDomainId(parseSpiffeId('spiffe://example.org/a'))).toBe(false);
  });
});

describe('parseTrustDomain', () => {
  it.each([
    ['example.org', 'example.org'],
    ['spiffe://example.org', 'example.org'],
    ['a', 'a'],
    ['a_b-c.d', 'a_b-c.d'],
    [TD_255, TD_255],
    [`${PREFIX}${TD_255}`, TD_255],
  ])('accepts %s', (input, expected) => {
    expect(parseTrustDomain(input)).toBe(expected);
  });

  it.each([
    ['empty', '', 'trust domain is empty'],
    ['256 bytes', TD_256, 'trust domain exceeds 255 bytes'],
    ['uppercase', 'Example.org', 'trust domain must be lowercase'],
    ['port', 'example.org:8443', 'trust domain must not contain a port'],
    ['userinfo', 'user@example.org', 'trust domain must not contain userinfo'],
    ['percent-encoding', 'ex%61mple.org', 'trust domain must not contain percent-encoding'],
    ['slash', 'example.org/a', 'trust domain contains an invalid character'],
    ['query', 'example.org?x', 'trust domain contains an invalid character'],
    ['fragment', 'example.org#x', 'trust domain contains an invalid character'],
    ['whitespace', 'example.org ', 'trust domain contains an invalid character'],
    ['trailing newline', 'example.org\n', 'trust domain contains an invalid character'],
    ['unicode', 'exämple.org', 'trust domain contains an invalid character'],
    ['NUL', 'example\0.org', 'trust domain contains an invalid character'],
    ['uppercase scheme', 'SPIFFE://example.org', 'spiffe id must start with spiffe://'],
    ['http scheme', 'http://example.org', 'spiffe id must start with spiffe://'],
    ['empty id', 'spiffe://', 'trust domain is empty'],
    ['id with path', 'spiffe://example.org/a', 'trust domain id must not have a path'],
    ['id with trailing slash', 'spiffe://example.org/', 'path must not end with a slash'],
    ['id with uppercase', 'spiffe://Example.org', 'trust domain must be lowercase'],
    ['id with port', 'spiffe://example.org:1', 'trust domain must not contain a port'],
  ])('refuses %s', (_name, input, reason) => {
    expectInvalid(() => parseTrustDomain(input), reason);
  });

  it('throws TypeError for a non-string', () => {
    expect(() => parseTrustDomain(undefined as unknown as string)).toThrow(TypeError);
  });
});

describe('isMemberOf', () => {
  it.each([
    ['spiffe://example.org/a', 'example.org', true],
    ['spiffe://example.org', 'example.org', true],
    ['spiffe://example.org/a', 'spiffe://example.org', true],
    ['spiffe://example.org/a', 'other.org', false],
    ['spiffe://example.org.evil/a', 'example.org', false],
    ['spiffe://sub.example.org/a', 'example.org', false],
    ['spiffe://example.org/a', 'Example.org', false],
    ['spiffe://Example.org/a', 'example.org', false],
    ['spiffe://example.org/a/', 'example.org', false],
    ['spiffe://example.org/a', '', false],
    ['spiffe://example.org/a', 'spiffe://example.org/a', false],
    ['example.org', 'example.org', false],
  ])('%s in %s -> %s', (id, td, expected) => {
    expect(isMemberOf(id, td)).toBe(expected);
  });

  it('accepts parsed values', () => {
    const id = parseSpiffeId('spiffe://example.org/a');
    expect(isMemberOf(id, 'example.org')).toBe(true);
    expect(isMemberOf(id, 'other.org')).toBe(false);
  });
});

describe('formatSpiffeId', () => {
  it.each<[string, string[], string]>([
    ['example.org', [], 'spiffe://example.org'],
    ['example.org', ['a'], 'spiffe://example.org/a'],
    ['example.org', ['ns', 'staging', 'sa', 'default'], 'spiffe://example.org/ns/staging/sa/default'],
    ['example.org', ['...', '.a', 'A_b-C'], 'spiffe://example.org/.../.a/A_b-C'],
    ['td', ['x'.repeat(2048 - PREFIX.length - 3)], ID_2048],
  ])('formats %s %j', (td, segments, expected) => {
    const id = formatSpiffeId(td, ...segments);
    expect(id).toBe(expected);
    expect(parseSpiffeId(id).toString()).toBe(expected);
  });

  it.each<[string, string, string[], string]>([
    ['empty trust domain', '', ['a'], 'trust domain is empty'],
    ['uppercase trust domain', 'Example.org', ['a'], 'trust domain must be lowercase'],
    [
      'trust domain with scheme',
      'spiffe://example.org',
      ['a'],
      'trust domain must be a bare name, not a uri',
    ],
    ['trust domain with port', 'example.org:1', ['a'], 'trust domain must not contain a port'],
    ['256-byte trust domain', TD_256, [], 'trust domain exceeds 255 bytes'],
    ['empty segment', 'example.org', ['a', ''], 'path contains an empty segment'],
    ['slash in segment', 'example.org', ['a/b'], 'path segment must not contain a slash'],
    ['dot segment', 'example.org', ['.'], 'path must not contain dot segments'],
    ['dot-dot segment', 'example.org', ['a', '..'], 'path must not contain dot segments'],
    ['percent-encoded segment', 'example.org', ['a%20b'], 'path must not contain percent-encoding'],
    ['query in segment', 'example.org', ['a?b'], 'path contains an invalid character'],
    ['fragment in segment', 'example.org', ['a#b'], 'path contains an invalid character'],
    ['whitespace in segment', 'example.org', ['a b'], 'path contains an invalid character'],
    ['newline in segment', 'example.org', ['a\n'], 'path contains an invalid character'],
    ['unicode segment', 'example.org', ['caf\u00e9'], 'path contains an invalid character'],
    ['too long', 'td', ['x'.repeat(2049 - PREFIX.length - 3)], 'spiffe id exceeds 2048 bytes'],
  ])('refuses %s', (_name, td, segments, reason) => {
    expectInvalid(() => formatSpiffeId(td, ...segments), reason);
  });
});

describe('spiffeIdSchema', () => {
  it.each(['spiffe://example.org', 'spiffe://example.org/a/b', ID_2048])('accepts %s', (input) => {
    expect(spiffeIdSchema.parse(input)).toBe(input);
  });

  it.each(INVALID_IDS)('refuses %s with the reason', (_name, input, reason) => {
    const result = spiffeIdSchema.safeParse(input);
    expect(result.success).toBe(false);
    expect(result.error?.issues).toHaveLength(1);
    expect(result.error?.issues[0]?.message).toBe(reason);
  });

  it('refuses a non-string', () => {
    expect(spiffeIdSchema.safeParse(42).success).toBe(false);
  });
});

describe('trustDomainSchema', () => {
  it.each(['example.org', 'a', TD_255])('accepts %s', (input) => {
    expect(trustDomainSchema.parse(input)).toBe(input);
  });

  it.each([
    ['', 'trust domain is empty'],
    [TD_256, 'trust domain exceeds 255 bytes'],
    ['Example.org', 'trust domain must be lowercase'],
    ['example.org:8443', 'trust domain must not contain a port'],
    ['user@example.org', 'trust domain must not contain userinfo'],
    ['ex%61mple.org', 'trust domain must not contain percent-encoding'],
    ['spiffe://example.org', 'trust domain must be a bare name, not a uri'],
    ['example.org/a', 'trust domain contains an invalid character'],
    ['example.org\n', 'trust domain contains an invalid character'],
    ['exämple.org', 'trust domain contains an invalid character'],
  ])('refuses %j with the reason', (input, reason) => {
    const result = trustDomainSchema.safeParse(input);
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toBe(reason);
  });
});
