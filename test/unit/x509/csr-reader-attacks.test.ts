// Attacks on the CSR parser of the issuance hot path (the zero-copy DER reader): truncations, bit flips, wrong
// lengths and tags, wrong OIDs and parameters, foreign signatures and refused keys. Every one is a CsrError.
import { constants, generateKeyPairSync, type KeyObject, sign } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { parseCsr, parseCsrAsync } from '../../../src/keys/x509/csr.ts';
import { createCsr } from '../../../src/keys/x509/csr-builder.ts';
import {
  type Asn1,
  bitString,
  contextConstructed,
  decode,
  encode,
  implicitPrimitive,
  nul,
  oid,
  seq,
  set,
  uint,
} from '../../../src/keys/x509/der.ts';
import { CsrError, type CsrErrorCode } from '../../../src/keys/x509/errors.ts';
import { OID } from '../../../src/keys/x509/oids.ts';
import { toPem } from '../../../src/keys/x509/pem.ts';
import { derElement, distinguishedName } from '../../../src/keys/x509/template.ts';

const pemOf = (der: Buffer) => toPem('CERTIFICATE REQUEST', der);
const derOf = (pem: string) => Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');

function outcome(der: Buffer): CsrErrorCode | 'accepted' {
  try {
    parseCsr(pemOf(der));
    return 'accepted';
  } catch (e) {
    if (e instanceof CsrError) return e.code;
    throw e;
  }
}

function refusal(der: Buffer): CsrError {
  try {
    parseCsr(pemOf(der));
  } catch (e) {
    if (e instanceof CsrError) return e;
    throw e;
  }
  throw new Error('expected a CsrError, the request was accepted');
}

const p256 = () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' });

function spkiOf(key: KeyObject): Asn1 {
  return decode(key.export({ type: 'spki', format: 'der' }), { maxBytes: 4096, maxDepth: 8 });
}

/** A CertificationRequest from parts, its info signed with `signer` (raw bytes where forge nodes will not do). */
function craft(parts: {
  version?: Asn1;
  subject?: Asn1;
  spki: Asn1;
  attributes?: Asn1;
  extraInfo?: Asn1[];
  algorithm?: Asn1;
  signer: KeyObject;
  hash?: string | null;
  signatureBits?: (signature: Buffer) => Asn1;
}): Buffer {
  const info = seq(
    parts.version ?? uint(0),
    parts.subject ?? distinguishedName([{ type: 'CN', value: 'crafted' }]),
    parts.spki,
    parts.attributes ?? contextConstructed(0),
    ...(parts.extraInfo ?? []),
  );
  const signature = sign(parts.hash === undefined ? 'sha256' : parts.hash, encode(info), parts.signer);
  return encode(
    seq(
      info,
      parts.algorithm ?? seq(oid(OID.ecdsaWithSha256)),
      (parts.signatureBits ?? ((s) => bitString(s)))(signature),
    ),
  );
}

describe('the CSR reader against mangled requests', () => {
  const { privateKey, publicKey } = p256();
  const good = derOf(createCsr(privateKey, { commonName: 'workload-cn' }));

  it('the control: the genuine request is accepted, sync and async alike', async () => {
    expect(outcome(good)).toBe('accepted');
    expect((await parseCsrAsync(pemOf(good))).publicKey.equals(publicKey)).toBe(true);
  });

  it('refuses every truncation with ERR_CSR_INVALID', () => {
    for (let n = 2; n < good.length; n++)
      expect(outcome(good.subarray(0, n)), `${n} bytes`).toBe('ERR_CSR_INVALID');
  });

  it('refuses every single-bit flip, with a CsrError and nothing else', () => {
    const seen = new Set<string>();
    for (let i = 0; i < good.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const flipped = Buffer.from(good);
        flipped[i]! ^= 1 << bit;
        const got = outcome(flipped);
        expect(got, `byte ${i} bit ${bit}`).not.toBe('accepted');
        seen.add(got);
      }
    }
    // Structure, key and signature faults all show up.
    expect(seen).toContain('ERR_CSR_INVALID');
    expect(seen).toContain('ERR_CSR_SIGNATURE');
  });

  it('refuses trailing bytes after the request and inside each of its SEQUENCEs', () => {
    expect(outcome(Buffer.concat([good, Buffer.from([0x00])]))).toBe('ERR_CSR_INVALID');
    expect(outcome(Buffer.concat([good, Buffer.from([0x05, 0x00])]))).toBe('ERR_CSR_INVALID');
    // A fifth field in the CertificationRequestInfo (signed, so the signature alone would not catch it).
    const fifth = craft({ spki: spkiOf(publicKey), extraInfo: [nul()], signer: privateKey });
    expect(refusal(fifth).message).toMatch(/four fields/);
  });

  it('refuses lengths that lie: one more, one less, and a long form where a short one fits', () => {
    // good = 30 81 LL | 30 81 LL (info) ...: change the info's length octet.
    expect(good[3]).toBe(0x30);
    for (const delta of [1, -1]) {
      const bad = Buffer.from(good);
      bad[5] = bad[5]! + delta;
      expect(outcome(bad)).toBe('ERR_CSR_INVALID');
    }
    const outerLength = good[2]!;
    const longer = Buffer.concat([Buffer.from([0x30, 0x82, 0x00, outerLength]), good.subarray(3)]);
    expect(refusal(longer).message).toMatch(/canonical/);
  });

  it('refuses an indefinite-length request', () => {
    const ber = Buffer.concat([Buffer.from([0x30, 0x80]), good.subarray(3), Buffer.from([0, 0])]);
    expect(outcome(ber)).toBe('ERR_CSR_INVALID');
  });

  it('refuses a version other than v1, and a padded version INTEGER', () => {
    expect(refusal(craft({ version: uint(1), spki: spkiOf(publicKey), signer: privateKey })).message).toMatch(
      /version/,
    );
    // forge's encoder would strip the padding: the info is written byte by byte.
    const info = derElement(
      0x30,
      Buffer.from([0x02, 0x02, 0x00, 0x00]),
      encode(distinguishedName([])),
      publicKey.export({ type: 'spki', format: 'der' }),
      Buffer.from([0xa0, 0x00]),
    );
    const der = derElement(
      0x30,
      info,
      encode(seq(oid(OID.ecdsaWithSha256))),
      encode(bitString(sign('sha256', info, privateKey))),
    );
    expect(refusal(der).message).toMatch(/canonical/);
  });

  it('refuses a subject that is not a SEQUENCE and attributes under another tag', () => {
    expect(outcome(craft({ subject: set(), spki: spkiOf(publicKey), signer: privateKey }))).toBe(
      'ERR_CSR_INVALID',
    );
    expect(
      outcome(craft({ attributes: contextConstructed(1), spki: spkiOf(publicKey), signer: privateKey })),
    ).toBe('ERR_CSR_INVALID');
    expect(
      outcome(craft({ attributes: implicitPrimitive(0, ''), spki: spkiOf(publicKey), signer: privateKey })),
    ).toBe('ERR_CSR_INVALID');
  });

  it('refuses a request signed by another key (no proof of possession)', async () => {
    const other = p256();
    const der = craft({ spki: spkiOf(publicKey), signer: other.privateKey });
    expect(outcome(der)).toBe('ERR_CSR_SIGNATURE');
    await expect(parseCsrAsync(pemOf(der))).rejects.toMatchObject({ code: 'ERR_CSR_SIGNATURE' });
    // The control: the same construction signed by the right key.
    expect(outcome(craft({ spki: spkiOf(publicKey), signer: privateKey }))).toBe('accepted');
  });

  it('refuses a signature with unused bits, or in a constructed BIT STRING', () => {
    const unused = craft({
      spki: spkiOf(publicKey),
      signer: privateKey,
      signatureBits: (s) => bitString(s, 1),
    });
    expect(outcome(unused)).toBe('ERR_CSR_INVALID');
    const constructed = craft({
      spki: spkiOf(publicKey),
      signer: privateKey,
      signatureBits: (s) => ({ ...seq(bitString(s)), type: 3 }),
    });
    expect(outcome(constructed)).toBe('ERR_CSR_INVALID');
  });

  it('refuses wrong and unknown signature algorithm OIDs and parameters', () => {
    const spki = spkiOf(publicKey);
    const cases: [Asn1, CsrErrorCode][] = [
      [seq(oid('1.2.840.10045.4.1')), 'ERR_CSR_UNSUPPORTED_ALGORITHM'], // ecdsa-with-SHA1
      [seq(oid('1.2.3.4')), 'ERR_CSR_UNSUPPORTED_ALGORITHM'],
      [seq(oid(OID.sha256WithRsa), nul()), 'ERR_CSR_UNSUPPORTED_ALGORITHM'], // does not fit an EC key
      [seq(oid(OID.ecdsaWithSha256), nul()), 'ERR_CSR_INVALID'], // RFC 5758: parameters absent
      [seq(oid(OID.ecdsaWithSha256), oid(OID.p256)), 'ERR_CSR_INVALID'],
      [seq(), 'ERR_CSR_INVALID'],
      [set(oid(OID.ecdsaWithSha256)), 'ERR_CSR_INVALID'],
    ];
    for (const [algorithm, code] of cases) {
      expect(outcome(craft({ spki, algorithm, signer: privateKey })), JSON.stringify(encode(algorithm))).toBe(
        code,
      );
    }
  });

  it('refuses RSA signature parameters that are not NULL', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const spki = spkiOf(rsa.publicKey);
    expect(outcome(craft({ spki, algorithm: seq(oid(OID.sha256WithRsa)), signer: rsa.privateKey }))).toBe(
      'accepted',
    );
    expect(
      outcome(craft({ spki, algorithm: seq(oid(OID.sha256WithRsa), nul()), signer: rsa.privateKey })),
    ).toBe('accepted');
    expect(
      outcome(craft({ spki, algorithm: seq(oid(OID.sha256WithRsa), uint(0)), signer: rsa.privateKey })),
    ).toBe('ERR_CSR_INVALID');
  });

  it('refuses wrong key algorithm OIDs and curve parameters', () => {
    const point = spkiOf(publicKey).value as Asn1[];
    const bits = point[1]!;
    const cases: [Asn1, CsrErrorCode, RegExp][] = [
      [seq(seq(oid('1.2.3.4'), oid(OID.p256)), bits), 'ERR_CSR_WEAK_KEY', /not supported/],
      [seq(seq(oid(OID.ecPublicKey)), bits), 'ERR_CSR_WEAK_KEY', /name their curve/],
      [seq(seq(oid(OID.ecPublicKey), seq(uint(1))), bits), 'ERR_CSR_WEAK_KEY', /name their curve/],
      [seq(seq(oid(OID.ecPublicKey), oid(OID.p224)), bits), 'ERR_CSR_WEAK_KEY', /too weak/],
      [seq(seq(oid(OID.ecPublicKey), oid(OID.p521)), bits), 'ERR_CSR_WEAK_KEY', /not supported/],
      // A P-256 point declared as P-384: the wrong length for the curve.
      [seq(seq(oid(OID.ecPublicKey), oid(OID.p384)), bits), 'ERR_CSR_INVALID', /malformed/],
      [seq(seq(oid(OID.ecPublicKey), oid(OID.p256)), bits, nul()), 'ERR_CSR_INVALID', /extra fields/],
      [seq(seq(oid(OID.ecPublicKey), oid(OID.p256))), 'ERR_CSR_INVALID', /malformed/],
      [seq(seq(oid(OID.ed25519), nul()), bits), 'ERR_CSR_INVALID', /absent/],
    ];
    for (const [spki, code, message] of cases) {
      const e = refusal(craft({ spki, signer: privateKey }));
      expect(e.code, message.source).toBe(code);
      expect(e.message).toMatch(message);
    }
  });

  it('refuses an RSA-1024 key and an RSA modulus that is not minimally encoded', () => {
    const small = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const e = refusal(derOf(createCsr(small.privateKey)));
    expect(e.code).toBe('ERR_CSR_WEAK_KEY');
    expect(e.message).toMatch(/at least 2048/);

    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = rsa.publicKey.export({ format: 'jwk' });
    const n = Buffer.from(jwk.n!, 'base64url');
    // 00 00 + n, where DER allows one 00 (n's top bit is set); written by hand, forge would strip it.
    const rsaKey = derElement(0x30, derElement(0x02, Buffer.from([0, 0]), n), encode(uint(65537)));
    const spki = seq(seq(oid(OID.rsaEncryption), nul()), bitString(rsaKey));
    const got = refusal(
      craft({ spki, algorithm: seq(oid(OID.sha256WithRsa), nul()), signer: rsa.privateKey }),
    );
    expect(got.code).toBe('ERR_CSR_INVALID');
  });

  it('refuses RSASSA-PSS parameters out of order, with a wrong trailer or a mismatched MGF1 digest', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const spki = spkiOf(rsa.publicKey);
    const sha256 = seq(oid(OID.sha256), nul());
    const mgf = (digest: string) => seq(oid(OID.mgf1), seq(oid(digest), nul()));
    const pss = (...fields: Asn1[]) => seq(oid(OID.rsassaPss), seq(...fields));
    const signPss = (algorithm: Asn1) =>
      outcome(
        craft({
          spki,
          algorithm,
          signer: {
            key: rsa.privateKey,
            padding: constants.RSA_PKCS1_PSS_PADDING,
            saltLength: 32,
          } as unknown as KeyObject,
        }),
      );
    const good = pss(
      contextConstructed(0, sha256),
      contextConstructed(1, mgf(OID.sha256)),
      contextConstructed(2, uint(32)),
    );
    expect(signPss(good)).toBe('accepted');
    expect(
      signPss(
        pss(
          contextConstructed(1, mgf(OID.sha256)),
          contextConstructed(0, sha256),
          contextConstructed(2, uint(32)),
        ),
      ),
    ).toBe('ERR_CSR_INVALID');
    expect(
      signPss(
        pss(
          contextConstructed(0, sha256),
          contextConstructed(1, mgf(OID.sha256)),
          contextConstructed(2, uint(32)),
          contextConstructed(3, uint(2)),
        ),
      ),
    ).toBe('ERR_CSR_INVALID');
    expect(
      signPss(
        pss(
          contextConstructed(0, sha256),
          contextConstructed(1, mgf(OID.sha384)),
          contextConstructed(2, uint(32)),
        ),
      ),
    ).toBe('ERR_CSR_UNSUPPORTED_ALGORITHM');
    expect(signPss(pss(contextConstructed(2, uint(32))))).toBe('ERR_CSR_UNSUPPORTED_ALGORITHM');
    expect(signPss(pss(implicitPrimitive(0, '')))).toBe('ERR_CSR_INVALID');
  });

  it('refuses a high tag number or a constructed string anywhere in the attributes', () => {
    const spki = spkiOf(publicKey);
    // [31] (high-tag form) inside the attributes, signed: only the DER walk can refuse it.
    const info = encode(seq(uint(0), distinguishedName([]), spki, contextConstructed(0)));
    const fields = info.subarray(2, info.length - 2); // the info's content without its empty attributes
    expect(info[1]).toBe(info.length - 2);
    const newInfo = derElement(0x30, fields, derElement(0xa0, Buffer.from([0x9f, 0x1f, 0x00])));
    const signature = sign('sha256', newInfo, privateKey);
    const der = derElement(
      0x30,
      newInfo,
      encode(seq(oid(OID.ecdsaWithSha256))),
      encode(bitString(signature)),
    );
    expect(refusal(der).message).toMatch(/high tag/);

    const constructedString = craft({
      spki,
      attributes: contextConstructed(0, seq(oid('1.2.840.113549.1.9.7'), set({ ...seq(), type: 4 }))),
      signer: privateKey,
    });
    expect(outcome(constructedString)).toBe('ERR_CSR_INVALID');
  });

  it('refuses base64 with non-zero padding bits (two PEMs that would decode to the same request)', () => {
    let b64 = '';
    for (let i = 0; i < 50 && !b64.endsWith('='); i++) {
      b64 = derOf(createCsr(p256().privateKey, { commonName: `cn-${i}` })).toString('base64');
    }
    expect(b64.endsWith('=')).toBe(true);
    const at = b64.length - (b64.endsWith('==') ? 3 : 2);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const sloppy = b64.slice(0, at) + alphabet[alphabet.indexOf(b64[at]!) | 1] + b64.slice(at + 1);
    expect(Buffer.from(sloppy, 'base64').equals(Buffer.from(b64, 'base64'))).toBe(true);
    const wrap = (text: string) =>
      `-----BEGIN CERTIFICATE REQUEST-----\n${text.replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    expect(() => parseCsr(wrap(b64))).not.toThrow();
    expect(() => parseCsr(wrap(sloppy))).toThrow(CsrError);
  });
});
