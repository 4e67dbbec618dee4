// Per-CA templates: the constant ASN.1 of certificates and CRLs is built once; only per-certificate parts vary.
import { createHash, randomFillSync } from 'node:crypto';
import {
  type Asn1,
  bitString,
  bool,
  contextConstructed,
  decode,
  encode,
  enumerated,
  extension,
  implicitPrimitive,
  namedBits,
  nul,
  octetString,
  oid,
  printableString,
  seq,
  set,
  time,
  uint,
  uintFromBytes,
  utf8String,
} from './der.ts';
import { KEY_USAGE, OID } from './oids.ts';

export type CaKeyType = 'ec-p256' | 'ec-p384' | 'rsa';
export type CaSignatureAlgorithm = 'ecdsa-with-SHA256' | 'ecdsa-with-SHA384' | 'sha256WithRSAEncryption';

export interface SignatureSuite {
  readonly name: CaSignatureAlgorithm;
  readonly hash: 'sha256' | 'sha384';
  /** The AlgorithmIdentifier written in the TBS and around the signature. */
  readonly algorithm: Asn1;
}

/** By CA key: ECDSA with the curve's matching digest (RFC 5480), PKCS#1 v1.5 SHA-256 for RSA. */
export function signatureSuite(keyType: CaKeyType): SignatureSuite {
  switch (keyType) {
    case 'ec-p256':
      // RFC 5758: ECDSA AlgorithmIdentifiers have absent parameters.
      return { name: 'ecdsa-with-SHA256', hash: 'sha256', algorithm: seq(oid(OID.ecdsaWithSha256)) };
    case 'ec-p384':
      return { name: 'ecdsa-with-SHA384', hash: 'sha384', algorithm: seq(oid(OID.ecdsaWithSha384)) };
    case 'rsa':
      // RFC 4055: PKCS#1 v1.5 AlgorithmIdentifiers carry NULL parameters.
      return {
        name: 'sha256WithRSAEncryption',
        hash: 'sha256',
        algorithm: seq(oid(OID.sha256WithRsa), nul()),
      };
  }
}

export const SERIAL_BYTES = 16;
const KEY_ID_BYTES = 20;

/**
 * A certificate serial: 16 random bytes with the top bit cleared (a positive INTEGER) and the next bit set
 * (no leading zero byte to strip), so every serial is exactly 16 octets, 32 hex digits, with 126 random bits.
 */
export function newSerial(): Buffer {
  // Drawn from a pool filled 256 serials at a time (one CSPRNG call instead of one per certificate); every
  // serial is a fresh copy of bytes used once.
  if (serialPoolAt + SERIAL_BYTES > serialPool.length) {
    randomFillSync(serialPool);
    serialPoolAt = 0;
  }
  const serial = Buffer.from(serialPool.subarray(serialPoolAt, serialPoolAt + SERIAL_BYTES));
  serialPool.fill(0, serialPoolAt, serialPoolAt + SERIAL_BYTES);
  serialPoolAt += SERIAL_BYTES;
  serial[0] = (serial[0]! & 0x7f) | 0x40;
  return serial;
}

const serialPool = Buffer.alloc(SERIAL_BYTES * 256);
let serialPoolAt = serialPool.length;

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(subjectPublicKey: Buffer): Buffer {
  return createHash('sha1').update(subjectPublicKey).digest();
}

export type NameAttribute =
  | { type: 'O' | 'CN'; value: string }
  /** X.520 serialNumber is a PrintableString. */
  | { type: 'serialNumber'; value: string };

const ATTRIBUTE_OID = {
  O: OID.organizationName,
  CN: OID.commonName,
  serialNumber: OID.serialNumber,
} as const;

/** An RDNSequence of single-attribute RDNs, UTF8String values (RFC 5280 §4.1.2.6) except serialNumber. */
export function distinguishedName(attributes: readonly NameAttribute[]): Asn1 {
  return seq(
    ...attributes.map((a) =>
      set(
        seq(
          oid(ATTRIBUTE_OID[a.type]),
          a.type === 'serialNumber' ? printableString(a.value) : utf8String(a.value),
        ),
      ),
    ),
  );
}

export type GeneralName = { uri: string } | { dns: string } | { ip: Buffer };

function generalName(name: GeneralName): Asn1 {
  // GeneralName's alternatives are IMPLICIT: uniformResourceIdentifier [6], dNSName [2], iPAddress [7].
  if ('uri' in name) return implicitPrimitive(6, name.uri);
  if ('dns' in name) return implicitPrimitive(2, name.dns);
  return implicitPrimitive(7, name.ip);
}

export function subjectAltNameExtension(names: readonly GeneralName[], critical = false): Asn1 {
  return extension(OID.subjectAltName, critical, seq(...names.map(generalName)));
}

function subjectKeyIdExtension(keyId: Buffer): Asn1 {
  return extension(OID.subjectKeyIdentifier, false, octetString(keyId));
}

function authorityKeyIdExtension(keyId: Buffer): Asn1 {
  // AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT OCTET STRING, ... }
  return extension(OID.authorityKeyIdentifier, false, seq(implicitPrimitive(0, keyId)));
}

function crlDistributionPointExtension(url: string): Asn1 {
  // DistributionPoint { distributionPoint [0] DistributionPointName { fullName [0] GeneralNames } }: the
  // outer [0] wraps a CHOICE, so it is constructed; fullName is an IMPLICIT SEQUENCE OF GeneralName.
  const point = seq(contextConstructed(0, contextConstructed(0, generalName({ uri: url }))));
  return extension(OID.crlDistributionPoints, false, seq(point));
}

const VERSION_3 = contextConstructed(0, uint(2));

// ---- bytes: the hot path writes DER directly (the forge builders above are the reference it is tested against) ----

/** A DER element: identifier octet, definite minimal length, then `parts` in order. */
export function derElement(tag: number, ...parts: Uint8Array[]): Buffer {
  let length = 0;
  for (const p of parts) length += p.length;
  let head: number[];
  if (length < 0x80) head = [tag, length];
  else if (length < 0x100) head = [tag, 0x81, length];
  else if (length < 0x10000) head = [tag, 0x82, length >> 8, length & 0xff];
  else if (length < 0x1000000) head = [tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff];
  else throw new RangeError('der element is too large');
  const out = Buffer.allocUnsafe(head.length + length);
  for (let i = 0; i < head.length; i++) out[i] = head[i]!;
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** A non-negative INTEGER element from its unsigned big-endian magnitude, minimally encoded (as uintFromBytes). */
export function uintElement(magnitude: Uint8Array): Buffer {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const bytes = magnitude.length === 0 ? new Uint8Array([0]) : magnitude.subarray(start);
  return (bytes[0]! & 0x80) !== 0 ? derElement(0x02, ZERO, bytes) : derElement(0x02, bytes);
}

const ZERO = new Uint8Array([0]);

/** RFC 5280 Time as an element (as der.ts `time`): UTCTime through 2049, GeneralizedTime from 2050. */
export function timeElement(epochSeconds: number): Buffer {
  if (!Number.isSafeInteger(epochSeconds)) throw new RangeError('time must be whole epoch seconds');
  const d = new Date(epochSeconds * 1000);
  const year = d.getUTCFullYear();
  // NaN (a time past the Date range) fails both comparisons: test for being inside instead.
  if (!(year >= 1950 && year <= 9999)) throw new RangeError('time out of range');
  const p2 = (n: number): string => (n < 10 ? `0${n}` : String(n));
  const rest = `${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}Z`;
  if (year < 2050) return derElement(0x17, Buffer.from(`${p2(year % 100)}${rest}`, 'latin1'));
  return derElement(0x18, Buffer.from(`${year}${rest}`, 'latin1'));
}

export interface SvidParts {
  serial: Buffer;
  notBefore: number;
  notAfter: number;
  /** The SubjectPublicKeyInfo DER, verbatim from the request. */
  spki: Buffer;
  /** 20 octets (SHA-1, RFC 5280 §4.2.1.2 method 1). */
  keyId: Buffer;
  spiffeId: string;
}

export interface IssuerProfile {
  /** The issuing CA's subject Name, copied byte for byte from its certificate. */
  readonly subjectDer: Buffer;
  readonly keyId: Buffer;
  readonly crlUrl?: string | undefined;
}

export interface LeafParts {
  serial: Buffer;
  notBefore: number;
  notAfter: number;
  /** The SubjectPublicKeyInfo node (decoded from the CSR's exact bytes). */
  spki: Asn1;
  keyId: Buffer;
}

export interface CrlEntryParts {
  serial: Buffer;
  revokedAt: number;
  /** RFC 5280 CRLReason; omitted for `unspecified` (§5.3.1). */
  reasonCode?: number | undefined;
}

export interface CrlParts {
  thisUpdate: number;
  nextUpdate: number;
  crlNumber: bigint;
  entries: readonly CrlEntryParts[];
}

/**
 * The constant parts of everything one CA signs, built once per CA: version, algorithm identifiers, the
 * issuer Name, the AKI and CRL distribution point extensions, and the fixed SVID subject and extensions.
 */
export class CertificateTemplate {
  readonly suite: SignatureSuite;
  readonly #issuer: Asn1;
  readonly #aki: Asn1;
  readonly #crlDp: Asn1 | undefined;
  readonly #leafBasicConstraints: Asn1;
  readonly #leafKeyUsage: Asn1;
  readonly #svidEku: Asn1;
  readonly #serverEku: Asn1;
  readonly #svidSubject: Asn1;
  /** The SVID's constant DER, precomputed: see svidDer. */
  readonly #bytes: {
    version: Buffer;
    algorithm: Buffer;
    issuer: Buffer;
    subject: Buffer;
    /** Basic constraints, key usage and extended key usage, in that order. */
    fixedExtensions: Buffer;
    /** The subject key identifier extension up to its 20-octet value. */
    skiPrefix: Buffer;
    aki: Buffer;
    sanOid: Buffer;
    crlDp: Buffer;
  };

  constructor(issuer: IssuerProfile, suite: SignatureSuite) {
    this.suite = suite;
    this.#issuer = decode(issuer.subjectDer, { maxBytes: 64 * 1024, maxDepth: 8 });
    this.#aki = authorityKeyIdExtension(issuer.keyId);
    this.#crlDp = issuer.crlUrl === undefined ? undefined : crlDistributionPointExtension(issuer.crlUrl);
    // CA false is the DEFAULT, which DER leaves out: an empty SEQUENCE reads as CA:FALSE.
    this.#leafBasicConstraints = extension(OID.basicConstraints, true, seq());
    // digitalSignature alone, whatever the key type: TLS 1.3 and every ECDHE suite need nothing else.
    // keyEncipherment only serves static-RSA key transport and keyAgreement static ECDH, suites without forward
    // secrecy that workloads should not negotiate; the X509-SVID standard makes both optional (§4.3).
    this.#leafKeyUsage = extension(OID.keyUsage, true, namedBits([KEY_USAGE.digitalSignature]));
    this.#svidEku = extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth)));
    this.#serverEku = extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth)));
    // A constant, non-empty subject. An empty one would oblige a critical SAN (RFC 5280 §4.2.1.6) and trips up
    // software that shows or logs subjects; a CN would invite host-name matching. The identity is the URI SAN.
    this.#svidSubject = distinguishedName([{ type: 'O', value: 'SPIFFE' }]);
    const ski = encode(subjectKeyIdExtension(Buffer.alloc(KEY_ID_BYTES)));
    this.#bytes = {
      version: encode(VERSION_3),
      algorithm: encode(suite.algorithm),
      issuer: encode(this.#issuer),
      subject: encode(this.#svidSubject),
      fixedExtensions: Buffer.concat([
        encode(this.#leafBasicConstraints),
        encode(this.#leafKeyUsage),
        encode(this.#svidEku),
      ]),
      skiPrefix: ski.subarray(0, ski.length - KEY_ID_BYTES),
      aki: encode(this.#aki),
      sanOid: encode(oid(OID.subjectAltName)),
      crlDp: this.#crlDp ? encode(this.#crlDp) : Buffer.alloc(0),
    };
  }

  /**
   * An X509-SVID's TBSCertificate DER, spliced from the precomputed constant parts and the per-certificate
   * ones (serial, validity, key, key identifier, SPIFFE ID): byte for byte what `svid` encodes to (tested).
   */
  svidDer(parts: SvidParts): Buffer {
    if (parts.keyId.length !== KEY_ID_BYTES) throw new RangeError('keyId must be 20 octets');
    const b = this.#bytes;
    // GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String, inside the SAN extension's OCTET STRING.
    const san = derElement(
      0x30,
      b.sanOid,
      derElement(0x04, derElement(0x30, derElement(0x86, Buffer.from(parts.spiffeId, 'latin1')))),
    );
    const extensions = derElement(
      0xa3,
      derElement(0x30, b.fixedExtensions, b.skiPrefix, parts.keyId, b.aki, san, b.crlDp),
    );
    return derElement(
      0x30,
      b.version,
      uintElement(parts.serial),
      b.algorithm,
      b.issuer,
      derElement(0x30, timeElement(parts.notBefore), timeElement(parts.notAfter)),
      b.subject,
      parts.spki,
      extensions,
    );
  }

  /** `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }`, as DER. */
  signedDer(tbs: Buffer, signature: Buffer): Buffer {
    return derElement(0x30, tbs, this.#bytes.algorithm, derElement(0x03, ZERO, signature));
  }

  #tbs(parts: LeafParts, subject: Asn1, extensions: Asn1[]): Asn1 {
    return seq(
      VERSION_3,
      uintFromBytes(parts.serial),
      this.suite.algorithm,
      this.#issuer,
      seq(time(parts.notBefore), time(parts.notAfter)),
      subject,
      parts.spki,
      contextConstructed(3, seq(...extensions)),
    );
  }

  #leafExtensions(eku: Asn1, san: Asn1, keyId: Buffer): Asn1[] {
    const exts = [
      this.#leafBasicConstraints,
      this.#leafKeyUsage,
      eku,
      subjectKeyIdExtension(keyId),
      this.#aki,
      san,
    ];
    if (this.#crlDp) exts.push(this.#crlDp);
    return exts;
  }

  /**
   * An X509-SVID's TBSCertificate as ASN.1 nodes: one URI SAN (the SPIFFE ID), CA false, digitalSignature,
   * server+client auth. The reference svidDer is tested against; issuance uses svidDer.
   */
  svid(parts: LeafParts & { spiffeId: string }): Asn1 {
    const san = subjectAltNameExtension([{ uri: parts.spiffeId }]);
    return this.#tbs(parts, this.#svidSubject, this.#leafExtensions(this.#svidEku, san, parts.keyId));
  }

  /** A TLS server certificate's TBSCertificate (serverAuth only). */
  server(parts: LeafParts & { subject: Asn1; names: readonly GeneralName[] }): Asn1 {
    const san = subjectAltNameExtension(parts.names);
    return this.#tbs(parts, parts.subject, this.#leafExtensions(this.#serverEku, san, parts.keyId));
  }

  /** A v2 TBSCertList (RFC 5280 §5.1) with AKI and cRLNumber. */
  crl(parts: CrlParts): Asn1 {
    const fields: Asn1[] = [
      uint(1),
      this.suite.algorithm,
      this.#issuer,
      time(parts.thisUpdate),
      time(parts.nextUpdate),
    ];
    // §5.1.2.6: with no revoked certificates the list is absent, not empty.
    if (parts.entries.length > 0) {
      fields.push(
        seq(
          ...parts.entries.map((e) => {
            const entry = [uintFromBytes(e.serial), time(e.revokedAt)];
            if (e.reasonCode !== undefined) {
              entry.push(seq(extension(OID.crlReason, false, enumerated(e.reasonCode))));
            }
            return seq(...entry);
          }),
        ),
      );
    }
    fields.push(
      contextConstructed(0, seq(this.#aki, extension(OID.crlNumber, false, uint(parts.crlNumber)))),
    );
    return seq(...fields);
  }

  /** Certificate or CertificateList: `SEQUENCE { tbs, signatureAlgorithm, signatureValue }`. */
  signed(tbs: Asn1, signature: Buffer): Asn1 {
    return seq(tbs, this.suite.algorithm, bitString(signature));
  }
}

export interface SelfSignedCaParts {
  serial: Buffer;
  notBefore: number;
  notAfter: number;
  subject: Asn1;
  spki: Asn1;
  keyId: Buffer;
  suite: SignatureSuite;
  /** The trust domain's SPIFFE ID, allowed on signing certificates by the X509-SVID standard (§4.1). */
  spiffeId: string;
}

/** A self-signed root's TBSCertificate: CA true and keyCertSign + cRLSign, both critical; SKI = AKI. */
export function selfSignedCaTbs(p: SelfSignedCaParts): Asn1 {
  return seq(
    VERSION_3,
    uintFromBytes(p.serial),
    p.suite.algorithm,
    p.subject,
    seq(time(p.notBefore), time(p.notAfter)),
    p.subject,
    p.spki,
    contextConstructed(
      3,
      seq(
        extension(OID.basicConstraints, true, seq(bool(true))),
        extension(OID.keyUsage, true, namedBits([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign])),
        subjectKeyIdExtension(p.keyId),
        authorityKeyIdExtension(p.keyId),
        subjectAltNameExtension([{ uri: p.spiffeId }]),
      ),
    ),
  );
}
