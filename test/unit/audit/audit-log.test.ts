// The record format: canonical JSON, the hash, secret detection and the chain check's edge cases.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  type AuditRecord,
  canonicalJson,
  GENESIS_HASH,
  hashSecret,
  recordHash,
  sealRecord,
  secretShape,
} from '../../../src/audit/audit-log.ts';

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');

describe('canonical JSON', () => {
  it('sorts keys at every level, drops undefined, keeps array order, writes no whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [3, 1, 2], c: 'x' }, u: undefined as never, n: null })).toBe(
      '{"a":{"c":"x","d":[3,1,2]},"b":1,"n":null}',
    );
  });

  it('orders keys by UTF-16 code units and writes numbers as ECMAScript does (RFC 8785)', () => {
    expect(canonicalJson({ é: 1, Z: 2, a: 3, '10': 4, '9': 5 })).toBe('{"10":4,"9":5,"Z":2,"a":3,"é":1}');
    expect(canonicalJson([1.5, 1e21, -0, 0.1, 2 ** 53])).toBe('[1.5,1e+21,0,0.1,9007199254740992]');
    expect(canonicalJson('line\nquote" \u2028')).toBe('"line\\nquote\\" \u2028"');
    expect(() => canonicalJson(Number.POSITIVE_INFINITY)).toThrow(TypeError);
  });
});

describe('record hash', () => {
  it('is SHA-256 of the canonical JSON of every field but hash (documented example)', () => {
    const record = sealRecord(
      {
        type: 'task.revoked',
        actor: 'admin:alice',
        subject: 'task-42',
        details: { reason: 'compromised', count: 3 },
      },
      { seq: 0, hash: GENESIS_HASH },
      1_700_000_000_000,
    );
    const canonical =
      '{"actor":"admin:alice","details":{"count":3,"reason":"compromised"},' +
      `"prev":"${GENESIS_HASH}","seq":1,"subject":"task-42","time":1700000000000,"type":"task.revoked"}`;
    expect(record.hash).toBe(sha256(canonical));
    expect(recordHash(record)).toBe(record.hash);
  });

  it('changes with any field, including prev and an absent versus empty field', () => {
    const base: AuditRecord = sealRecord(
      { type: 'a.b', actor: 'system:x' },
      { seq: 4, hash: 'a'.repeat(64) },
      1,
    );
    const variants: Omit<AuditRecord, 'hash'>[] = [
      { ...base, prev: 'b'.repeat(64) },
      { ...base, seq: 6 },
      { ...base, time: 2 },
      { ...base, policies: [] },
      { ...base, details: {} },
      { ...base, decision: 'allow' },
    ];
    const hashes = new Set(variants.map((v) => recordHash(v)));
    expect(hashes.size).toBe(variants.length);
    expect(hashes.has(base.hash)).toBe(false);
  });
});

describe('secrets', () => {
  it('hashSecret gives sha256:<hex>', () => {
    expect(hashSecret('writ_jt_x')).toBe(`sha256:${sha256('writ_jt_x')}`);
    expect(() => hashSecret('')).toThrow(TypeError);
  });

  it('recognises our bearer secrets and JWTs, not their hashes or ordinary values', () => {
    expect(secretShape(`writ_jt_${'a'.repeat(43)}`)).toBe('a join token');
    expect(secretShape(`Bearer writ_admin_${'a'.repeat(43)}`)).toBe('an admin token');
    expect(secretShape('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.')).toBe('a JWT');
    expect(secretShape('eyJhbGciOiJub25lIn0')).toBeNull();
    expect(secretShape(hashSecret('writ_jt_x'))).toBeNull();
    expect(secretShape('spiffe://example.org/ci/deploy')).toBeNull();
    expect(secretShape('policy.v1.default')).toBeNull();
  });
});
