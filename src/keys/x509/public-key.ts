// Which subject public keys the broker certifies: EC P-256/P-384 (uncompressed), RSA 2048-4096 (e >= 65537), Ed25519.
import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { DerError } from './der.ts';
import {
  bytesOf,
  childrenOf,
  contentBytes,
  readOctetAlignedBitsAt,
  readOidAt,
  TAG,
  type Tlv,
  walkDer,
} from './der-reader.ts';
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
/** Largest SubjectPublicKeyInfo given on its own (an RSA-4096 one is about 550 bytes). */
const SPKI_MAX_BYTES = 4096;

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
 * Checks a SubjectPublicKeyInfo's algorithm, parameters and encoding, without loading the key. `spki` is the
 * element's exact DER (checked here as canonical DER). Throws CsrError (ERR_CSR_WEAK_KEY for a refused key
 * type, ERR_CSR_INVALID for a malformed one).
 */
export function inspectSpki(spki: Buffer): SubjectPublicKey {
  let root: Tlv;
  try {
    root = walkDer(spki, { maxBytes: SPKI_MAX_BYTES, maxDepth: 4 });
  } catch (e) {
    if (e instanceof DerError) throw invalid('subject public key info is malformed', e);
    throw e;
  }
  return inspectSpkiAt(spki, root);
}

/** As inspectSpki, for the SPKI element `node` of `der`, which walkDer has already checked. */
export function inspectSpkiAt(der: Buffer, node: Tlv): SubjectPublicKey {
  try {
    const [algorithm, bits, ...rest] = childrenOf(der, node, 'subject public key info');
    if (rest.length > 0) throw invalid('subject public key info has extra fields');
    const alg = childrenOf(der, algorithm, 'public key algorithm');
    const algOid = readOidAt(der, alg[0], 'public key algorithm');
    const subjectPublicKey = readOctetAlignedBitsAt(der, bits, 'subject public key');
    // A copy: the request's buffer need not outlive this key.
    const spki = Buffer.from(bytesOf(der, node));
    switch (algOid) {
      case OID.ecPublicKey: {
        if (alg.length !== 2 || alg[1]!.tag !== TAG.OID) throw weak('ec keys must name their curve');
        const curve = readOidAt(der, alg[1], 'ec curve');
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
          x: subjectPublicKey.toString('base64url', 1, 1 + half),
          y: subjectPublicKey.toString('base64url', 1 + half),
        };
        return { spki, keyType, subjectPublicKey, jwk };
      }
      case OID.rsaEncryption:
        // RFC 3279: the parameters MUST be NULL.
        if (alg.length !== 2 || alg[1]!.tag !== TAG.NULL || alg[1]!.content !== alg[1]!.end) {
          throw invalid('rsa key parameters must be null');
        }
        return { spki, keyType: 'rsa', subjectPublicKey, jwk: rsaJwk(subjectPublicKey) };
      case OID.ed25519:
        // RFC 8410: the parameters MUST be absent.
        if (alg.length !== 1) throw invalid('ed25519 key parameters must be absent');
        if (subjectPublicKey.length !== 32) throw invalid('the ed25519 public key is malformed');
        if (isWeakEd25519Point(subjectPublicKey)) throw weak('the ed25519 public key is a small-order point');
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
  const root = walkDer(bits, { maxBytes: 2048, maxDepth: 2 });
  const [n, e, ...rest] = childrenOf(bits, root, 'rsa public key');
  if (rest.length > 0) throw invalid('the rsa public key is malformed');
  const magnitude = (node: Tlv | undefined, what: string): string => {
    const content = contentBytes(bits, node, TAG.INTEGER, what);
    if (content.length === 0 || (content[0]! & 0x80) !== 0) throw invalid(`the ${what} is not positive`);
    if (content.length > 1 && content[0] === 0 && (content[1]! & 0x80) === 0) {
      throw invalid(`the ${what} is not minimally encoded`);
    }
    // DER puts a 0x00 before a magnitude whose top bit is set; JWK has none.
    return (content[0] === 0 ? content.subarray(1) : content).toString('base64url');
  };
  return { kty: 'RSA', n: magnitude(n, 'rsa modulus'), e: magnitude(e, 'rsa exponent') };
}

/**
 * Refuses an RSA key whose modulus anyone can factor (even, or with a prime factor below 752, as Let's
 * Encrypt's key policy): its self-signature proves nothing and whoever sees the certificate could use it.
 * Checked after the CSR's signature, so a tampered key still reads as a signature that does not verify.
 */
export function checkNotFactorable(subject: SubjectPublicKey): void {
  if (subject.keyType !== 'rsa' || typeof subject.jwk.n !== 'string') return;
  if (hasSmallFactor(Buffer.from(subject.jwk.n, 'base64url'))) {
    throw weak('the rsa modulus has a small prime factor');
  }
}

// The primes below 752.
const SMALL_PRIMES: readonly bigint[] = (() => {
  const out: bigint[] = [];
  for (let n = 2; n < 752; n++) {
    let prime = true;
    for (let d = 2; d * d <= n; d++) if (n % d === 0) prime = false;
    if (prime) out.push(BigInt(n));
  }
  return out;
})();
const SMALL_PRIMES_PRODUCT = SMALL_PRIMES.reduce((a, b) => a * b, 1n);

function hasSmallFactor(modulus: Buffer): boolean {
  if ((modulus[modulus.length - 1]! & 1) === 0) return true;
  // One reduction by the product, then the small remainders.
  const r = BigInt(`0x${modulus.toString('hex')}`) % SMALL_PRIMES_PRODUCT;
  for (const p of SMALL_PRIMES) if (r % p === 0n) return true;
  return false;
}

// Ed25519 points of small order (1, 2, 4 and 8), by y with the sign of x cleared (little-endian, RFC 8032):
// 0, 1, p-1 and the two y of the order-8 points. Under such a key every message has a valid signature anyone
// can compute (R = [S]B for a = 0), so the CSR's self-signature proves nothing. The test suite derives them.
const ED25519_SMALL_ORDER_Y: ReadonlySet<string> = new Set([
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
]);

/** A small-order point, or a y that is not reduced mod p = 2^255 - 19 (RFC 8032 §5.1.3 refuses to decode it). */
function isWeakEd25519Point(point: Buffer): boolean {
  const y = Buffer.from(point);
  y[31]! &= 0x7f;
  if (ED25519_SMALL_ORDER_Y.has(y.toString('hex'))) return true;
  if (y[31] !== 0x7f || y[0]! < 0xed) return false;
  for (let i = 1; i < 31; i++) if (y[i] !== 0xff) return false;
  return true;
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
  const subject = inspectSpki(spki);
  let key: KeyObject;
  try {
    // Given on its own, the key is read from its own bytes by OpenSSL, not through the JWK shortcut.
    key = createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (e) {
    throw invalid('the public key is not a valid key', e);
  }
  checkSubjectKey(key, subject);
  checkNotFactorable(subject);
  return { subject, key };
}
