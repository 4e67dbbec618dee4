// PKCS#10 certification requests from workloads: bounded parsing, key policy and proof of possession.
import { constants, type KeyObject, verify } from 'node:crypto';
import { DerError } from './der.ts';
import {
  childrenOf,
  contextTag,
  expect,
  readNullAt,
  readOctetAlignedBitsAt,
  readOidAt,
  readSmallUintAt,
  TAG,
  type Tlv,
  walkDer,
} from './der-reader.ts';
import { CsrError } from './errors.ts';
import { OID } from './oids.ts';
import { pemBlocks } from './pem.ts';
import {
  checkNotFactorable,
  checkSubjectKey,
  inspectSpkiAt,
  loadSubjectKey,
  type SubjectKeyType,
  type SubjectPublicKey,
} from './public-key.ts';

/** Largest CSR accepted, in PEM characters. An RSA-4096 request with a few attributes needs about 2.5 KiB. */
export const CSR_MAX_PEM_CHARS = 16 * 1024;
const CSR_MAX_DER_BYTES = 12 * 1024;
// CertificationRequest > info > attributes > attribute > values > extensions > extension > value: 8 levels.
const CSR_MAX_DEPTH = 16;
// RFC 7468 §7: "NEW CERTIFICATE REQUEST" is the legacy label some tools still write.
const CSR_LABELS: ReadonlySet<string> = new Set(['CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST']);
const MAX_PSS_SALT = 512;

export type CsrSignatureAlgorithm =
  | 'ecdsa-with-SHA256'
  | 'ecdsa-with-SHA384'
  | 'ecdsa-with-SHA512'
  | 'sha256WithRSAEncryption'
  | 'sha384WithRSAEncryption'
  | 'sha512WithRSAEncryption'
  | 'RSASSA-PSS'
  | 'Ed25519';

export interface ParsedCsr {
  /** The SubjectPublicKeyInfo DER exactly as it came in the request: this is what gets certified. */
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
  readonly keyType: SubjectKeyType;
  readonly signatureAlgorithm: CsrSignatureAlgorithm;
}

type Hash = 'sha256' | 'sha384' | 'sha512';
type KeyFamily = 'ec' | 'rsa' | 'ed25519';

interface SignatureScheme {
  name: CsrSignatureAlgorithm;
  family: KeyFamily;
  hash: Hash | null;
  /** How the AlgorithmIdentifier's parameters must look. */
  params: 'absent' | 'null-or-absent' | 'pss';
}

// The allow-list. SHA-1, MD5, SHA-224, DSA and anything unlisted are refused.
const SCHEMES: Readonly<Record<string, SignatureScheme>> = {
  [OID.ecdsaWithSha256]: { name: 'ecdsa-with-SHA256', family: 'ec', hash: 'sha256', params: 'absent' },
  [OID.ecdsaWithSha384]: { name: 'ecdsa-with-SHA384', family: 'ec', hash: 'sha384', params: 'absent' },
  [OID.ecdsaWithSha512]: { name: 'ecdsa-with-SHA512', family: 'ec', hash: 'sha512', params: 'absent' },
  [OID.sha256WithRsa]: {
    name: 'sha256WithRSAEncryption',
    family: 'rsa',
    hash: 'sha256',
    params: 'null-or-absent',
  },
  [OID.sha384WithRsa]: {
    name: 'sha384WithRSAEncryption',
    family: 'rsa',
    hash: 'sha384',
    params: 'null-or-absent',
  },
  [OID.sha512WithRsa]: {
    name: 'sha512WithRSAEncryption',
    family: 'rsa',
    hash: 'sha512',
    params: 'null-or-absent',
  },
  [OID.rsassaPss]: { name: 'RSASSA-PSS', family: 'rsa', hash: null, params: 'pss' },
  [OID.ed25519]: { name: 'Ed25519', family: 'ed25519', hash: null, params: 'absent' },
};

const DIGESTS: Readonly<Record<string, Hash>> = {
  [OID.sha256]: 'sha256',
  [OID.sha384]: 'sha384',
  [OID.sha512]: 'sha512',
};

const FAMILY_OF: Readonly<Record<SubjectKeyType, KeyFamily>> = {
  'ec-p256': 'ec',
  'ec-p384': 'ec',
  rsa: 'rsa',
  ed25519: 'ed25519',
};

interface VerifyPlan {
  scheme: SignatureScheme;
  hash: Hash | null;
  saltLength?: number;
}

function invalid(message: string, cause?: unknown): CsrError {
  return new CsrError('ERR_CSR_INVALID', message, cause === undefined ? undefined : { cause });
}

function unsupported(message: string): CsrError {
  return new CsrError('ERR_CSR_UNSUPPORTED_ALGORITHM', message);
}

/**
 * Parses a PEM CSR, checks its key against the policy and verifies its self-signature with native crypto
 * over the exact CertificationRequestInfo bytes it carries. The subject and attributes are not read: the
 * broker decides what the certificate says. Throws CsrError; a non-string is a TypeError.
 */
export function parseCsr(pem: string): ParsedCsr {
  return parseCsrDer(csrDerOf(pem));
}

/**
 * As parseCsr, with the signature verified on libuv's threadpool rather than the event loop (the issuance hot
 * path); the same checks in the same order, the same errors.
 */
export async function parseCsrAsync(pem: string): Promise<ParsedCsr> {
  const read = readCsrDer(csrDerOf(pem));
  const { plan, signed, signature, parsed } = read;
  if (!(await verifySignatureAsync(plan, signed, parsed.publicKey, signature))) {
    throw new CsrError('ERR_CSR_SIGNATURE', 'the csr signature does not verify');
  }
  checkNotFactorable(read.subject);
  return parsed;
}

function csrDerOf(pem: string): Buffer {
  if (typeof pem !== 'string') throw new TypeError('csr must be a string');
  if (pem.length > CSR_MAX_PEM_CHARS) throw invalid(`csr exceeds ${CSR_MAX_PEM_CHARS} characters`);
  let blocks: ReturnType<typeof pemBlocks>;
  try {
    blocks = pemBlocks(pem, { allowText: false });
  } catch (e) {
    throw invalid('csr is not a single pem block', e);
  }
  if (blocks.length !== 1) throw invalid('csr must be exactly one pem block');
  const block = blocks[0]!;
  if (!CSR_LABELS.has(block.label)) throw invalid('pem block is not a certificate request');
  return block.der;
}

/** As parseCsr, from DER. */
export function parseCsrDer(der: Buffer): ParsedCsr {
  const { plan, signed, signature, parsed, subject } = readCsrDer(der);
  if (!verifySignature(plan, signed, parsed.publicKey, signature)) {
    throw new CsrError('ERR_CSR_SIGNATURE', 'the csr signature does not verify');
  }
  checkNotFactorable(subject);
  return parsed;
}

/** Everything parseCsrDer checks but the signature, and what the signature check needs. */
function readCsrDer(der: Buffer): {
  plan: VerifyPlan;
  signed: Buffer;
  signature: Buffer;
  parsed: ParsedCsr;
  subject: SubjectPublicKey;
} {
  if (!Buffer.isBuffer(der)) throw new TypeError('csr der must be a Buffer');
  let root: Tlv;
  try {
    // The whole request, attributes included, must be canonical DER before any of it is read.
    root = walkDer(der, { maxBytes: CSR_MAX_DER_BYTES, maxDepth: CSR_MAX_DEPTH });
  } catch (e) {
    throw invalid(e instanceof DerError ? `csr ${e.message}` : 'csr is not valid der', e);
  }

  let algorithm: Tlv;
  let spkiNode: Tlv;
  let signature: Buffer;
  let signed: Buffer;
  try {
    const parts = childrenOf(der, root, 'certification request');
    if (parts.length !== 3) throw new DerError('certification request must have three fields');
    const [info, algorithmNode, signatureBits] = parts as [Tlv, Tlv, Tlv];
    algorithm = algorithmNode;
    const fields = childrenOf(der, info, 'certification request info');
    if (fields.length !== 4) throw new DerError('certification request info must have four fields');
    if (readSmallUintAt(der, fields[0], 'csr version') !== 0) throw new DerError('csr version must be v1');
    expect(fields[1], TAG.SEQUENCE, 'csr subject'); // read only for its shape: the broker never copies it
    spkiNode = fields[2]!;
    expect(fields[3], contextTag(0), 'csr attributes');
    signature = readOctetAlignedBitsAt(der, signatureBits, 'csr signature');
    // The signed bytes are the CertificationRequestInfo element exactly as it sits in the input.
    signed = der.subarray(info.start, info.end);
  } catch (e) {
    if (e instanceof DerError) throw invalid(`csr ${e.message}`, e);
    throw e;
  }

  // The key first: a DSA or Ed448 request is refused for its key, whatever it was signed with.
  const subject = inspectSpkiAt(der, spkiNode);
  let plan: VerifyPlan;
  try {
    plan = signaturePlan(der, algorithm);
  } catch (e) {
    if (e instanceof DerError) throw invalid(`csr ${e.message}`, e);
    throw e;
  }
  if (FAMILY_OF[subject.keyType] !== plan.scheme.family) {
    throw unsupported('the csr signature algorithm does not fit its key');
  }
  const publicKey = loadSubjectKey(subject);
  // A key that does not load (an EC point off its curve) cannot have made the signature: the same answer as
  // for any other tampered key, which also keeps the error from describing what is wrong with the point.
  if (!publicKey) throw new CsrError('ERR_CSR_SIGNATURE', 'the csr signature does not verify');
  checkSubjectKey(publicKey, subject);
  return {
    plan,
    signed,
    signature,
    parsed: { spki: subject.spki, publicKey, keyType: subject.keyType, signatureAlgorithm: plan.scheme.name },
    subject,
  };
}

/** verify()'s algorithm and key arguments for a plan. */
function verifyArgs(
  plan: VerifyPlan,
  key: KeyObject,
): [string | null, KeyObject | { key: KeyObject; padding: number; saltLength?: number }] {
  switch (plan.scheme.family) {
    case 'ed25519':
      return [null, key];
    case 'ec':
      // X.509 carries ECDSA signatures DER-encoded, which is Node's default dsaEncoding.
      return [plan.hash, key];
    case 'rsa':
      return plan.saltLength !== undefined
        ? [plan.hash, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: plan.saltLength }]
        : [plan.hash, { key, padding: constants.RSA_PKCS1_PADDING }];
  }
}

function verifySignatureAsync(
  plan: VerifyPlan,
  data: Buffer,
  key: KeyObject,
  signature: Buffer,
): Promise<boolean> {
  return new Promise((resolve) => {
    try {
      const [algorithm, keyArg] = verifyArgs(plan, key);
      verify(algorithm, data, keyArg, signature, (error, valid) => resolve(!error && valid));
    } catch {
      resolve(false);
    }
  });
}

function verifySignature(plan: VerifyPlan, data: Buffer, key: KeyObject, signature: Buffer): boolean {
  try {
    const [algorithm, keyArg] = verifyArgs(plan, key);
    return verify(algorithm, data, keyArg, signature);
  } catch {
    return false;
  }
}

function signaturePlan(der: Buffer, algorithm: Tlv): VerifyPlan {
  const alg = childrenOf(der, algorithm, 'csr signature algorithm');
  const scheme = SCHEMES[readOidAt(der, alg[0], 'csr signature algorithm')];
  if (!scheme) throw unsupported('the csr signature algorithm is not accepted');
  const params = alg[1];
  if (alg.length > 2) throw new DerError('csr signature algorithm has extra fields');
  switch (scheme.params) {
    case 'absent':
      if (params !== undefined) throw new DerError('csr signature algorithm parameters must be absent');
      return { scheme, hash: scheme.hash };
    case 'null-or-absent':
      if (params !== undefined) readNullAt(der, params, 'csr signature algorithm parameters');
      return { scheme, hash: scheme.hash };
    case 'pss':
      return { scheme, ...pssParams(der, params) };
  }
}

function digestOf(der: Buffer, node: Tlv | undefined, what: string): Hash {
  const alg = childrenOf(der, node, what);
  const hash = DIGESTS[readOidAt(der, alg[0], what)];
  if (!hash) throw unsupported('the csr rsassa-pss digest is not accepted');
  if (alg.length > 2) throw new DerError(`${what} has extra fields`);
  if (alg[1] !== undefined) readNullAt(der, alg[1], `${what} parameters`);
  return hash;
}

/**
 * RFC 4055 RSASSA-PSS-params. The defaults (SHA-1, MGF1-SHA-1) are refused, so the digest must be given;
 * MGF1 must use the same digest, which is the only combination Node's verify expresses.
 */
function pssParams(der: Buffer, params: Tlv | undefined): { hash: Hash; saltLength: number } {
  const fields = childrenOf(der, params, 'csr rsassa-pss parameters');
  let hash: Hash | undefined;
  let mgfHash: Hash | undefined;
  let saltLength = 20;
  let last = -1;
  for (const field of fields) {
    const type = field.tag & 0x1f;
    if (field.tag !== contextTag(type) || type <= last || type > 3) {
      throw new DerError('csr rsassa-pss parameters are malformed');
    }
    last = type;
    const inner = childrenOf(der, field, 'csr rsassa-pss parameter', field.tag);
    if (inner.length !== 1) throw new DerError('csr rsassa-pss parameters are malformed');
    const value = inner[0]!;
    if (type === 0) hash = digestOf(der, value, 'csr rsassa-pss digest');
    if (type === 1) {
      const mgf = childrenOf(der, value, 'csr rsassa-pss mask generation');
      if (readOidAt(der, mgf[0], 'csr rsassa-pss mask generation') !== OID.mgf1 || mgf.length !== 2) {
        throw unsupported('the csr rsassa-pss mask generation function is not accepted');
      }
      mgfHash = digestOf(der, mgf[1], 'csr rsassa-pss mask digest');
    }
    if (type === 2) saltLength = readSmallUintAt(der, value, 'csr rsassa-pss salt length');
    if (type === 3 && readSmallUintAt(der, value, 'csr rsassa-pss trailer') !== 1) {
      throw new DerError('csr rsassa-pss trailer field must be 1');
    }
  }
  if (hash === undefined || mgfHash !== hash) {
    throw unsupported('csr rsassa-pss must name sha-256, sha-384 or sha-512 for both digest and mgf1');
  }
  if (saltLength > MAX_PSS_SALT) throw new DerError('csr rsassa-pss salt length is out of range');
  return { hash, saltLength };
}
