// The X509-SVID TBSCertificate spliced from bytes is, byte for byte, the one the ASN.1 builders encode.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decode, encode, time, uintFromBytes } from '../../../src/keys/x509/der.ts';
import {
  type CaKeyType,
  CertificateTemplate,
  distinguishedName,
  keyIdentifier,
  newSerial,
  signatureSuite,
  timeElement,
  uintElement,
} from '../../../src/keys/x509/template.ts';

const spkis = {
  p256: generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({
    type: 'spki',
    format: 'der',
  }),
  p384: generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).publicKey.export({
    type: 'spki',
    format: 'der',
  }),
  ed25519: generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }),
  rsa2048: generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
    type: 'spki',
    format: 'der',
  }),
};

function templateFor(keyType: CaKeyType, crlUrl: string | undefined, cn = 'example.org') {
  const subjectDer = encode(
    distinguishedName([
      { type: 'O', value: 'Writ' },
      { type: 'CN', value: cn },
    ]),
  );
  return new CertificateTemplate({ subjectDer, keyId: randomBytes(20), crlUrl }, signatureSuite(keyType));
}

/** A SPIFFE ID of exactly `length` characters. */
function spiffeIdOf(length: number): string {
  const head = 'spiffe://example.org/';
  return head + 'w'.repeat(length - head.length);
}

describe('CertificateTemplate.svidDer', () => {
  const cases: { name: string; keyType: CaKeyType; crlUrl?: string; cn?: string }[] = [
    { name: 'p-256 ca with a crl url', keyType: 'ec-p256', crlUrl: 'https://writ.example.org/v1/crl/abcd' },
    { name: 'p-256 ca without one', keyType: 'ec-p256' },
    { name: 'p-384 ca', keyType: 'ec-p384', crlUrl: 'https://writ.example.org/v1/crl' },
    {
      name: 'rsa ca with a long name',
      keyType: 'rsa',
      crlUrl: 'https://writ.example.org/v1/crl',
      cn: 'x'.repeat(64),
    },
  ];
  // SAN and extension lengths cross the one- and two-octet length forms around these sizes.
  const idLengths = [
    22, 60, 100, 117, 118, 119, 120, 125, 126, 127, 128, 129, 240, 250, 251, 252, 253, 255, 256, 600, 2048,
  ];
  const times = [
    [1_700_000_000, 1_700_000_900],
    // 2049-12-31T23:59:59Z (the last UTCTime) and 2050-01-01T00:00:00Z (the first GeneralizedTime).
    [2_524_607_999, 2_524_608_000],
    [-631_152_000, 4_102_444_800],
  ] as const;

  it.each(cases)('matches the ASN.1 builders: $name', ({ keyType, crlUrl, cn }) => {
    const template = templateFor(keyType, crlUrl, cn);
    let n = 0;
    for (const [keyName, spki] of Object.entries(spkis)) {
      for (const idLength of idLengths) {
        for (const [notBefore, notAfter] of times) {
          const serial =
            n % 3 === 0
              ? newSerial()
              : n % 3 === 1
                ? Buffer.from(`00ff${'11'.repeat(14)}`, 'hex')
                : randomBytes(16);
          const keyId = keyIdentifier(spki);
          const parts = { serial, notBefore, notAfter, keyId, spiffeId: spiffeIdOf(idLength) };
          const expected = encode(
            template.svid({ ...parts, spki: decode(spki, { maxBytes: 4096, maxDepth: 4 }) }),
          );
          const got = template.svidDer({ ...parts, spki });
          expect(got.equals(expected), `${keyName}, id of ${idLength}, ${notBefore}`).toBe(true);
          n++;
        }
      }
    }
  });

  it('wraps the signature as the builders do', () => {
    const template = templateFor('ec-p256', undefined);
    const tbs = template.svidDer({
      serial: newSerial(),
      notBefore: 1_700_000_000,
      notAfter: 1_700_000_900,
      spki: spkis.p256,
      keyId: keyIdentifier(spkis.p256),
      spiffeId: spiffeIdOf(40),
    });
    for (const length of [70, 71, 72, 256, 512]) {
      const signature = randomBytes(length);
      const expected = encode(template.signed(decode(tbs, { maxBytes: 8192, maxDepth: 16 }), signature));
      expect(template.signedDer(tbs, signature).equals(expected)).toBe(true);
    }
  });

  it('refuses a key identifier that is not 20 octets', () => {
    const template = templateFor('ec-p256', undefined);
    const parts = {
      serial: newSerial(),
      notBefore: 0,
      notAfter: 900,
      spki: spkis.p256,
      spiffeId: spiffeIdOf(40),
    };
    expect(() => template.svidDer({ ...parts, keyId: Buffer.alloc(19) })).toThrow(RangeError);
  });
});

describe('uintElement and timeElement', () => {
  it('encode as uintFromBytes and time do', () => {
    const magnitudes = [
      Buffer.alloc(0),
      Buffer.from([0]),
      Buffer.from([0, 0, 0]),
      Buffer.from([0x7f]),
      Buffer.from([0x80]),
      Buffer.from([0, 0x80]),
      Buffer.from([0, 0, 0x01, 0x02]),
      ...Array.from({ length: 200 }, (_, i) => randomBytes(1 + (i % 40))),
    ];
    for (const m of magnitudes)
      expect(uintElement(m).equals(encode(uintFromBytes(m))), m.toString('hex')).toBe(true);
    for (let i = 0; i < 500; i++) {
      const t = Math.floor(Math.random() * 8_000_000_000) - 600_000_000;
      expect(timeElement(t).equals(encode(time(t))), String(t)).toBe(true);
    }
    expect(() => timeElement(1.5)).toThrow(RangeError);
    expect(() => timeElement(-700_000_000_000)).toThrow(RangeError);
  });

  it('newSerial gives distinct 16-octet positive serials with no leading zero octet', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 3000; i++) {
      const s = newSerial();
      expect(s.length).toBe(16);
      expect(s[0]! & 0xc0).toBe(0x40);
      seen.add(s.toString('hex'));
    }
    expect(seen.size).toBe(3000);
  });
});
