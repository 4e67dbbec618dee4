// Reads the fields of a CA certificate the broker relies on (exact subject bytes, SKI, key usage, SANs).
import {
  type Asn1,
  CONTEXT,
  contentOf,
  DerError,
  decode,
  elements,
  encode,
  readNamedBits,
  readOctetAlignedBits,
  readOid,
  readSmallUint,
  readTime,
  T,
  UNIVERSAL,
} from './der.ts';
import { KEY_USAGE, OID } from './oids.ts';

export interface CertificateFields {
  version: number;
  /** The subject Name's DER, byte for byte. */
  subjectDer: Buffer;
  issuerDer: Buffer;
  notBefore: number;
  notAfter: number;
  /** The subjectPublicKey bits. */
  subjectPublicKey: Buffer;
  subjectKeyId: Buffer | undefined;
  basicConstraints: { ca: boolean; critical: boolean } | undefined;
  keyUsage: { keyCertSign: boolean; cRLSign: boolean; digitalSignature: boolean } | undefined;
  extKeyUsage: string[] | undefined;
  uris: string[];
}

const MAX_CERT_BYTES = 64 * 1024;

/** Parses a certificate's DER (canonical DER only). Throws DerError. */
export function readCertificate(der: Buffer): CertificateFields {
  const cert = decode(der, { maxBytes: MAX_CERT_BYTES, maxDepth: 32 });
  const [tbs] = elements(cert, 'certificate');
  const fields = elements(tbs, 'tbs certificate');
  let i = 0;
  let version = 1;
  if (fields[0]?.tagClass === CONTEXT && fields[0].type === 0) {
    const [v] = elements(fields[0], 'certificate version', 0, CONTEXT);
    version = readSmallUint(v, 'certificate version') + 1;
    i = 1;
  }
  const issuer = fields[i + 2];
  const validity = elements(fields[i + 3], 'validity');
  const subject = fields[i + 4];
  elements(issuer, 'issuer');
  elements(subject, 'subject');
  const spki = elements(fields[i + 5], 'subject public key info');
  const out: CertificateFields = {
    version,
    subjectDer: encode(subject!),
    issuerDer: encode(issuer!),
    notBefore: readTime(validity[0], 'notBefore'),
    notAfter: readTime(validity[1], 'notAfter'),
    subjectPublicKey: readOctetAlignedBits(spki[1], 'subject public key'),
    subjectKeyId: undefined,
    basicConstraints: undefined,
    keyUsage: undefined,
    extKeyUsage: undefined,
    uris: [],
  };
  const extsWrapper = fields.slice(i + 6).find((f) => f.tagClass === CONTEXT && f.type === 3);
  if (!extsWrapper) return out;
  const [extsNode] = elements(extsWrapper, 'extensions', 3, CONTEXT);
  const seen = new Set<string>();
  for (const ext of elements(extsNode, 'extensions')) {
    const parts = elements(ext, 'extension');
    const id = readOid(parts[0], 'extension id');
    if (seen.has(id)) throw new DerError('an extension appears twice');
    seen.add(id);
    let critical = false;
    let valueNode = parts[1];
    if (valueNode?.type === T.BOOLEAN && valueNode.tagClass === UNIVERSAL) {
      critical = contentOf(valueNode, T.BOOLEAN, 'extension criticality') === '\xff';
      valueNode = parts[2];
    }
    const octets = contentOf(valueNode, T.OCTETSTRING, 'extension value');
    const value = (): Asn1 =>
      decode(Buffer.from(octets, 'latin1'), { maxBytes: MAX_CERT_BYTES, maxDepth: 16 });
    switch (id) {
      case OID.subjectKeyIdentifier:
        out.subjectKeyId = Buffer.from(contentOf(value(), T.OCTETSTRING, 'subject key identifier'), 'latin1');
        break;
      case OID.basicConstraints: {
        const bc = elements(value(), 'basic constraints');
        const first = bc[0];
        const ca =
          first?.type === T.BOOLEAN && first.tagClass === UNIVERSAL
            ? contentOf(first, T.BOOLEAN, 'basic constraints ca') === '\xff'
            : false;
        out.basicConstraints = { ca, critical };
        break;
      }
      case OID.keyUsage: {
        const bit = readNamedBits(value(), 'key usage');
        out.keyUsage = {
          digitalSignature: bit(KEY_USAGE.digitalSignature),
          keyCertSign: bit(KEY_USAGE.keyCertSign),
          cRLSign: bit(KEY_USAGE.cRLSign),
        };
        break;
      }
      case OID.extKeyUsage:
        out.extKeyUsage = elements(value(), 'extended key usage').map((n) =>
          readOid(n, 'extended key usage'),
        );
        break;
      case OID.subjectAltName:
        for (const name of elements(value(), 'subject alternative name')) {
          if (
            name.tagClass === CONTEXT &&
            name.type === 6 &&
            !name.constructed &&
            typeof name.value === 'string'
          ) {
            out.uris.push(name.value);
          }
        }
        break;
    }
  }
  return out;
}
