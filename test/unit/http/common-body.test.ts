// The hand-written check of the common JWT-SVID body accepts only what the zod schema accepts, and gives what
// the schema would; everything else is left to the schema (and its error codes).
import { describe, expect, it } from 'vitest';
import { commonJwtSvidRequest, jwtSvidRequestSchema } from '../../../src/http/schemas.ts';

const schema = jwtSvidRequestSchema('writ.local');
const base = { attestor: 'static_key', evidence: { key: 'k' }, audience: ['https://api.example'] };

const variants: [string, unknown][] = [
  ['the common body', base],
  ['with ttl', { ...base, ttl: 300 }],
  ['evidence null', { ...base, evidence: null }],
  ['evidence a string', { ...base, evidence: 'token' }],
  ['attestor of 64', { ...base, attestor: 'a'.repeat(64) }],
  ['16 audiences', { ...base, audience: Array.from({ length: 16 }, (_, i) => `https://a${i}.example`) }],
  ['an audience of 512', { ...base, audience: ['a'.repeat(512)] }],
  ['an audience with a non-control character', { ...base, audience: ['https://é.example/✓'] }],
  ['the largest safe ttl', { ...base, ttl: Number.MAX_SAFE_INTEGER }],
  // Refused by the schema, or shapes the hand check leaves to it:
  ['no evidence', { attestor: 'static_key', audience: ['x'] }],
  ['no audience', { attestor: 'static_key', evidence: {} }],
  ['empty attestor', { ...base, attestor: '' }],
  ['attestor of 65', { ...base, attestor: 'a'.repeat(65) }],
  ['attestor a number', { ...base, attestor: 7 }],
  ['no audiences', { ...base, audience: [] }],
  ['17 audiences', { ...base, audience: Array.from({ length: 17 }, (_, i) => `https://a${i}.example`) }],
  ['an empty audience', { ...base, audience: [''] }],
  ['an audience of 513', { ...base, audience: ['a'.repeat(513)] }],
  ['an audience with NUL', { ...base, audience: ['https://a\u0000.example'] }],
  ['an audience with DEL', { ...base, audience: ['https://a\u007f.example'] }],
  ['an audience with a C1 control', { ...base, audience: ['https://a\u0085.example'] }],
  ['an audience with a newline', { ...base, audience: ['https://a\n.example'] }],
  ['an audience a number', { ...base, audience: [1] }],
  ['audience a string', { ...base, audience: 'https://api.example' }],
  ['ttl 0', { ...base, ttl: 0 }],
  ['ttl -1', { ...base, ttl: -1 }],
  ['ttl 1.5', { ...base, ttl: 1.5 }],
  ['ttl past the safe integers', { ...base, ttl: 2 ** 53 }],
  ['ttl a string', { ...base, ttl: '300' }],
  ['ttl null', { ...base, ttl: null }],
  ['an unknown field', { ...base, extra: 1 }],
  ['a __proto__ field', JSON.parse('{"attestor":"a","evidence":{},"audience":["x"],"__proto__":{"ttl":1}}')],
  ['a constructor field', { ...base, constructor: 1 }],
  ['with a task', { ...base, task: 'task-1' }],
  ['with a spiffeId', { ...base, spiffeId: 'spiffe://writ.local/a' }],
  ['with a foreign spiffeId', { ...base, spiffeId: 'spiffe://other.example/a' }],
  ['with an approval', { ...base, approval: `apr_${'a'.repeat(22)}` }],
  ['an array', [base]],
  ['null', null],
  ['a string', 'body'],
  ['an object with a null prototype', Object.assign(Object.create(null), base)],
  ['a class instance', Object.assign(new (class Body {})(), base)],
];

describe('commonJwtSvidRequest', () => {
  it.each(variants)('agrees with the schema: %s', (_name, body) => {
    const fast = commonJwtSvidRequest(body);
    const parsed = schema.safeParse(body);
    if (fast !== undefined) {
      expect(parsed.success).toBe(true);
      expect(fast).toEqual(parsed.data);
    }
  });

  it('takes the common shapes itself, and leaves every other to the schema', () => {
    const taken = variants.filter(([, body]) => commonJwtSvidRequest(body) !== undefined).map(([n]) => n);
    expect(taken).toEqual(variants.slice(0, 9).map(([n]) => n));
  });

  it('gives the caller an audience array of its own', () => {
    const audience = ['https://api.example'];
    const fast = commonJwtSvidRequest({ ...base, audience });
    expect(fast?.audience).toEqual(audience);
    expect(fast?.audience).not.toBe(audience);
  });
});
