// X.509 for x509pop: parse certificates, verify a chain to configured CAs, verify proof of possession.
// Every signature is checked by node:crypto; node-forge's ASN.1 reader only reads fields Node does not expose
// (path length, key usage, extended key usage, names).
import { constants, createHash, type KeyObject, verify, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as Forge from 'node-forge';

// node-forge is CommonJS and its typings declare no default export; require() gives the real module object.
const forge = createRequire(import.meta.url)('node-forge') as typeof Forge;
const { asn1 } = forge;
type Asn1 = Forge.asn1.Asn1;

/** A chain problem whose reason is safe to show the caller. */
export class ChainError extends Error {
  readonly reason: string;
  constructor(reason: string, options?: { cause?: unknown }) {
    super(reason, options);
    this.name = 'ChainError';
    this.reason = reason;
  }
}

const MALFORMED = 'the certificate chain is malformed';

/** Leaf plus intermediates; longer chains are refused before any signature is checked. */
export const MAX_CHAIN_LENGTH = 5;
const MAX_ANCHORS = 100;

const OID = {
  commonName: '2.5.4.3',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  subjectAltName: '2.5.29.17',
  subjectKeyIdentifier: '2.5.29.14',
  authorityKeyIdentifier: '2.5.29.35',
  nameConstraints: '2.5.29.30',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  anyExtendedKeyUsage: '2.5.29.37.0',
} as const;

// Extensions this module understands; any other one marked critical makes the certificate unusable
// (RFC 5280, 4.2). Name constraints are understood only to be refused: they are not enforced.
const UNDERSTOOD = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectAltName,
  OID.subjectKeyIdentifier,
  OID.authorityKeyIdentifier,
]);

// Certificate signature algorithms accepted anywhere in a chain (no SHA-1, no MD5).
const SIGNATURE_ALGORITHMS = new Set<string>([
  '1.2.840.113549.1.1.11', // sha256WithRSAEncryption
  '1.2.840.113549.1.1.12', // sha384WithRSAEncryption
  '1.2.840.113549.1.1.13', // sha512WithRSAEncryption
  '1.2.840.113549.1.1.10', // RSASSA-PSS
  '1.2.840.10045.4.3.2', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3', // ecdsa-with-SHA384
  '1.2.840.10045.4.3.4', // ecdsa-with-SHA512
  '1.3.101.112', // Ed25519
]);

const EC_HASHES: Readonly<Record<string, string>> = {
  prime256v1: 'sha256',
  secp384r1: 'sha384',
  secp521r1: 'sha512',
};
const MIN_RSA_BITS = 2048;
// Larger keys only cost verification time.
const MAX_RSA_BITS = 8192;

export interface ParsedCertificate {
  x509: X509Certificate;
  /** Lowercase hex SHA-256 of the DER. */
  fingerprint: string;
  /** Lowercase hex, without leading zeros. */
  serial: string;
  notBefore: number;
  notAfter: number;
  signatureAlgorithm: string;
  /** From basicConstraints, when the certificate sets one. */
  pathLength: number | undefined;
  /** Undefined when the certificate has no key usage extension (any use). */
  keyUsage: { digitalSignature: boolean; keyCertSign: boolean } | undefined;
  /** Undefined when the certificate has no extended key usage extension. */
  extKeyUsage: string[] | undefined;
  commonNames: string[];
  dnsNames: string[];
  uris: string[];
  hasNameConstraints: boolean;
  unknownCritical: string[];
}

const PEM_CERTIFICATE =
  /^-----BEGIN CERTIFICATE-----\r?\n((?:[A-Za-z0-9+/=]{1,76}\r?\n)+)-----END CERTIFICATE-----\r?\n?$/;

/** Exactly one PEM certificate, nothing around it. */
export function parsePemCertificate(pem: string): ParsedCertificate {
  const match = PEM_CERTIFICATE.exec(pem.trim().concat('\n'));
  if (!match) throw new ChainError(MALFORMED);
  const base64 = match[1]!.replace(/\r?\n/g, '');
  const der = Buffer.from(base64, 'base64');
  if (der.toString('base64') !== base64) throw new ChainError(MALFORMED);
  return parseDerCertificate(der);
}

export function parseDerCertificate(der: Buffer): ParsedCertificate {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (cause) {
    throw new ChainError(MALFORMED, { cause });
  }
  // Node read it; now the fields Node does not expose. Any surprise in the structure is malformed.
  try {
    return { x509, ...readFields(der) };
  } catch (cause) {
    if (cause instanceof ChainError) throw cause;
    throw new ChainError(MALFORMED, { cause });
  }
}

type Fields = Omit<ParsedCertificate, 'x509'>;

function fromDer(der: Buffer | string): Asn1 {
  // The typings know only the boolean form; the options object turns off forge's guessing inside BIT STRINGs.
  const parse = asn1.fromDer as unknown as (
    bytes: Forge.util.ByteBuffer,
    options: { strict: boolean; parseAllBytes: boolean; decodeBitStrings: boolean },
  ) => Asn1;
  const binary = typeof der === 'string' ? der : der.toString('binary');
  return parse(forge.util.createBuffer(binary), {
    strict: true,
    parseAllBytes: true,
    decodeBitStrings: false,
  });
}

function kids(node: Asn1 | undefined): Asn1[] {
  if (!node || !Array.isArray(node.value)) throw new ChainError(MALFORMED);
  return node.value;
}

function octets(node: Asn1 | undefined): string {
  if (!node || typeof node.value !== 'string') throw new ChainError(MALFORMED);
  return node.value;
}

function isUniversal(node: Asn1 | undefined, type: number): boolean {
  return node !== undefined && node.tagClass === asn1.Class.UNIVERSAL && node.type === type;
}

function isContext(node: Asn1 | undefined, tag: number): boolean {
  return node !== undefined && node.tagClass === asn1.Class.CONTEXT_SPECIFIC && node.type === tag;
}

function oidOf(node: Asn1 | undefined): string {
  if (!isUniversal(node, asn1.Type.OID)) throw new ChainError(MALFORMED);
  return asn1.derToOid(octets(node));
}

function timeOf(node: Asn1 | undefined): number {
  if (isUniversal(node, asn1.Type.UTCTIME)) return asn1.utcTimeToDate(octets(node)).getTime();
  if (isUniversal(node, asn1.Type.GENERALIZEDTIME)) return asn1.generalizedTimeToDate(octets(node)).getTime();
  throw new ChainError(MALFORMED);
}

function readFields(der: Buffer): Fields {
  const [tbs, outerAlgorithm] = kids(fromDer(der));
  const items = kids(tbs);
  let i = isContext(items[0], 0) ? 1 : 0; // [0] version
  const serialNode = items[i++];
  if (!isUniversal(serialNode, asn1.Type.INTEGER)) throw new ChainError(MALFORMED);
  const signatureAlgorithm = oidOf(kids(items[i++])[0]);
  if (oidOf(kids(outerAlgorithm)[0]) !== signatureAlgorithm) throw new ChainError(MALFORMED);
  i++; // issuer: compared by Node (checkIssued)
  const [from, to] = kids(items[i++]);
  const subject = items[i++];
  i++; // subjectPublicKeyInfo: read by Node
  let extensions: Asn1 | undefined;
  for (; i < items.length; i++) if (isContext(items[i], 3)) extensions = kids(items[i])[0];

  const fields: Fields = {
    fingerprint: createHash('sha256').update(der).digest('hex'),
    serial: Buffer.from(octets(serialNode), 'binary')
      .toString('hex')
      .replace(/^0+(?=.)/, ''),
    notBefore: timeOf(from),
    notAfter: timeOf(to),
    signatureAlgorithm,
    pathLength: undefined,
    keyUsage: undefined,
    extKeyUsage: undefined,
    commonNames: readCommonNames(subject),
    dnsNames: [],
    uris: [],
    hasNameConstraints: false,
    unknownCritical: [],
  };
  if (extensions) readExtensions(kids(extensions), fields);
  return fields;
}

function readCommonNames(name: Asn1 | undefined): string[] {
  const names: string[] = [];
  for (const rdn of kids(name)) {
    for (const attribute of kids(rdn)) {
      const [type, value] = kids(attribute);
      if (oidOf(type) !== OID.commonName || !value) continue;
      const text = directoryString(value);
      if (text !== undefined) names.push(text);
    }
  }
  return names;
}

function directoryString(node: Asn1): string | undefined {
  if (node.tagClass !== asn1.Class.UNIVERSAL) return undefined;
  const raw = Buffer.from(octets(node), 'binary');
  switch (node.type) {
    case asn1.Type.UTF8:
      return raw.toString('utf8');
    case asn1.Type.PRINTABLESTRING:
    case asn1.Type.IA5STRING:
      return raw.toString('latin1');
    case asn1.Type.BMPSTRING:
      return raw.length % 2 === 0 ? Buffer.from(raw).swap16().toString('utf16le') : undefined;
    default:
      return undefined;
  }
}

function readExtensions(list: Asn1[], fields: Fields): void {
  const seen = new Set<string>();
  for (const extension of list) {
    const parts = kids(extension);
    const oid = oidOf(parts[0]);
    if (seen.has(oid)) throw new ChainError(MALFORMED); // RFC 5280: at most one of each
    seen.add(oid);
    const critical =
      parts.length === 3 && isUniversal(parts[1], asn1.Type.BOOLEAN) && octets(parts[1]) !== '\x00';
    const valueNode = parts[parts.length - 1];
    if (!isUniversal(valueNode, asn1.Type.OCTETSTRING)) throw new ChainError(MALFORMED);
    const value = () => fromDer(octets(valueNode));
    switch (oid) {
      case OID.basicConstraints: {
        const length = kids(value()).find((n) => isUniversal(n, asn1.Type.INTEGER));
        if (length) {
          const bytes = octets(length);
          if (bytes.length > 2) throw new ChainError(MALFORMED);
          const pathLength = asn1.derToInteger(bytes);
          if (pathLength < 0) throw new ChainError(MALFORMED);
          fields.pathLength = pathLength;
        }
        break;
      }
      case OID.keyUsage: {
        const bits = value();
        if (!isUniversal(bits, asn1.Type.BITSTRING)) throw new ChainError(MALFORMED);
        // First octet: unused bits; then bit 0 (0x80) digitalSignature ... bit 5 (0x04) keyCertSign.
        const first = octets(bits).charCodeAt(1) || 0;
        fields.keyUsage = { digitalSignature: (first & 0x80) !== 0, keyCertSign: (first & 0x04) !== 0 };
        break;
      }
      case OID.extKeyUsage:
        fields.extKeyUsage = kids(value()).map(oidOf);
        break;
      case OID.subjectAltName:
        for (const name of kids(value())) {
          if (isContext(name, 2))
            fields.dnsNames.push(Buffer.from(octets(name), 'binary').toString('latin1'));
          else if (isContext(name, 6))
            fields.uris.push(Buffer.from(octets(name), 'binary').toString('latin1'));
        }
        break;
      case OID.nameConstraints:
        fields.hasNameConstraints = true;
        break;
      default:
        if (critical && !UNDERSTOOD.has(oid)) fields.unknownCritical.push(oid);
    }
  }
}

export interface TrustAnchor {
  certificate: ParsedCertificate;
}

/**
 * The configured CAs, from a PEM bundle (text between certificates is ignored). Throws an Error that names
 * the problem; each CA must be a CA certificate that may sign certificates.
 */
export function loadTrustAnchors(bundle: string): TrustAnchor[] {
  const blocks = bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new Error('no PEM certificate found');
  if (blocks.length > MAX_ANCHORS) throw new Error(`more than ${MAX_ANCHORS} CA certificates`);
  return blocks.map((pem, n) => {
    let certificate: ParsedCertificate;
    try {
      certificate = parsePemCertificate(pem);
    } catch {
      throw new Error(`certificate ${n + 1} cannot be parsed`);
    }
    const problem = anchorProblem(certificate);
    if (problem)
      throw new Error(
        `certificate ${n + 1} (${certificate.x509.subject.split('\n').join(', ')}): ${problem}`,
      );
    return { certificate };
  });
}

function anchorProblem(c: ParsedCertificate): string | undefined {
  if (!c.x509.ca) return 'is not a CA certificate (basicConstraints CA:TRUE)';
  if (c.keyUsage && !c.keyUsage.keyCertSign) return 'its key usage does not allow keyCertSign';
  if (c.hasNameConstraints) return 'name constraints are not supported';
  if (c.unknownCritical.length > 0) return `unsupported critical extension ${c.unknownCritical[0]}`;
  if (!keyStrong(c.x509.publicKey)) return 'its key is too weak or of an unsupported type';
  return undefined;
}

function keyStrong(key: KeyObject): boolean {
  switch (key.asymmetricKeyType) {
    case 'rsa':
    case 'rsa-pss': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      return bits >= MIN_RSA_BITS && bits <= MAX_RSA_BITS;
    }
    case 'ec':
      return EC_HASHES[key.asymmetricKeyDetails?.namedCurve ?? ''] !== undefined;
    case 'ed25519':
      return true;
    default:
      return false;
  }
}

export interface VerifiedChain {
  leaf: ParsedCertificate;
  anchor: TrustAnchor;
}

/**
 * Verifies `chain` (leaf first, then intermediates, each issued by the next) up to one of `anchors`, at
 * `nowMs`. The chain's own root is never trusted: a certificate identical to a configured CA is dropped
 * from its end, and anything else must be issued by a configured CA.
 */
export function verifyChain(
  chain: ParsedCertificate[],
  anchors: TrustAnchor[],
  nowMs: number,
): VerifiedChain {
  if (chain.length === 0 || chain.length > MAX_CHAIN_LENGTH) throw new ChainError(MALFORMED);
  let path = chain;
  const last = path[path.length - 1]!;
  if (path.length > 1 && anchors.some((a) => a.certificate.fingerprint === last.fingerprint)) {
    path = path.slice(0, -1);
  }
  const leaf = path[0]!;
  const intermediates = path.slice(1);

  for (const c of path) checkCommon(c, nowMs);
  checkLeaf(leaf);
  for (let i = 0; i + 1 < path.length; i++) {
    if (!issuedBy(path[i]!, path[i + 1]!))
      throw new ChainError('the certificate chain is broken or out of order');
  }
  intermediates.forEach((c, i) => {
    if (!c.x509.ca) throw new ChainError('an intermediate certificate is not a CA');
    if (c.keyUsage && !c.keyUsage.keyCertSign)
      throw new ChainError('an intermediate certificate may not sign certificates');
    if (c.hasNameConstraints) throw new ChainError('name constraints are not supported');
    // i intermediates stand between this one and the leaf.
    if (c.pathLength !== undefined && i > c.pathLength)
      throw new ChainError('the chain exceeds a path length constraint');
  });

  const top = path[path.length - 1]!;
  const anchor = anchors.find((a) => {
    const ca = a.certificate;
    if (!issuedBy(top, ca)) return false;
    if (ca.notBefore > nowMs || ca.notAfter < nowMs) return false;
    return ca.pathLength === undefined || intermediates.length <= ca.pathLength;
  });
  if (!anchor) throw new ChainError('the certificate chain does not lead to a configured CA');
  return { leaf, anchor };
}

function checkCommon(c: ParsedCertificate, nowMs: number): void {
  if (c.notBefore > nowMs || c.notAfter < nowMs) {
    throw new ChainError('a certificate of the chain is not valid at this time');
  }
  if (!SIGNATURE_ALGORITHMS.has(c.signatureAlgorithm)) {
    throw new ChainError('a certificate of the chain uses an unsupported signature algorithm');
  }
  if (c.unknownCritical.length > 0) {
    throw new ChainError('a certificate of the chain has an unsupported critical extension');
  }
  if (!keyStrong(c.x509.publicKey)) {
    throw new ChainError('a certificate of the chain has a weak or unsupported key');
  }
}

function checkLeaf(leaf: ParsedCertificate): void {
  if (leaf.x509.ca) throw new ChainError('the leaf certificate is a CA');
  if (leaf.keyUsage && !leaf.keyUsage.digitalSignature) {
    throw new ChainError('the leaf certificate may not sign (key usage lacks digitalSignature)');
  }
  const eku = leaf.extKeyUsage;
  if (eku && !eku.includes(OID.clientAuth) && !eku.includes(OID.anyExtendedKeyUsage)) {
    throw new ChainError('the leaf certificate is not for client authentication (extended key usage)');
  }
  if (leaf.x509.publicKey.asymmetricKeyType === 'rsa-pss') {
    throw new ChainError('the leaf key type is not supported');
  }
}

/** Names (and key identifiers, key usage) by OpenSSL, then the signature itself. */
function issuedBy(child: ParsedCertificate, parent: ParsedCertificate): boolean {
  try {
    return child.x509.checkIssued(parent.x509) && child.x509.verify(parent.x509.publicKey);
  } catch {
    return false;
  }
}

/**
 * Proof of possession: `signature` over `message` by the leaf's key. ECDSA uses the curve's hash (P-256:
 * SHA-256, P-384: SHA-384, P-521: SHA-512) and a DER signature; RSA uses RSASSA-PSS with SHA-256 (MGF1
 * SHA-256, any salt length); Ed25519 signs the message itself.
 */
export function verifyPossession(leaf: ParsedCertificate, message: Buffer, signature: Buffer): boolean {
  const key = leaf.x509.publicKey;
  try {
    switch (key.asymmetricKeyType) {
      case 'ec': {
        const hash = EC_HASHES[key.asymmetricKeyDetails?.namedCurve ?? ''];
        return hash !== undefined && verify(hash, message, { key, dsaEncoding: 'der' }, signature);
      }
      case 'rsa':
        return verify(
          'sha256',
          message,
          { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO },
          signature,
        );
      case 'ed25519':
        return verify(null, message, key, signature);
      default:
        return false;
    }
  } catch {
    return false;
  }
}
