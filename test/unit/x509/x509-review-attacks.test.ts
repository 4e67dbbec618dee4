// An attacker's review of the zero-copy CSR reader and the spliced X509-SVID: SPKI smuggling (the request's SPKI
// is copied verbatim into the certificate), signed-bytes confusion, length arithmetic, nesting, weak keys that
// make proof of possession vacuous, SAN and validity boundaries in the splice, serials, and strict base64.
// OpenSSL is the independent judge wherever it has an opinion.
import {
  constants,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  generatePrimeSync,
  type KeyObject,
  randomBytes,
  sign,
  verify,
  X509Certificate,
} from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CertificateAuthority, generateRootCa, leafConstraintsOk } from '../../../src/keys/x509/ca.ts';
import { parseCsr, parseCsrAsync } from '../../../src/keys/x509/csr.ts';
import { DerError, encode, time } from '../../../src/keys/x509/der.ts';
import { oidContent, walkDer } from '../../../src/keys/x509/der-reader.ts';
import { CsrError, type CsrErrorCode } from '../../../src/keys/x509/errors.ts';
import { OID } from '../../../src/keys/x509/oids.ts';
import { pemBlocks, toPem } from '../../../src/keys/x509/pem.ts';
import { acceptSpki, inspectSpki } from '../../../src/keys/x509/public-key.ts';
import {
  CertificateTemplate,
  derElement,
  distinguishedName,
  keyIdentifier,
  newSerial,
  SERIAL_BYTES,
  signatureSuite,
  timeElement,
} from '../../../src/keys/x509/template.ts';
import { openssl, type TempDir, tempDir } from './helpers.ts';

// ---- DER by hand: every byte is the attacker's choice ----

const el = (tag: number, ...parts: Uint8Array[]) => derElement(tag, ...parts);
const SEQ = (...parts: Uint8Array[]) => el(0x30, ...parts);
const OIDE = (dotted: string) => el(0x06, oidContent(dotted));
const NULL = Buffer.from([0x05, 0x00]);
const INT0 = Buffer.from([0x02, 0x01, 0x00]);
const bits = (content: Uint8Array, unused = 0) => el(0x03, Buffer.from([unused]), content);
const SUBJECT = encode(distinguishedName([{ type: 'CN', value: 'attacker' }]));
const NO_ATTRIBUTES = Buffer.from([0xa0, 0x00]);
const ECDSA_SHA256 = SEQ(OIDE(OID.ecdsaWithSha256));

const spkiDer = (key: KeyObject) => key.export({ type: 'spki', format: 'der' });

/** A CertificationRequest whose info bytes are exactly `info`, signed over those bytes by `signer`. */
function csr(
  info: Buffer,
  signer: KeyObject,
  algorithm = ECDSA_SHA256,
  hash: string | null = 'sha256',
): Buffer {
  return SEQ(info, algorithm, bits(sign(hash, info, signer)));
}

function infoWith(spki: Uint8Array, attributes: Uint8Array = NO_ATTRIBUTES, ...extra: Uint8Array[]): Buffer {
  return SEQ(INT0, SUBJECT, spki, attributes, ...extra);
}

const pemOf = (der: Buffer) => toPem('CERTIFICATE REQUEST', der);

function outcome(der: Buffer): CsrErrorCode | 'accepted' {
  try {
    parseCsr(pemOf(der));
    return 'accepted';
  } catch (e) {
    if (e instanceof CsrError) return e.code;
    throw e;
  }
}

async function outcomeAsync(der: Buffer): Promise<CsrErrorCode | 'accepted'> {
  try {
    await parseCsrAsync(pemOf(der));
    return 'accepted';
  } catch (e) {
    if (e instanceof CsrError) return e.code;
    throw e;
  }
}

let t: TempDir;
let files = 0;

/** OpenSSL's verdict on a request: does it parse and does its self-signature verify? */
async function opensslVerifies(der: Buffer): Promise<boolean> {
  const name = `r${files++}.der`;
  await t.write(name, der);
  const r = await openssl(['req', '-inform', 'DER', '-in', name, '-verify', '-noout'], t.dir);
  return r.code === 0 && /verify OK/i.test(r.stdout + r.stderr);
}

async function opensslText(certDer: Buffer): Promise<string> {
  const name = `c${files++}.der`;
  await t.write(name, certDer);
  const r = await openssl(['x509', '-inform', 'DER', '-in', name, '-noout', '-text'], t.dir);
  if (r.code !== 0) throw new Error(`openssl x509 refused the certificate: ${r.stderr}`);
  return r.stdout;
}

const NOW = Math.floor(Date.now() / 1000);
const clock = () => NOW * 1000;
let ca: CertificateAuthority;

beforeAll(async () => {
  t = await tempDir('writ-x509-review-');
  ca = generateRootCa({ trustDomain: 'example.org', ttlSeconds: 40 * 365 * 86400, clock });
});
afterAll(async () => {
  await t.cleanup();
});

function mint(der: Buffer, spiffeId = 'spiffe://example.org/w') {
  const parsed = parseCsr(pemOf(der));
  return ca.issueX509Svid({
    spiffeId,
    spki: parsed.spki,
    publicKey: parsed.publicKey,
    notAfter: NOW + 3600,
    now: NOW,
  });
}

// ---- the control ----

describe('the hand-made request is a real one', () => {
  it('is accepted by the reader and by openssl, and mints a certificate with the request key verbatim', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const der = csr(infoWith(spkiDer(publicKey)), privateKey);
    expect(outcome(der)).toBe('accepted');
    expect(await outcomeAsync(der)).toBe('accepted');
    expect(await opensslVerifies(der)).toBe(true);
    const issued = mint(der);
    expect(new X509Certificate(issued.der).publicKey.equals(publicKey)).toBe(true);
    expect(issued.der.includes(spkiDer(publicKey))).toBe(true);
  });
});

// ---- SPKI smuggling: the SPKI is copied verbatim, so anything the reader lets through is signed by the CA ----

describe('SPKI smuggling: nothing but a policy-checked key reaches the certificate', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const real = spkiDer(publicKey);
  const point = real.subarray(real.length - 65);
  const alg = SEQ(OIDE(OID.ecPublicKey), OIDE(OID.p256));
  // basicConstraints CA:TRUE, critical: what an attacker would love the CA to sign.
  const caTrue = SEQ(
    OIDE(OID.basicConstraints),
    Buffer.from([0x01, 0x01, 0xff]),
    el(0x04, SEQ(Buffer.from([0x01, 0x01, 0xff]))),
  );
  const sanEvil = SEQ(
    OIDE(OID.subjectAltName),
    el(0x04, SEQ(el(0x86, Buffer.from('spiffe://example.org/admin')))),
  );
  const x = point.subarray(1, 33);
  const y = point.subarray(33);
  const flippedY = Buffer.from(y);
  flippedY[31]! ^= 0x01;

  const spkis: Record<string, Buffer> = {
    'an [3] extensions element after the key (CA:TRUE and a second SAN)': SEQ(
      alg,
      bits(point),
      el(0xa3, SEQ(caTrue, sanEvil)),
    ),
    'a second BIT STRING key after the first': SEQ(alg, bits(point), bits(point)),
    'a second algorithm and key': SEQ(alg, bits(point), alg, bits(point)),
    'the key bits first, then the algorithm': SEQ(bits(point), alg),
    'NULL parameters after the curve': SEQ(SEQ(OIDE(OID.ecPublicKey), OIDE(OID.p256), NULL), bits(point)),
    'no curve': SEQ(SEQ(OIDE(OID.ecPublicKey)), bits(point)),
    'a NULL where the curve goes': SEQ(SEQ(OIDE(OID.ecPublicKey), NULL), bits(point)),
    'explicit curve parameters (a SEQUENCE)': SEQ(SEQ(OIDE(OID.ecPublicKey), SEQ(INT0)), bits(point)),
    'rsaEncryption over an ec point': SEQ(SEQ(OIDE(OID.rsaEncryption), NULL), bits(point)),
    'id-RSASSA-PSS over an ec point': SEQ(SEQ(OIDE(OID.rsassaPss)), bits(point)),
    'ed25519 over an ec point': SEQ(SEQ(OIDE(OID.ed25519)), bits(point)),
    'P-384 over a P-256 point': SEQ(SEQ(OIDE(OID.ecPublicKey), OIDE(OID.p384)), bits(point)),
    'one unused bit': SEQ(alg, bits(point, 1)),
    'seven unused bits': SEQ(alg, bits(point, 7)),
    'eight unused bits': SEQ(alg, bits(point, 8)),
    'an empty BIT STRING': SEQ(alg, Buffer.from([0x03, 0x00])),
    'the point and a trailing byte': SEQ(alg, bits(Buffer.concat([point, Buffer.from([0])]))),
    'the point twice (a second key inside the bits)': SEQ(alg, bits(Buffer.concat([point, point]))),
    'the point short of a byte': SEQ(alg, bits(point.subarray(0, 64))),
    'the point as an OCTET STRING': SEQ(alg, el(0x04, point)),
    'the point in a constructed BIT STRING': SEQ(alg, el(0x23, bits(point))),
    'compressed (02)': SEQ(alg, bits(Buffer.concat([Buffer.from([0x02 | (y[31]! & 1)]), x]))),
    'compressed, the other parity (03)': SEQ(
      alg,
      bits(Buffer.concat([Buffer.from([0x03 ^ (y[31]! & 1)]), x])),
    ),
    'hybrid (06/07)': SEQ(alg, bits(Buffer.concat([Buffer.from([0x06 | (y[31]! & 1)]), x, y]))),
    'the point at infinity (a single 00)': SEQ(alg, bits(Buffer.from([0x00]))),
    'all-zero coordinates': SEQ(alg, bits(Buffer.concat([Buffer.from([0x04]), Buffer.alloc(64)]))),
    'a point off the curve': SEQ(alg, bits(Buffer.concat([Buffer.from([0x04]), x, flippedY]))),
    'x of all ones (not below p)': SEQ(
      alg,
      bits(Buffer.concat([Buffer.from([0x04]), Buffer.alloc(32, 0xff), y])),
    ),
    'the SPKI as a SET': el(0x31, alg, bits(point)),
    'the SPKI as a context [0]': el(0xa0, alg, bits(point)),
    'the SPKI as a primitive SEQUENCE tag': el(0x10, alg, bits(point)),
  };

  it.each(Object.entries(spkis))(
    'refuses %s (signed by the real key, so only the shape is judged)',
    async (_, spki) => {
      const der = csr(infoWith(spki), privateKey);
      expect(outcome(der)).not.toBe('accepted');
      expect(await outcomeAsync(der)).not.toBe('accepted');
      // Given on its own (server certificates) it is refused as well.
      expect(() => acceptSpki(spki)).toThrow(CsrError);
    },
  );

  it('openssl also refuses the malformed ones (not only a stricter policy on our side)', async () => {
    const malformed = [
      'an [3] extensions element after the key (CA:TRUE and a second SAN)',
      'a second BIT STRING key after the first',
      'the key bits first, then the algorithm',
      'the point and a trailing byte',
      'the point twice (a second key inside the bits)',
      'a point off the curve',
      'all-zero coordinates',
      'the SPKI as a SET',
      'rsaEncryption over an ec point',
    ];
    for (const name of malformed) {
      expect(await opensslVerifies(csr(infoWith(spkis[name]!), privateKey)), name).toBe(false);
    }
  });

  it('the CA itself re-checks a raw SPKI: trailing DER, a smuggled extension or a weak key never reach the splice', () => {
    const smuggled = [
      Buffer.concat([real, el(0xa3, SEQ(caTrue, sanEvil))]),
      Buffer.concat([real, Buffer.from([0x00])]),
      spkis['an [3] extensions element after the key (CA:TRUE and a second SAN)']!,
      ed25519Spki(encodePoint(1n, false)),
      Buffer.from(real.subarray(0, real.length - 1)),
    ];
    for (const spki of smuggled) {
      expect(() =>
        ca.issueX509Svid({ spiffeId: 'spiffe://example.org/w', spki, notAfter: NOW + 60, now: NOW }),
      ).toThrow(TypeError);
    }
  });

  it('an SPKI whose length swallows the attributes, or stops short of the key, breaks the request, not the TBS', () => {
    const spkiBody = Buffer.concat([alg, bits(point)]);
    // SPKI { alg, bits, [0] } and the info left with three fields.
    const swallow = SEQ(INT0, SUBJECT, SEQ(spkiBody, NO_ATTRIBUTES));
    // SPKI { alg } and the key bits as a fifth field of the info.
    const short = SEQ(INT0, SUBJECT, SEQ(alg), bits(point), NO_ATTRIBUTES);
    // The info's own length one short, so the attributes sit after it in the request.
    const good = infoWith(real);
    const cut = Buffer.from(good);
    cut[1]! -= 2;
    for (const info of [swallow, short]) expect(outcome(csr(info, privateKey))).toBe('ERR_CSR_INVALID');
    expect(
      outcome(SEQ(cut, ECDSA_SHA256, bits(sign('sha256', cut.subarray(0, cut.length - 2), privateKey)))),
    ).toBe('ERR_CSR_INVALID');
  });

  it('a second key elsewhere in the signed info (attributes) is never what gets certified', async () => {
    const victim = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
    // challengePassword-like attribute carrying the victim's SPKI; the attacker signs with its own key.
    const attribute = SEQ(OIDE('1.2.840.113549.1.9.7'), el(0x31, spkiDer(victim)));
    const der = csr(infoWith(real, el(0xa0, attribute)), privateKey);
    expect(await opensslVerifies(der)).toBe(true);
    const issued = mint(der);
    const cert = new X509Certificate(issued.der);
    expect(cert.publicKey.equals(publicKey)).toBe(true);
    expect(issued.der.includes(spkiDer(victim))).toBe(false);
  });

  it('requested extensions (CA:TRUE, another SAN) in the attributes are ignored; openssl reads the cert we meant', async () => {
    const extReq = SEQ(OIDE('1.2.840.113549.1.9.14'), el(0x31, SEQ(caTrue, sanEvil)));
    const der = csr(infoWith(real, el(0xa0, extReq)), privateKey);
    expect(await opensslVerifies(der)).toBe(true);
    const issued = mint(der);
    const text = await opensslText(issued.der);
    expect(text).toContain('CA:FALSE');
    expect(text).not.toContain('CA:TRUE');
    expect(text).not.toContain('spiffe://example.org/admin');
    expect(text).toContain('URI:spiffe://example.org/w');
    expect(text).toMatch(/Serial Number:\s*\n\s*([0-9a-f]{2}:){15}[0-9a-f]{2}/);
  });
});

// ---- what is signed is what is checked ----

describe('signed bytes and checked bytes are the same bytes', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const info = infoWith(spkiDer(publicKey));

  it('a signature over a BER (long-form length) variant of the info does not verify the DER info it sits beside', () => {
    const ber = Buffer.concat([Buffer.from([0x30, 0x81, info[1]!]), info.subarray(2)]);
    expect(outcome(SEQ(info, ECDSA_SHA256, bits(sign('sha256', ber, privateKey))))).toBe('ERR_CSR_SIGNATURE');
  });

  it('a request made entirely of BER is refused even though openssl verifies it (a stricter reader, not a laxer one)', async () => {
    const ber = Buffer.concat([Buffer.from([0x30, 0x81, info[1]!]), info.subarray(2)]);
    const der = SEQ(ber, ECDSA_SHA256, bits(sign('sha256', ber, privateKey)));
    expect(await opensslVerifies(der)).toBe(true);
    expect(outcome(der)).toBe('ERR_CSR_INVALID');
  });

  it('two infos, two signatures, or a second request after the first are refused', () => {
    const sig = bits(sign('sha256', info, privateKey));
    expect(outcome(SEQ(info, info, ECDSA_SHA256, sig))).toBe('ERR_CSR_INVALID');
    expect(outcome(SEQ(info, ECDSA_SHA256, sig, sig))).toBe('ERR_CSR_INVALID');
    const one = SEQ(info, ECDSA_SHA256, sig);
    expect(outcome(Buffer.concat([one, one]))).toBe('ERR_CSR_INVALID');
  });

  it('a signature by another key over the very same info is refused', () => {
    const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    expect(outcome(csr(info, other))).toBe('ERR_CSR_SIGNATURE');
  });

  it('the signature algorithm cannot switch the key family (RSA-PSS over an EC key)', () => {
    const pss = SEQ(
      OIDE(OID.rsassaPss),
      SEQ(
        el(0xa0, SEQ(OIDE(OID.sha256), NULL)),
        el(0xa1, SEQ(OIDE(OID.mgf1), SEQ(OIDE(OID.sha256), NULL))),
        el(0xa2, Buffer.from([0x02, 0x01, 0x20])),
      ),
    );
    expect(outcome(csr(info, privateKey, pss))).toBe('ERR_CSR_UNSUPPORTED_ALGORITHM');
  });
});

// ---- lengths and nesting ----

describe('length arithmetic and nesting', () => {
  const at = (bytes: number[], tail = 0) => Buffer.concat([Buffer.from(bytes), Buffer.alloc(tail)]);
  const cases: [string, Buffer][] = [
    ['a 4-octet length of 2^32-1', at([0x30, 0x84, 0xff, 0xff, 0xff, 0xff], 16)],
    ['a 4-octet length of 2^31 (the sign bit of a 32-bit int)', at([0x30, 0x84, 0x80, 0x00, 0x00, 0x00], 16)],
    [
      'a 4-octet length of 2^32-6 (wraps to the buffer with 32-bit arithmetic)',
      at([0x30, 0x84, 0xff, 0xff, 0xff, 0xfa], 16),
    ],
    ['a 5-octet length', at([0x30, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00], 16)],
    ['a 127-octet length', at([0x30, 0xff], 140)],
    ['a 4-octet length with a leading zero', at([0x30, 0x84, 0x00, 0x00, 0x00, 0x05], 5)],
    ['an indefinite length', at([0x30, 0x80, 0x02, 0x01, 0x00, 0x00, 0x00])],
    ['a long form for a short length', at([0x30, 0x81, 0x05], 5)],
    ['a length one past the end', at([0x30, 0x06], 5)],
    ['a nested length past its parent', at([0x30, 0x04, 0x30, 0x05, 0x02, 0x01, 0x00])],
    [
      'a nested 4-octet length near 2^32 inside a good parent',
      at([0x30, 0x06, 0x04, 0x84, 0xff, 0xff, 0xff, 0xf8]),
    ],
  ];
  it.each(cases)('refuses %s with a DerError, never a RangeError or a hang', (_, der) => {
    expect(() => walkDer(der, { maxBytes: 12 * 1024, maxDepth: 16 })).toThrow(DerError);
  });

  it('the same, as requests: ERR_CSR_INVALID', () => {
    for (const [name, der] of cases) expect(outcome(der), name).toBe('ERR_CSR_INVALID');
  });

  it('a length that fits exactly is accepted; derElement writes every length form minimally', () => {
    for (const n of [0, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffff]) {
      const e = derElement(0x04, Buffer.alloc(n));
      const root = walkDer(e, { maxBytes: 1 << 25, maxDepth: 1 });
      expect(root.end - root.content, String(n)).toBe(n);
      expect(e.length - n, String(n)).toBe(n < 0x80 ? 2 : n < 0x100 ? 3 : n < 0x10000 ? 4 : 5);
    }
    expect(() => derElement(0x04, Buffer.alloc(0x1000000))).toThrow(RangeError);
  });

  it('nests attributes to the depth limit and no further; thousands of levels refuse without blowing the stack', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    // request(0) > info(1) > [0](2) > attribute(3) > SET(4) > ... the walker allows depth 16.
    const nested = (levels: number) => {
      let inner: Buffer = NULL;
      for (let i = 0; i < levels; i++) inner = SEQ(inner);
      return el(0xa0, SEQ(OIDE('1.2.3.4'), el(0x31, inner)));
    };
    // The NULL sits at depth 5 + levels.
    expect(outcome(csr(infoWith(spkiDer(publicKey), nested(11)), privateKey))).toBe('accepted');
    expect(outcome(csr(infoWith(spkiDer(publicKey), nested(12)), privateKey))).toBe('ERR_CSR_INVALID');
    let deep: Buffer = Buffer.alloc(0);
    for (let i = 0; i < 3000; i++)
      deep = Buffer.concat([Buffer.from([0x30, 0x82, deep.length >> 8, deep.length & 0xff]), deep]);
    expect(() => walkDer(deep, { maxBytes: 1 << 20, maxDepth: 16 })).toThrow(/nested too deeply/);
  });
});

// ---- weak keys: where proof of possession proves nothing ----

// Ed25519 over GF(2^255 - 19): the small-order points, computed here rather than copied from a list.
const P = (1n << 255n) - 19n;
const mod = (a: bigint) => ((a % P) + P) % P;
function powmod(b: bigint, e: bigint): bigint {
  let r = 1n;
  b = mod(b);
  for (; e > 0n; e >>= 1n, b = mod(b * b)) if (e & 1n) r = mod(r * b);
  return r;
}
const inv = (a: bigint) => powmod(a, P - 2n);
const D = mod(-121665n * inv(121666n));
function sqrt(a: bigint): bigint | null {
  // p = 5 mod 8
  let r = powmod(a, (P + 3n) / 8n);
  if (mod(r * r) !== mod(a)) r = mod(r * powmod(2n, (P - 1n) / 4n));
  return mod(r * r) === mod(a) ? r : null;
}
function encodePoint(y: bigint, negativeX: boolean): Buffer {
  const out = Buffer.alloc(32);
  let v = y;
  for (let i = 0; i < 32; i++, v >>= 8n) out[i] = Number(v & 0xffn);
  if (negativeX) out[31]! |= 0x80;
  return out;
}
/** The y of every point of order 1, 2, 4 and 8: 1, -1, 0 and the roots of d*y^4 + 2*y^2 - 1 = 0. */
function smallOrderYs(): bigint[] {
  const ys = [1n, P - 1n, 0n];
  const s = sqrt(mod(1n + D))!;
  for (const y2 of [mod((-1n + s) * inv(D)), mod((-1n - s) * inv(D))]) {
    const y = sqrt(y2);
    if (y !== null) ys.push(y, mod(-y));
  }
  return ys;
}

function ed25519Spki(point: Buffer): Buffer {
  return SEQ(SEQ(OIDE(OID.ed25519)), bits(point));
}

describe('weak keys that make the self-signature meaningless', () => {
  const ED25519 = SEQ(OIDE(OID.ed25519));
  const ys = smallOrderYs();

  it('finds the eight small-order Ed25519 points (the arithmetic of this test)', () => {
    expect(ys).toHaveLength(5);
    // Each y with both signs of x (x = 0 for y = +-1, so those two have one point each): 2 + 2 + 4 = 8.
  });

  it('refuses the identity as an Ed25519 key although its "signature" verifies for any message', async () => {
    const identity = encodePoint(1n, false);
    const key = createPublicKey({
      key: { kty: 'OKP', crv: 'Ed25519', x: identity.toString('base64url') },
      format: 'jwk',
    });
    const info = infoWith(ed25519Spki(identity));
    // R = identity, S = 0: [S]B = R + [k]A holds for every message when A is the identity.
    const forged = Buffer.concat([identity, Buffer.alloc(32)]);
    expect(verify(null, info, key, forged)).toBe(true);
    const der = SEQ(info, ED25519, bits(forged));
    expect(await opensslVerifies(der)).toBe(true);
    expect(outcome(der)).toBe('ERR_CSR_WEAK_KEY');
    expect(await outcomeAsync(der)).toBe('ERR_CSR_WEAK_KEY');
  });

  it('refuses every small-order Ed25519 point and every non-canonical encoding (y >= p), by either sign of x', () => {
    const encodings: Buffer[] = [];
    for (const y of ys) for (const neg of [false, true]) encodings.push(encodePoint(y, neg));
    for (let y = P; y < 1n << 255n; y++) for (const neg of [false, true]) encodings.push(encodePoint(y, neg));
    expect(encodings).toHaveLength(10 + 38);
    for (const point of encodings) {
      const spki = ed25519Spki(point);
      expect(() => inspectSpki(spki), point.toString('hex')).toThrow(CsrError);
      const der = SEQ(infoWith(spki), ED25519, bits(Buffer.alloc(64)));
      expect(outcome(der), point.toString('hex')).not.toBe('accepted');
    }
  });

  it('still accepts real Ed25519 keys (including ones whose x is "negative")', () => {
    for (let i = 0; i < 50; i++) {
      const { privateKey, publicKey } = generateKeyPairSync('ed25519');
      const der = SEQ(infoWith(spkiDer(publicKey)), ED25519, bits(Buffer.alloc(0)));
      const info = infoWith(spkiDer(publicKey));
      const good = SEQ(info, ED25519, bits(sign(null, info, privateKey)));
      expect(outcome(good)).toBe('accepted');
      expect(outcome(der)).toBe('ERR_CSR_SIGNATURE');
    }
  });

  const rsaSpki = (n: bigint, e: bigint) => {
    const int = (v: bigint) => {
      let hex = v.toString(16);
      if (hex.length % 2) hex = `0${hex}`;
      const b = Buffer.from(hex, 'hex');
      return el(0x02, b[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), b]) : b);
    };
    return SEQ(SEQ(OIDE(OID.rsaEncryption), NULL), bits(SEQ(int(n), int(e))));
  };
  const realN = () => {
    const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ format: 'jwk' });
    return BigInt(`0x${Buffer.from(jwk.n!, 'base64url').toString('hex')}`);
  };

  it('refuses RSA exponents 1, 3, 65535, even ones and ones of 2^256 and more; accepts the largest odd one below', () => {
    const n = realN();
    for (const e of [1n, 3n, 17n, 65535n, 65538n, 1n << 256n, (1n << 256n) + 1n, (1n << 300n) + 1n]) {
      expect(() => acceptSpki(rsaSpki(n, e)), String(e)).toThrow(CsrError);
    }
    expect(acceptSpki(rsaSpki(n, (1n << 256n) - 1n)).subject.keyType).toBe('rsa');
    expect(acceptSpki(rsaSpki(n, 65537n)).subject.keyType).toBe('rsa');
  });

  it('refuses an RSA modulus anyone can factor: even, or with a small prime factor', () => {
    const n = realN();
    // 2048 bits and odd exponent: only the factorisation is wrong.
    const even = (n >> 1n) << 1n;
    const three = 3n * (n / 3n);
    const smallPrime = 743n * ((1n << 2047n) / 743n + 1n);
    for (const bad of [even, three, smallPrime]) {
      expect(bad.toString(2).length).toBeGreaterThanOrEqual(2047);
      expect(() => acceptSpki(rsaSpki(bad, 65537n)), bad.toString(16).slice(0, 8)).toThrow(CsrError);
    }
    expect(acceptSpki(rsaSpki(n, 65537n)).subject.keyType).toBe('rsa');
  });

  it('refuses a CSR whose RSA key is 743 x a prime although its self-signature verifies (anyone can factor it)', async () => {
    const b64 = (v: bigint) => {
      let hex = v.toString(16);
      if (hex.length % 2) hex = `0${hex}`;
      return Buffer.from(hex, 'hex').toString('base64url');
    };
    const egcdInv = (a: bigint, m: bigint) => {
      let [r0, r1, s0, s1] = [a % m, m, 1n, 0n];
      while (r1 !== 0n) {
        const q = r0 / r1;
        [r0, r1, s0, s1] = [r1, r0 - q * r1, s1, s0 - q * s1];
      }
      return ((s0 % m) + m) % m;
    };
    const p = 743n;
    const q = generatePrimeSync(2040, { bigint: true }) as bigint;
    const e = 65537n;
    const n = p * q;
    const d = egcdInv(e, (p - 1n) * (q - 1n));
    const privateKey = createPrivateKey({
      key: {
        kty: 'RSA',
        n: b64(n),
        e: b64(e),
        d: b64(d),
        p: b64(q),
        q: b64(p),
        dp: b64(d % (q - 1n)),
        dq: b64(d % (p - 1n)),
        qi: b64(egcdInv(p, q)),
      },
      format: 'jwk',
    });
    const info = infoWith(rsaSpki(n, e));
    const rsaSha256 = SEQ(OIDE(OID.sha256WithRsa), NULL);
    const der = SEQ(info, rsaSha256, bits(sign('sha256', info, privateKey)));
    expect(await opensslVerifies(der)).toBe(true);
    expect(outcome(der)).toBe('ERR_CSR_WEAK_KEY');
    expect(await outcomeAsync(der)).toBe('ERR_CSR_WEAK_KEY');
    // The same key with its signature broken is a signature failure, as for any tampered key.
    expect(outcome(SEQ(info, rsaSha256, bits(Buffer.alloc(257, 1))))).toBe('ERR_CSR_SIGNATURE');
  });
});

// ---- the splice: SAN lengths, times, serials ----

describe('the spliced TBSCertificate at its boundaries, judged by OpenSSL', () => {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const caKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const subjectDer = encode(
    distinguishedName([
      { type: 'O', value: 'Writ' },
      { type: 'CN', value: 'example.org' },
    ]),
  );
  const template = new CertificateTemplate(
    { subjectDer, keyId: randomBytes(20), crlUrl: 'https://writ.example.org/crl' },
    signatureSuite('ec-p256'),
  );
  const spki = spkiDer(publicKey);
  const head = 'spiffe://example.org/';
  const idOf = (length: number) => head + 'w'.repeat(length - head.length);

  function certify(spiffeId: string, notBefore = NOW, notAfter = NOW + 3600) {
    const tbs = template.svidDer({
      serial: newSerial(),
      notBefore,
      notAfter,
      spki,
      keyId: keyIdentifier(spki),
      spiffeId,
    });
    const der = template.signedDer(tbs, sign('sha256', tbs, caKey.privateKey));
    const cert = new X509Certificate(der);
    expect(cert.verify(caKey.publicKey)).toBe(true);
    return { der, cert };
  }

  it('SAN, extension and TBS lengths across the 1-, 2- and 3-octet forms parse back to the same ID', () => {
    // The URI element's length crosses 127/128 and 255/256; the whole TBS crosses 65535/65536 near the end.
    for (const length of [
      100, 121, 122, 123, 124, 125, 126, 127, 128, 129, 250, 251, 252, 253, 254, 255, 256, 257, 2048, 65_000,
      65_535, 65_536, 70_000,
    ]) {
      const id = idOf(length);
      const { cert } = certify(id);
      expect(cert.subjectAltName, String(length)).toBe(`URI:${id}`);
    }
  });

  it('a real CA mints SPIFFE IDs at the boundaries; openssl x509 reads the same SAN', async () => {
    for (const length of [127, 128, 255, 256, 2048]) {
      const id = idOf(length);
      const issued = ca.issueX509Svid({ spiffeId: id, spki, publicKey, notAfter: NOW + 600, now: NOW });
      expect(await opensslText(issued.der)).toContain(`URI:${id}`);
    }
    // Over the SPIFFE limit of 2048 bytes: refused before any splice.
    expect(() =>
      ca.issueX509Svid({ spiffeId: idOf(2049), spki, publicKey, notAfter: NOW + 600, now: NOW }),
    ).toThrow();
  });

  it('times: the last UTCTime (2049), the first GeneralizedTime (2050), 1950 and 9999 parse back exactly', async () => {
    const cases: [number, number][] = [
      [2_524_607_999, 2_524_608_000],
      [-631_152_000, 253_402_300_799],
    ];
    for (const [nb, na] of cases) {
      const { der, cert } = certify(idOf(40), nb, na);
      expect(Date.parse(cert.validFrom) / 1000).toBe(nb);
      expect(Date.parse(cert.validTo) / 1000).toBe(na);
      const text = await opensslText(der);
      expect(text).toContain(
        new Date(na * 1000).getUTCFullYear() === 2050
          ? 'Jan  1 00:00:00 2050 GMT'
          : 'Dec 31 23:59:59 9999 GMT',
      );
    }
    expect(timeElement(2_524_607_999).toString('latin1', 2)).toBe('491231235959Z');
    expect(timeElement(2_524_608_000).toString('latin1', 2)).toBe('20500101000000Z');
  });

  it('times outside 1950..9999, fractional, unsafe or past the Date range are refused (never a NaN time)', () => {
    const bad = [
      -631_152_001,
      253_402_300_800,
      1.5,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      2 ** 53,
      8_640_000_000_001,
      9_000_000_000_000_000,
    ];
    for (const s of bad) {
      expect(() => timeElement(s), String(s)).toThrow(RangeError);
      expect(() => time(s), String(s)).toThrow(RangeError);
    }
  });

  it('a real CA caps notAfter at its own end, and its mint check refuses nothing it meant', () => {
    const issued = ca.issueX509Svid({
      spiffeId: idOf(40),
      spki,
      publicKey,
      notAfter: NOW + 100 * 365 * 86400,
      now: NOW,
    });
    expect(issued.notAfter).toBeLessThanOrEqual(NOW + 40 * 365 * 86400);
    expect(Date.parse(new X509Certificate(issued.der).validTo) / 1000).toBe(issued.notAfter);
  });
});

describe('serials from the pooled CSPRNG', () => {
  it('are distinct, 16 octets, positive with no leading zero octet, across many pool refills', () => {
    const seen = new Set<string>();
    let first: Buffer | undefined;
    for (let i = 0; i < 20_000; i++) {
      const s = newSerial();
      expect(s.length).toBe(SERIAL_BYTES);
      expect(s[0]! & 0xc0).toBe(0x40);
      seen.add(s.toString('hex'));
      if (i === 0) first = s;
    }
    expect(seen.size).toBe(20_000);
    // Every serial is its own copy: scribbling on one changes no other, and no serial is all pool zeros.
    const before = first!.toString('hex');
    const next = newSerial();
    next.fill(0xaa);
    expect(first!.toString('hex')).toBe(before);
    expect(
      newSerial()
        .subarray(1)
        .equals(Buffer.alloc(SERIAL_BYTES - 1)),
    ).toBe(false);
  });

  it('openssl reads each minted serial as the positive 16-octet number the CA reported', async () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    for (let i = 0; i < 5; i++) {
      const issued = ca.issueX509Svid({
        spiffeId: 'spiffe://example.org/s',
        spki: spkiDer(publicKey),
        publicKey,
        notAfter: NOW + 60,
        now: NOW,
      });
      const text = await opensslText(issued.der);
      const m = /Serial Number:\s*\n\s*([0-9a-f:]+)/.exec(text);
      expect(m?.[1]?.replaceAll(':', '')).toBe(issued.serialHex);
      expect(issued.serialHex).toMatch(/^[4-7][0-9a-f]{31}$/);
    }
  });
});

// ---- strict base64 and PEM ----

describe('PEM and strict base64', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const der = csr(infoWith(spkiDer(publicKey)), privateKey);
  const b64 = der.toString('base64');
  const block = (body: string, label = 'CERTIFICATE REQUEST', eol = '\n') =>
    `-----BEGIN ${label}-----${eol}${body}${eol}-----END ${label}-----${eol}`;
  const lines = (s: string, n = 64) => s.match(new RegExp(`.{1,${n}}`, 'g'))!;

  it('accepts LF, CRLF, tabs and spaces between lines, any line width, and the legacy label', () => {
    for (const text of [
      block(lines(b64).join('\n')),
      block(lines(b64).join('\r\n'), undefined, '\r\n'),
      block(lines(b64, 76).join('\n \t')),
      block(b64),
      `\n\n${block(lines(b64).join('\n'), 'NEW CERTIFICATE REQUEST')}\n`,
    ]) {
      expect(parseCsr(text).keyType).toBe('ec-p256');
    }
  });

  it('refuses "=" inside, too much padding, base64url, other whitespace and stray characters', () => {
    const bodies = [
      `${b64.slice(0, 8)}=${b64.slice(9)}`,
      `${b64.slice(0, 8)}====${b64.slice(8)}`,
      `${b64}====`,
      `${b64}A===`,
      b64.replaceAll('+', '-').replaceAll('/', '_') + (b64.includes('+') || b64.includes('/') ? '' : '-AAA'),
      lines(b64).join('\f'),
      lines(b64).join('\v'),
      lines(b64).join('\u00a0'),
      lines(b64).join('\u2028'),
      `${b64}.`,
      `${b64.slice(0, -4)}`.slice(0, -1),
      '',
      '====',
    ];
    for (const body of bodies) {
      expect(() => parseCsr(block(body)), JSON.stringify(body.slice(-12))).toThrow(CsrError);
    }
  });

  it('refuses non-zero padding bits with one "=" and with two', () => {
    // A 2-pad and a 1-pad ending: mutate the spare bits of the last data character.
    for (const len of [1, 2]) {
      const bytes = Buffer.concat([der, Buffer.alloc(0)]);
      const body = Buffer.from(
        bytes.subarray(0, 3 * Math.floor(bytes.length / 3) + (len === 2 ? 1 : 2) - 3),
      ).toString('base64');
      if (!body.endsWith('='.repeat(len))) continue;
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
      const at = body.length - len - 1;
      const spare = alphabet[alphabet.indexOf(body[at]!) | 1]!;
      const bad = body.slice(0, at) + spare + body.slice(at + 1);
      expect(Buffer.from(bad, 'base64').equals(Buffer.from(body, 'base64'))).toBe(true);
      expect(() => pemBlocks(block(bad), { allowText: false })).toThrow();
      expect(pemBlocks(block(body), { allowText: false })[0]!.der.equals(Buffer.from(body, 'base64'))).toBe(
        true,
      );
    }
  });

  it("accepts exactly the canonical base64 (the decoder agrees with Node's round trip on random bodies)", () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=';
    let accepted = 0;
    for (let i = 0; i < 20_000; i++) {
      const length = 4 * (1 + (i % 4));
      let body = '';
      for (let j = 0; j < length; j++) {
        // Mostly data, '=' rarely and mostly near the end.
        const r = Math.random();
        body += r < 0.1 && j >= length - 2 ? '=' : r < 0.01 ? '=' : alphabet[Math.floor(Math.random() * 64)];
      }
      const canonical = Buffer.from(body, 'base64').toString('base64') === body;
      let ours = true;
      try {
        pemBlocks(block(body, 'X'), { allowText: false });
      } catch {
        ours = false;
      }
      expect(ours, body).toBe(canonical);
      if (ours) accepted++;
    }
    expect(accepted).toBeGreaterThan(1000);
  });

  it('refuses other labels, several blocks, headers, and text around the block', () => {
    const one = block(lines(b64).join('\n'));
    for (const text of [
      block(lines(b64).join('\n'), 'CERTIFICATE'),
      block(lines(b64).join('\n'), 'PUBLIC KEY'),
      one + one,
      `garbage\n${one}`,
      `${one}garbage`,
      block(`Proc-Type: 4,ENCRYPTED\n\n${lines(b64).join('\n')}`),
      `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END NEW CERTIFICATE REQUEST-----\n`,
      `-----BEGIN CERTIFICATE REQUEST-----\n${b64.slice(0, 64)}\n-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`,
    ]) {
      expect(() => parseCsr(text)).toThrow(CsrError);
    }
  });
});

// ---- RSA-PSS parameter confusion ----

describe('RSA-PSS parameters', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const info = infoWith(spkiDer(rsa.publicKey));
  const alg = (hash: string, mgf: string, salt: number, extra: Buffer[] = []) =>
    SEQ(
      OIDE(OID.rsassaPss),
      SEQ(
        el(0xa0, SEQ(OIDE(hash), NULL)),
        el(0xa1, SEQ(OIDE(OID.mgf1), SEQ(OIDE(mgf), NULL))),
        el(
          0xa2,
          salt < 128 ? Buffer.from([0x02, 0x01, salt]) : Buffer.from([0x02, 0x02, salt >> 8, salt & 0xff]),
        ),
        ...extra,
      ),
    );
  const pss = (hash: string, salt: number) =>
    bits(
      sign(hash, info, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: salt }),
    );

  it('accepts a well-formed SHA-256 request and openssl agrees', async () => {
    const der = SEQ(info, alg(OID.sha256, OID.sha256, 32), pss('sha256', 32));
    expect(outcome(der)).toBe('accepted');
    expect(await opensslVerifies(der)).toBe(true);
  });

  it('the named salt length is the one enforced (a signature with another salt is refused)', () => {
    expect(outcome(SEQ(info, alg(OID.sha256, OID.sha256, 32), pss('sha256', 20)))).toBe('ERR_CSR_SIGNATURE');
    expect(outcome(SEQ(info, alg(OID.sha256, OID.sha256, 20), pss('sha256', 32)))).toBe('ERR_CSR_SIGNATURE');
  });

  it('the named digest is the one enforced, MGF1 must match it, and the trailer must be 1', () => {
    expect(outcome(SEQ(info, alg(OID.sha384, OID.sha384, 32), pss('sha256', 32)))).toBe('ERR_CSR_SIGNATURE');
    expect(outcome(SEQ(info, alg(OID.sha256, OID.sha384, 32), pss('sha256', 32)))).toBe(
      'ERR_CSR_UNSUPPORTED_ALGORITHM',
    );
    const trailer2 = el(0xa3, Buffer.from([0x02, 0x01, 0x02]));
    expect(outcome(SEQ(info, alg(OID.sha256, OID.sha256, 32, [trailer2]), pss('sha256', 32)))).toBe(
      'ERR_CSR_INVALID',
    );
    expect(outcome(SEQ(info, alg(OID.sha256, OID.sha256, 513), pss('sha256', 32)))).toBe('ERR_CSR_INVALID');
    // SHA-1 by default (no parameters at all).
    expect(outcome(SEQ(info, SEQ(OIDE(OID.rsassaPss), SEQ()), pss('sha256', 20)))).toBe(
      'ERR_CSR_UNSUPPORTED_ALGORITHM',
    );
  });
});

// ---- the mint check's own reading of basic constraints and key usage ----

describe('the mint check reads CA:TRUE and CA key usages from the bytes, not through X509_check_ca', () => {
  async function opensslCert(extensions: string[]): Promise<Buffer> {
    const name = `m${files++}`;
    const args = ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    args.push(
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.der`,
      '-outform',
      'DER',
      '-subj',
      '/O=SPIFFE',
      '-days',
      '1',
    );
    for (const e of extensions) args.push('-addext', e);
    const r = await openssl(args, t.dir);
    if (r.code !== 0) throw new Error(r.stderr);
    return readFile(t.path(`${name}.der`));
  }

  it('CA:TRUE with digitalSignature only: node says "not a ca" (X509_check_ca), the mint check says no', async () => {
    const der = await opensslCert([
      'basicConstraints=critical,CA:TRUE',
      'keyUsage=critical,digitalSignature',
    ]);
    expect(new X509Certificate(der).ca).toBe(false);
    expect(leafConstraintsOk(der)).toBe(false);
  });

  it('refuses keyCertSign or cRLSign on a CA:FALSE leaf, a path length, a missing or non-critical constraint', async () => {
    const refused = [
      ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,keyCertSign'],
      ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature,cRLSign'],
      ['basicConstraints=critical,CA:TRUE,pathlen:0', 'keyUsage=critical,digitalSignature'],
      ['basicConstraints=CA:FALSE', 'keyUsage=critical,digitalSignature'],
      ['keyUsage=critical,digitalSignature'],
    ];
    for (const extensions of refused) {
      expect(leafConstraintsOk(await opensslCert(extensions)), extensions.join(' ')).toBe(false);
    }
    expect(
      leafConstraintsOk(
        await opensslCert(['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature']),
      ),
    ).toBe(true);
  });

  it('accepts what the CA mints (SVIDs and server certificates)', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const svid = ca.issueX509Svid({
      spiffeId: 'spiffe://example.org/w',
      spki: spkiDer(publicKey),
      publicKey,
      notAfter: NOW + 60,
      now: NOW,
    });
    expect(leafConstraintsOk(svid.der)).toBe(true);
    const server = ca.issueServerCertificate({
      dnsNames: ['writ.example.org'],
      ipAddresses: ['127.0.0.1'],
      notAfter: NOW + 60,
      now: NOW,
    });
    expect(leafConstraintsOk(server.der)).toBe(true);
    expect(leafConstraintsOk(Buffer.from([0x30, 0x00]))).toBe(false);
    expect(leafConstraintsOk(svid.der.subarray(0, 100))).toBe(false);
  });
});
