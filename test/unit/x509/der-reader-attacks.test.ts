// The hot path's DER reader (CSRs and SubjectPublicKeyInfos): malformed, non-canonical and hostile encodings.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createCsr } from '../../../src/keys/x509/csr-builder.ts';
import { DerError, decode } from '../../../src/keys/x509/der.ts';
import {
  childrenOf,
  readOidAt,
  readSmallUintAt,
  readTlv,
  TAG,
  walkDer,
} from '../../../src/keys/x509/der-reader.ts';
import { OID } from '../../../src/keys/x509/oids.ts';

const LIMITS = { maxBytes: 12 * 1024, maxDepth: 16 };

function derOf(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

function walkError(der: Buffer, limits = LIMITS): DerError {
  try {
    walkDer(der, limits);
  } catch (e) {
    if (e instanceof DerError) return e;
    throw e;
  }
  throw new Error('expected a DerError, the input was accepted');
}

/** Whether forge's strict decoder, held to a canonical re-encoding (the reader this one replaced), accepts. */
function forgeAccepts(der: Buffer): boolean {
  try {
    decode(der, LIMITS);
    return true;
  } catch (e) {
    if (e instanceof DerError) return false;
    throw e;
  }
}

/**
 * forge's one normalisation that is not DER's: it strips a redundant leading octet from any primitive element
 * whose tag number is 2, whatever its class ([2] IMPLICIT included), so it refuses such contents as non-canonical.
 * The reader holds only universal INTEGERs to that rule; an implicit [2] (a dNSName, say) is just bytes.
 */
function hasForgeTagTwoQuirk(der: Buffer, at = 0, end = der.length): boolean {
  while (at < end) {
    const t = readTlv(der, at, end);
    if (t.tag & 0x20) {
      if (hasForgeTagTwoQuirk(der, t.content, t.end)) return true;
    } else if ((t.tag & 0x1f) === 2 && t.tag !== TAG.INTEGER && t.end - t.content > 1) {
      const first = der[t.content]!;
      const next = der[t.content + 1]! & 0x80;
      if ((first === 0 && next === 0) || (first === 0xff && next !== 0)) return true;
    }
    at = t.end;
  }
  return false;
}

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('walkDer', () => {
  const csr = derOf(createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey));

  it('accepts a real request and reads its shape', () => {
    const root = walkDer(csr, LIMITS);
    expect(root.end).toBe(csr.length);
    expect(childrenOf(csr, root, 'request').map((c) => c.tag)).toEqual([
      TAG.SEQUENCE,
      TAG.SEQUENCE,
      TAG.BIT_STRING,
    ]);
  });

  it.each([
    ['empty input', ''],
    ['one byte', '30'],
    ['a length past the end', '30 05 02 01 00'],
    ['a child past its parent', '30 03 02 05 00 00 00'],
    ['a child that does not fill its parent', '30 04 02 01 00 05'],
    ['trailing bytes after the element', '30 03 02 01 00 00'],
    ['an indefinite length', '30 80 02 01 00 00 00'],
    ['a long-form length where a short one fits', '30 81 03 02 01 00'],
    ['a length with a leading zero octet', `30 82 00 83 ${'04 81 80'} ${'00'.repeat(128)}`],
    ['five length octets', '04 85 00 00 00 00 01 00'],
    ['the reserved length octet 0xff', '04 ff 00'],
    ['a high tag number', '1f 22 01 00'],
    ['an end-of-contents octet pair', '00 00'],
    ['a constructed BIT STRING (BER)', '23 05 03 03 00 ab cd'],
    ['a constructed OCTET STRING (BER)', '24 04 04 02 ab cd'],
    ['a constructed INTEGER', '22 03 02 01 00'],
    ['an INTEGER padded with a zero octet', '30 04 02 02 00 01'],
    ['an INTEGER padded with 0xff', '30 04 02 02 ff 80'],
    ['an empty INTEGER', '30 02 02 00'],
  ])('refuses %s', (_name, bytes) => {
    walkError(hex(bytes));
  });

  it('refuses long-form lengths that are not minimal, with the message the CSR parser passes on', () => {
    expect(walkError(hex('30 81 03 02 01 00')).message).toMatch(/canonical/);
    expect(walkError(hex('30 80 02 01 00 00 00')).message).toMatch(/indefinite/);
  });

  it('refuses nesting deeper than the limit, without recursing further', () => {
    // A chain of 40 SEQUENCEs, each the only child of the one before, around a NULL.
    let deep = hex('05 00');
    for (let i = 0; i < 40; i++) {
      const len = deep.length;
      const head = len < 0x80 ? [0x30, len] : [0x30, 0x81, len];
      deep = Buffer.concat([Buffer.from(head), deep]);
    }
    expect(walkError(deep).message).toMatch(/nested too deeply/);
    expect(() => walkDer(deep, { maxBytes: 4096, maxDepth: 64 })).not.toThrow();
  });

  it('refuses input over the byte limit before reading it', () => {
    expect(walkError(Buffer.alloc(LIMITS.maxBytes + 1, 0x30)).message).toMatch(/too large/);
  });

  it('a non-Buffer is a caller error', () => {
    expect(() => walkDer('3000' as unknown as Buffer, LIMITS)).toThrow(TypeError);
  });

  it('refuses every truncation of a real request', () => {
    for (let n = 0; n < csr.length; n++) walkError(csr.subarray(0, n));
  });

  it('accepts nothing that the canonical forge decoder refused (every one-byte change of a request)', () => {
    let accepted = 0;
    for (let i = 0; i < csr.length; i++) {
      for (const value of [0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0xff, csr[i]! ^ 0x20, csr[i]! + 1]) {
        const mutated = Buffer.from(csr);
        mutated[i] = value & 0xff;
        let ok = true;
        try {
          walkDer(mutated, LIMITS);
        } catch (e) {
          if (!(e instanceof DerError)) throw e;
          ok = false;
        }
        if (ok) {
          accepted++;
          expect(forgeAccepts(mutated) || hasForgeTagTwoQuirk(mutated), `byte ${i} := ${value}`).toBe(true);
        }
      }
    }
    // Changes inside contents keep the structure: many mutations are still well-formed DER.
    expect(accepted).toBeGreaterThan(csr.length);
  });

  it('throws only DerError on random input', () => {
    for (let i = 0; i < 5000; i++) {
      const bytes = randomBytes(1 + (i % 64));
      if (i % 2 === 0) bytes[0] = 0x30;
      try {
        walkDer(bytes, LIMITS);
        expect(forgeAccepts(bytes) || hasForgeTagTwoQuirk(bytes)).toBe(true);
      } catch (e) {
        expect(e).toBeInstanceOf(DerError);
      }
    }
  });
});

describe('readOidAt and readSmallUintAt', () => {
  // One element, read without the walk (which would refuse some of these before the readers see them).
  const one = (bytes: string) => {
    const der = hex(bytes);
    return { der, node: readTlv(der, 0, der.length) };
  };

  it('reads known and unknown OIDs', () => {
    const p256 = one('06 08 2a 86 48 ce 3d 03 01 07');
    expect(readOidAt(p256.der, p256.node, 'oid')).toBe(OID.p256);
    const other = one('06 03 2a 03 04');
    expect(readOidAt(other.der, other.node, 'oid')).toBe('1.2.3.4');
    const big = one('06 03 88 37 01');
    expect(readOidAt(big.der, big.node, 'oid')).toBe('2.999.1');
  });

  it.each([
    ['empty', '06 00'],
    ['a padded arc (0x80 first octet)', '06 09 2a 86 48 ce 3d 03 01 80 07'],
    ['a padded first arc', '06 04 80 2a 03 04'],
    ['an unterminated arc', '06 02 2a 86'],
  ])('refuses an OID that is %s', (_name, bytes) => {
    const { der, node } = one(bytes);
    expect(() => readOidAt(der, node, 'oid')).toThrow(DerError);
  });

  it('refuses an OID under the wrong tag', () => {
    const { der, node } = one('04 03 2a 03 04');
    expect(() => readOidAt(der, node, 'oid')).toThrow(/wrong type/);
  });

  it.each([
    ['negative', '02 01 80'],
    ['padded with a zero octet', '02 02 00 01'],
    ['empty', '02 00'],
    ['too large', '02 07 01 00 00 00 00 00 00'],
  ])('refuses a small INTEGER that is %s', (_name, bytes) => {
    const { der, node } = one(bytes);
    expect(() => readSmallUintAt(der, node, 'int')).toThrow(DerError);
  });

  it('reads small INTEGERs, with the zero octet a set top bit needs', () => {
    for (const [bytes, value] of [
      ['02 01 00', 0],
      ['02 01 7f', 127],
      ['02 02 00 80', 128],
      ['02 02 01 00', 256],
    ] as const) {
      const { der, node } = one(bytes);
      expect(readSmallUintAt(der, node, 'int')).toBe(value);
    }
  });
});
