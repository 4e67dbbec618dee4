// Which subject public keys the broker certifies: EC P-256/P-384 (uncompressed), RSA 2048-4096 (e >= 65537), Ed25519.
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import {
  type Asn1,
  contentOf,
  DerError,
  decode,
  elements,
  encode,
  readOctetAlignedBits,
  readOid,
  T,
  UNIVERSAL,
} from './der.ts';
import { CsrError } from './errors.ts';
import { OID } from './oids.ts';

export type SubjectKeyType = 'ec-p256' | 'ec-p384' | 'rsa' | 'ed25519';

export interface SubjectPublicKey {
  /** The SubjectPublicKeyInfo DER, byte for byte as given. */
  readonly spki: Buffer;
  readonly keyType: SubjectKeyType;
  /** The subjectPublicKey bits (what the RFC 5280 method-1 key identifier hashes). */
  readonly subjectPublicKey: Buffer;
  /** The same key as a public JWK, taken from the checked SPKI fields (see loadSubjectKey). */
  readonly jwk: JsonWebKey;
}

export const RSA_MIN_BITS = 2048;
export const RSA_MAX_BITS = 4096;
const RSA_MIN_EXPONENT = 65537n;
// NIST SP 800-56B caps e below 2^256; nothing legitimate uses more.
const RSA_MAX_EXPONENT = (1n << 256n) - 1n;

const WEAK_CURVES: ReadonlySet<string> = new Set([OID.p192, OID.p224, OID.secp256k1]);
const EC_CURVES: Readonly<Record<string, 'ec-p256' | 'ec-p384'>> = {
  [OID.p256]: 'ec-p256',
  [OID.p384]: 'ec-p384',
};
// 0x04 || X || Y
const EC_POINT_LENGTH = { 'ec-p256': 65, 'ec-p384': 97 } as const;

function weak(message: string): CsrError {
  return new CsrError('ERR_CSR_WEAK_KEY', message);
}

function invalid(message: string, cause?: unknown): CsrError {
  return new CsrError('ERR_CSR_INVALID', message, cause === undefined ? undefined : { cause });
}

/**
 * Checks a SubjectPublicKeyInfo node's algorithm, parameters and encoding, without loading the key. Throws
 * CsrError (ERR_CSR_WEAK_KEY for a refused key type, ERR_CSR_INVALID for a malformed one).
 */
export function inspectSpki(node: Asn1): SubjectPublicKey {
  try {
    const [algorithm, bits, ...rest] = elements(node, 'subject public key info');
    if (rest.length > 0) throw invalid('subject public key info has extra fields');
    const alg = elements(algorithm, 'public key algorithm');
    const algOid = readOid(alg[0], 'public key algorithm');
    const subjectPublicKey = readOctetAlignedBits(bits, 'subject public key');
    const spki = encode(node);
    switch (algOid) {
      case OID.ecPublicKey: {
        if (alg.length !== 2 || alg[1]?.type !== T.OID || alg[1].tagClass !== UNIVERSAL) {
          throw weak('ec keys must name their curve');
        }
        const curve = readOid(alg[1], 'ec curve');
        const keyType = EC_CURVES[curve];
        if (!keyType)
          throw weak(WEAK_CURVES.has(curve) ? 'the ec curve is too weak' : 'the ec curve is not supported');
        const prefix = subjectPublicKey[0];
        // Go's crypto/x509 (go-spiffe, SPIRE) reads only uncompressed points.
        if (prefix === 0x02 || prefix === 0x03) throw weak('compressed ec points are not supported');
        const length = EC_POINT_LENGTH[keyType];
        if (prefix !== 0x04 || subjectPublicKey.length !== length)
          throw invalid('the ec public key is malformed');
        const half = (length - 1) / 2;
        const jwk = {
          kty: 'EC',
          crv: keyType === 'ec-p256' ? 'P-256' : 'P-384',
          x: subjectPublicKey.subarray(1, 1 + half).toString('base64url'),
          y: subjectPublicKey.subarray(1 + half).toString('base64url'),
        };
        return { spki, keyType, subjectPublicKey, jwk };
      }
      case OID.rsaEncryption:
        // RFC 3279: the parameters MUST be NULL.
        if (
          alg.length !== 2 ||
          alg[1]?.type !== T.NULL ||
          alg[1].tagClass !== UNIVERSAL ||
          alg[1].value !== ''
        ) {
          throw invalid('rsa key parameters must be null');
        }
        return { spki, keyType: 'rsa', subjectPublicKey, jwk: rsaJwk(subjectPublicKey) };
      case OID.ed25519:
        // RFC 8410: the parameters MUST be absent.
        if (alg.length !== 1) throw invalid('ed25519 key parameters must be absent');
        if (subjectPublicKey.length !== 32) throw invalid('the ed25519 public key is malformed');
        return {
          spki,
          keyType: 'ed25519',
          subjectPublicKey,
          jwk: { kty: 'OKP', crv: 'Ed25519', x: subjectPublicKey.toString('base64url') },
        };
      case OID.dsa:
        throw weak('dsa keys are not accepted');
      case OID.rsassaPss:
        throw weak('rsassa-pss restricted keys are not supported; use an rsaEncryption key');
      default:
        throw weak('the key type is not supported');
    }
  } catch (e) {
    if (e instanceof DerError) throw invalid('subject public key info is malformed', e);
    throw e;
  }
}

/** RFC 8017 RSAPublicKey: two positive INTEGERs (canonical DER, like everything the broker certifies). */
function rsaJwk(bits: Buffer): JsonWebKey {
  const [n, e, ...rest] = elements(decode(bits, { maxBytes: 2048, maxDepth: 2 }), 'rsa public key');
  if (rest.length > 0) throw invalid('the rsa public key is malformed');
  const magnitude = (node: Asn1 | undefined, what: string): string => {
    const content = Buffer.from(contentOf(node, T.INTEGER, what), 'latin1');
    if (content.length === 0 || (content[0]! & 0x80) !== 0) throw invalid(`the ${what} is not positive`);
    // DER puts a 0x00 before a magnitude whose top bit is set; JWK has none.
    return (content[0] === 0 ? content.subarray(1) : content).toString('base64url');
  };
  return { kty: 'RSA', n: magnitude(n, 'rsa modulus'), e: magnitude(e, 'rsa exponent') };
}

/**
 * Loads the key with native crypto; null when it is not a valid key (an EC point off its curve, say). The key
 * is imported from its JWK form, built from the SPKI fields inspectSpki checked: OpenSSL 3 decodes a JWK in
 * about half the time it takes for SPKI DER (EC; RSA is 20x faster), and the CA later confirms that the
 * certificate's key, as OpenSSL parses it from the SPKI bytes, equals this one.
 */
export function loadSubjectKey(subject: SubjectPublicKey): KeyObject | null {
  try {
    return createPublicKey({ key: subject.jwk, format: 'jwk' });
  } catch {
    return null;
  }
}

/**
 * The checks only a loaded key can answer: RSA size and exponent, and the key type and curve as OpenSSL sees
 * them. (No re-export to compare bytes: OpenSSL 3's encoder costs more than the rest of an issuance.)
 */
export function checkSubjectKey(key: KeyObject, subject: SubjectPublicKey): void {
  const details = key.asymmetricKeyDetails ?? {};
  switch (subject.keyType) {
    case 'ec-p256':
    case 'ec-p384': {
      const expected = subject.keyType === 'ec-p256' ? 'prime256v1' : 'secp384r1';
      if (key.asymmetricKeyType !== 'ec' || details.namedCurve !== expected)
        throw weak('the ec key does not match its curve');
      break;
    }
    case 'rsa': {
      if (key.asymmetricKeyType !== 'rsa') throw weak('the key is not an rsa key');
      const bits = details.modulusLength ?? 0;
      if (bits < RSA_MIN_BITS) throw weak(`rsa keys must have at least ${RSA_MIN_BITS} bits`);
      if (bits > RSA_MAX_BITS) throw weak(`rsa keys must have at most ${RSA_MAX_BITS} bits`);
      const e = details.publicExponent ?? 0n;
      if (e < RSA_MIN_EXPONENT || e > RSA_MAX_EXPONENT || e % 2n === 0n) {
        throw weak('the rsa public exponent must be odd and at least 65537');
      }
      break;
    }
    case 'ed25519':
      if (key.asymmetricKeyType !== 'ed25519') throw weak('the key is not an ed25519 key');
      break;
  }
}

/** Decodes, inspects, loads and checks a SubjectPublicKeyInfo given on its own (not from a CSR). */
export function acceptSpki(spki: Buffer): { subject: SubjectPublicKey; key: KeyObject } {
  let node: Asn1;
  try {
    node = decode(spki, { maxBytes: 4096, maxDepth: 4 });
  } catch (e) {
    throw invalid('subject public key info is malformed', e);
  }
  const subject = inspectSpki(node);
  let key: KeyObject;
  try {
    // Given on its own, the key is read from its own bytes by OpenSSL, not through the JWK shortcut.
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (e) {
    throw invalid('the public key is not a valid key', e);
  }
  checkSubjectKey(key, subject);
  return { subject, key };
}
