// The X.509 CA: a generated root or a loaded CA with its chain; mints X509-SVIDs, server certificates and CRLs.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  sign,
  verify,
  X509Certificate,
} from 'node:crypto';
import type { JWK } from 'jose';
import { isMemberOf, isTrustDomainId, validateSpiffeId } from '../../spiffe/spiffe-id.ts';
import { type Clock, seconds, systemClock } from '../../store/types.ts';
import { type CertificateFields, readCertificate } from './certificate.ts';
import { bitString, decode, elements, encode, readOctetAlignedBits, seq } from './der.ts';
import { childrenOf, contentBytes, contextTag, readOidAt, readTlv, TAG } from './der-reader.ts';
import { CaError, CsrError } from './errors.ts';
import { checkCrlUrl, checkDnsName, checkTrustDomain, ipBytes, serialBytes } from './inputs.ts';
import { type MintCheckFailure, readBack } from './mint-check.mjs';
import { MintChecker } from './mint-checker.ts';
import { OID } from './oids.ts';
import { pemBlocks, toPem } from './pem.ts';
import {
  acceptSpki,
  checkNotFactorable,
  checkSubjectKey,
  inspectSpki,
  type SubjectPublicKey,
} from './public-key.ts';
import {
  type CaKeyType,
  type CaSignatureAlgorithm,
  CertificateTemplate,
  type CrlEntryParts,
  distinguishedName,
  type GeneralName,
  keyIdentifier,
  newSerial,
  selfSignedCaTbs,
  signatureSuite,
} from './template.ts';

export interface IssuedCertificate {
  readonly der: Buffer;
  readonly pem: string;
  /** Lowercase hex, 32 digits: the credential id. */
  readonly serialHex: string;
  /** Epoch seconds. */
  readonly notBefore: number;
  readonly notAfter: number;
}

export interface X509SvidRequest {
  spiffeId: string;
  /** SubjectPublicKeyInfo DER, as `parseCsr` returned it (the key policy was applied there). */
  spki: Buffer;
  /**
   * The same key as `parseCsr` loaded it. Optional; when given, the minted certificate's key must equal it
   * (a cheap comparison; OpenSSL 3 makes loading or exporting a key cost more than the rest of an issuance).
   */
  publicKey?: KeyObject | undefined;
  /** Requested end, epoch seconds; capped at the CA's own end. */
  notAfter: number;
  /** Epoch seconds. */
  now: number;
  /** Seconds notBefore is set back for clock skew (default 0). */
  backdate?: number | undefined;
}

export interface ServerCertificateRequest {
  dnsNames: readonly string[];
  ipAddresses: readonly string[];
  /** Adds the broker's own SPIFFE ID as a URI SAN. */
  spiffeId?: string | undefined;
  /** The server's key; when absent an EC P-256 key pair is generated and returned. */
  spki?: Buffer | undefined;
  notAfter: number;
  now: number;
  backdate?: number | undefined;
}

export interface IssuedServerCertificate extends IssuedCertificate {
  /** Only when the key pair was generated. */
  readonly privateKey?: KeyObject;
  /** PKCS#8 PEM of `privateKey`. */
  readonly privateKeyPem?: string;
}

/** RFC 5280 §5.3.1 CRLReason (removeFromCRL is for delta CRLs, which Writ does not make). */
export type CrlReason =
  | 'unspecified'
  | 'keyCompromise'
  | 'cACompromise'
  | 'affiliationChanged'
  | 'superseded'
  | 'cessationOfOperation'
  | 'certificateHold'
  | 'privilegeWithdrawn'
  | 'aACompromise';

const REASON_CODES: Readonly<Record<CrlReason, number>> = {
  unspecified: 0,
  keyCompromise: 1,
  cACompromise: 2,
  affiliationChanged: 3,
  superseded: 4,
  cessationOfOperation: 5,
  certificateHold: 6,
  privilegeWithdrawn: 9,
  aACompromise: 10,
};

export interface CrlEntry {
  serialHex: string;
  /** Epoch seconds. */
  revokedAt: number;
  reason?: CrlReason | undefined;
}

export interface CrlRequest {
  revoked: readonly CrlEntry[];
  /** Monotonic (RFC 5280 §5.2.3), at most 20 octets. */
  crlNumber: bigint | number;
  thisUpdate: number;
  nextUpdate: number;
}

export interface GenerateRootCaOptions {
  trustDomain: string;
  curve?: 'P-256' | 'P-384' | undefined;
  /** Lifetime of the root, seconds. */
  ttlSeconds: number;
  clock: Clock;
  /** Seconds the root's notBefore is set back for relying parties with slow clocks (default 300). */
  backdate?: number | undefined;
  /** Written as the CRL distribution point of every certificate this CA issues. */
  crlUrl?: string | undefined;
}

export interface LoadCaOptions {
  /** The CA certificate; further CERTIFICATE blocks, if any, are taken as its chain. */
  certPem: string;
  /** Unencrypted PKCS#8, SEC1 or PKCS#1 PEM. */
  keyPem: string;
  /** The certificates above the CA, issuer first, ending with the self-signed root. */
  chainPem?: string | undefined;
  crlUrl?: string | undefined;
  /** When given, the CA's SPIFFE URI SAN (if any) must be of this trust domain, and SVIDs are limited to it. */
  trustDomain?: string | undefined;
  /** Judges the CA's validity at load (default: the system clock). */
  clock?: Clock | undefined;
}

export type CaBundleOptions = Omit<LoadCaOptions, 'certPem' | 'keyPem' | 'chainPem'>;

const MAX_BACKDATE = 86_400;
const ROOT_BACKDATE = 300;
const MAX_CRL_NUMBER = (1n << 159n) - 1n;
const EKU_SERVER_CLIENT: readonly string[] = [OID.serverAuth, OID.clientAuth];
const EKU_SERVER: readonly string[] = [OID.serverAuth];

interface ParsedCert {
  der: Buffer;
  x509: X509Certificate;
  fields: CertificateFields;
}

interface CaParts {
  privateKey: KeyObject;
  keyType: CaKeyType;
  ca: ParsedCert;
  /** The certificates above the CA: intermediates, then the root; empty when the CA is itself the root. */
  above: ParsedCert[];
  trustDomain: string | undefined;
  crlUrl: string | undefined;
}

function invalid(message: string, cause?: unknown): CaError {
  return new CaError('ERR_CA_INVALID', message, cause === undefined ? undefined : { cause });
}

function mintCheck(what: string, cause?: unknown): CaError {
  return new CaError('ERR_CA_MINT_CHECK', `the minted ${what}`, cause === undefined ? undefined : { cause });
}

/** The error of a check readBack failed. */
function readBackError(failed: MintCheckFailure, cause?: unknown): CaError {
  return failed === 'parse'
    ? mintCheck('certificate does not parse', cause)
    : mintCheck(`certificate failed its check: ${failed}`);
}

function certificatePem(der: Buffer): string {
  return toPem('CERTIFICATE', der);
}

export class CertificateAuthority {
  readonly #privateKey: KeyObject;
  readonly #publicKey: KeyObject;
  readonly #keyType: CaKeyType;
  readonly #ca: ParsedCert;
  readonly #above: ParsedCert[];
  readonly #template: CertificateTemplate;
  readonly #notAfter: number;
  readonly #trustDomain: string | undefined;
  readonly #crlUrl: string | undefined;
  readonly #certificatePem: string;
  readonly #chainPem: readonly string[];
  readonly #rootsPem: readonly string[];
  readonly #checker: MintChecker;

  private constructor(parts: CaParts) {
    this.#privateKey = parts.privateKey;
    this.#publicKey = createPublicKey(parts.privateKey);
    this.#keyType = parts.keyType;
    this.#ca = parts.ca;
    this.#above = parts.above;
    this.#trustDomain = parts.trustDomain;
    this.#crlUrl = parts.crlUrl;
    const keyId = parts.ca.fields.subjectKeyId;
    if (!keyId) throw invalid('the ca certificate has no subject key identifier');
    this.#template = new CertificateTemplate(
      { subjectDer: parts.ca.fields.subjectDer, keyId, crlUrl: parts.crlUrl },
      signatureSuite(parts.keyType),
    );
    // Nothing this CA signs may outlive any certificate on its path to the root.
    this.#notAfter = Math.min(parts.ca.fields.notAfter, ...parts.above.map((c) => c.fields.notAfter));
    this.#certificatePem = certificatePem(parts.ca.der);
    const root = parts.above.at(-1) ?? parts.ca;
    this.#chainPem = Object.freeze(
      [parts.ca, ...parts.above].filter((c) => c !== root).map((c) => certificatePem(c.der)),
    );
    this.#rootsPem = Object.freeze([certificatePem(root.der)]);
    // Its thread starts at the first issueX509SvidAsync, and ends when idle: a CA rotated out keeps none.
    this.#checker = new MintChecker({
      issuerDer: parts.ca.der,
      issuerKey: this.#publicKey,
      privateKey: parts.privateKey,
      hash: this.#template.suite.hash,
      algorithm: encode(this.#template.suite.algorithm),
      assemble: (tbs, signature) => this.#template.signedDer(tbs, signature),
      caNotAfter: this.#notAfter,
      eku: EKU_SERVER_CLIENT,
    });
  }

  /** A self-signed root for a trust domain (dev mode, or generated once and shared through the store). */
  static generateRoot(opts: GenerateRootCaOptions): CertificateAuthority {
    const { der, privateKey, trustDomain, crlUrl } = mintRoot(opts);
    return CertificateAuthority.#assemble([der], privateKey, { trustDomain, crlUrl, clock: opts.clock });
  }

  /** Loads a CA (typically an intermediate under the user's root) from PEM, checking key, usage and chain. */
  static load(opts: LoadCaOptions): CertificateAuthority {
    const { certPem, keyPem, chainPem, ...rest } = opts;
    const certs = [...certificatesOf(certPem, 'certPem'), ...certificatesOf(chainPem ?? '', 'chainPem')];
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey(keyPem);
    } catch (e) {
      throw invalid('the ca key is not an unencrypted pem private key', e);
    }
    return CertificateAuthority.#assemble(certs, privateKey, rest);
  }

  /** Restores a CA from `toPem()` output (the form stored once in the shared store). */
  static fromPem(bundle: string, opts: CaBundleOptions = {}): CertificateAuthority {
    let blocks: ReturnType<typeof pemBlocks>;
    try {
      blocks = pemBlocks(bundle, { allowText: false });
    } catch (e) {
      throw invalid('the ca bundle is not pem', e);
    }
    const [key, ...certs] = blocks;
    if (key?.label !== 'PRIVATE KEY' || certs.length === 0 || certs.some((c) => c.label !== 'CERTIFICATE')) {
      throw invalid('the ca bundle must be a private key followed by certificates');
    }
    let privateKey: KeyObject;
    try {
      privateKey = createPrivateKey({ key: key.der, format: 'der', type: 'pkcs8' });
    } catch (e) {
      throw invalid('the ca bundle key is not a pkcs#8 private key', e);
    }
    return CertificateAuthority.#assemble(
      certs.map((c) => c.der),
      privateKey,
      opts,
    );
  }

  static #assemble(
    certDers: readonly Buffer[],
    privateKey: KeyObject,
    opts: CaBundleOptions,
  ): CertificateAuthority {
    const now = seconds(opts.clock ?? systemClock);
    const crlUrl = checkCrlUrl(opts.crlUrl);
    const wanted = opts.trustDomain === undefined ? undefined : checkTrustDomain(opts.trustDomain);
    if (privateKey.type !== 'private') throw invalid('the ca key is not a private key');
    const keyType = caKeyType(privateKey);
    const [first, ...rest] = certDers;
    if (!first) throw invalid('no ca certificate was given');
    const ca = parseCert(first, 'the ca certificate');
    const above = rest.map((der, i) => parseCert(der, `chain certificate ${i + 1}`));
    if (!ca.x509.checkPrivateKey(privateKey)) throw invalid('the ca key does not match the ca certificate');
    checkUsableCa(ca, 'the ca certificate', now, true);

    let child = ca;
    for (const [i, parent] of above.entries()) {
      const what = `chain certificate ${i + 1}`;
      checkUsableCa(parent, what, now, false);
      if (!issued(child, parent)) throw invalid(`${what} did not issue the certificate before it`);
      child = parent;
    }
    if (!issued(child, child)) {
      throw invalid(
        above.length === 0
          ? 'the ca certificate is not self-signed: give its chain up to the root'
          : 'the chain must end with the self-signed root',
      );
    }

    const own = trustDomainOf(ca);
    if (wanted !== undefined && own !== undefined && own !== wanted) {
      throw invalid('the ca certificate names another trust domain');
    }
    return new CertificateAuthority({ privateKey, keyType, ca, above, trustDomain: wanted ?? own, crlUrl });
  }

  /** The private key, the CA certificate and the certificates above it, as PEM. Secret: store it as such. */
  toPem(): string {
    const key = this.#privateKey.export({ type: 'pkcs8', format: 'der' });
    return [
      toPem('PRIVATE KEY', key),
      this.#certificatePem,
      ...this.#above.map((c) => certificatePem(c.der)),
    ].join('');
  }

  /** The CA's own certificate. */
  get certificatePem(): string {
    return this.#certificatePem;
  }

  /** What a leaf is served with: the CA's certificate and further intermediates, without the root (empty for a root CA). */
  get chainPem(): readonly string[] {
    return this.#chainPem;
  }

  /** The trust anchors relying parties need: the root. */
  get rootsPem(): readonly string[] {
    return this.#rootsPem;
  }

  /** Epoch seconds after which this CA can certify nothing: the earliest end on its path to the root. */
  get notAfter(): number {
    return this.#notAfter;
  }

  get notBefore(): number {
    return this.#ca.fields.notBefore;
  }

  get trustDomain(): string | undefined {
    return this.#trustDomain;
  }

  get crlUrl(): string | undefined {
    return this.#crlUrl;
  }

  get publicKey(): KeyObject {
    return this.#publicKey;
  }

  get keyType(): CaKeyType {
    return this.#keyType;
  }

  get signatureAlgorithm(): CaSignatureAlgorithm {
    return this.#template.suite.name;
  }

  /** The CA certificate's subject key identifier, lowercase hex. */
  get keyId(): string {
    return this.#ca.fields.subjectKeyId!.toString('hex');
  }

  get serialHex(): string {
    return this.#ca.x509.serialNumber.toLowerCase();
  }

  get certificate(): X509Certificate {
    return this.#ca.x509;
  }

  /** SPIFFE bundle entries for the X.509 authorities (the roots): `use: x509-svid`, one certificate in `x5c`. */
  bundleKeys(): JWK[] {
    const root = this.#above.at(-1) ?? this.#ca;
    const jwk = root.x509.publicKey.export({ format: 'jwk' });
    const out: JWK = { kty: jwk.kty ?? '', use: 'x509-svid', x5c: [root.der.toString('base64')] };
    for (const field of ['crv', 'x', 'y', 'n', 'e'] as const) {
      const value = jwk[field];
      if (typeof value === 'string') out[field] = value;
    }
    return [out];
  }

  /**
   * Mints an X509-SVID for `spki` (from a verified CSR) naming `spiffeId`, then re-parses it with node:crypto
   * and checks it before returning it.
   */
  issueX509Svid(req: X509SvidRequest): IssuedCertificate {
    const { spiffeId, subject, serial, notBefore, notAfter, tbs } = this.#svidTbs(req);
    const signature = sign(this.#template.suite.hash, tbs, this.#privateKey);
    const issued = this.#finish(this.#template.signedDer(tbs, signature), serial, notBefore, notAfter);
    this.#checkLeaf(
      issued,
      subject.key,
      req.publicKey,
      EKU_SERVER_CLIENT,
      (cert) => cert.subjectAltName === `URI:${spiffeId}`,
    );
    return issued;
  }

  /**
   * As issueX509Svid, off the event loop: the signature, and the whole mint check but for the reading of the
   * certificate's own bytes and the key policy (OpenSSL's re-parse, the signature's verification and every
   * field), on the CA's thread. The same certificate, the same checks; nothing is returned unless the thread
   * said the certificate passed, and only for the bytes this CA's template assembles.
   */
  async issueX509SvidAsync(req: X509SvidRequest): Promise<IssuedCertificate> {
    const { spiffeId, subject, serial, notBefore, notAfter, tbs } = this.#svidTbs(req);
    const key = req.publicKey ?? loadSpki(subject.key.spki);
    const serialHex = serial.toString('hex');
    const read = await this.#checker.check({
      tbs,
      serialHex,
      notBefore,
      notAfter,
      key,
      san: `URI:${spiffeId}`,
    });
    if (read.failed !== null) throw readBackError(read.failed);
    // The thread's certificate is the template's assembly of this TBS and its signature (MintChecker compared).
    const issued = this.#finish(read.der, serial, notBefore, notAfter);
    checkOwnBytes(issued, subject.key, key);
    return issued;
  }

  /** Ends the signing and mint-check thread (pending asynchronous issuances fail); asynchronous issuance is refused after. */
  close(): Promise<void> {
    return this.#checker.close();
  }

  #svidTbs(req: X509SvidRequest) {
    const spiffeId = this.#workloadId(req.spiffeId, 'spiffeId');
    const { notBefore, notAfter } = this.#validity(req.now, req.notAfter, req.backdate);
    const subject = subjectKeyOf(req.spki);
    const serial = newSerial();
    // The certificate's key is the request's SPKI, verbatim (inspectSpki checked it is canonical DER).
    const tbs = this.#template.svidDer({
      serial,
      notBefore,
      notAfter,
      spki: subject.key.spki,
      keyId: keyIdentifier(subject.key.subjectPublicKey),
      spiffeId,
    });
    return { spiffeId, subject, serial, notBefore, notAfter, tbs };
  }

  /** A TLS server certificate (serverAuth) for the broker itself: DNS and IP SANs, and its SPIFFE ID if given. */
  issueServerCertificate(req: ServerCertificateRequest): IssuedServerCertificate {
    const dnsNames = req.dnsNames.map(checkDnsName);
    const ips = req.ipAddresses.map((ip) => ({ text: ip, bytes: ipBytes(ip) }));
    const spiffeId = req.spiffeId === undefined ? undefined : this.#spiffeId(req.spiffeId, 'spiffeId');
    if (dnsNames.length + ips.length === 0)
      throw new TypeError('a server certificate needs a dns name or an ip');
    const { notBefore, notAfter } = this.#validity(req.now, req.notAfter, req.backdate);

    let spki: Buffer;
    let publicKey: KeyObject;
    let generated: KeyObject | undefined;
    if (req.spki === undefined) {
      const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
      generated = pair.privateKey;
      publicKey = pair.publicKey;
      spki = pair.publicKey.export({ type: 'spki', format: 'der' });
    } else {
      try {
        const accepted = acceptSpki(req.spki);
        spki = accepted.subject.spki;
        publicKey = accepted.key;
      } catch (e) {
        if (e instanceof CsrError) throw new TypeError(`spki: ${e.message}`, { cause: e });
        throw e;
      }
    }
    const subject = subjectKeyOf(spki);
    const spkiNode = decode(subject.key.spki, { maxBytes: 4096, maxDepth: 4 });
    const names: GeneralName[] = [
      ...dnsNames.map((dns) => ({ dns })),
      ...ips.map((ip) => ({ ip: ip.bytes })),
      ...(spiffeId === undefined ? [] : [{ uri: spiffeId }]),
    ];
    const cn = dnsNames[0] ?? ips[0]?.text ?? '';
    const serial = newSerial();
    const tbs = this.#template.server({
      serial,
      notBefore,
      notAfter,
      spki: spkiNode,
      keyId: keyIdentifier(subject.key.subjectPublicKey),
      subject: distinguishedName([
        { type: 'O', value: 'Writ' },
        ...(cn.length <= 64 ? [{ type: 'CN' as const, value: cn }] : []),
      ]),
      names,
    });
    const tbsDer = encode(tbs);
    const signature = sign(this.#template.suite.hash, tbsDer, this.#privateKey);
    const issued = this.#finish(this.#template.signedDer(tbsDer, signature), serial, notBefore, notAfter);
    this.#checkLeaf(issued, subject.key, publicKey, EKU_SERVER, (cert) => {
      const entries = (cert.subjectAltName ?? '').split(', ');
      return (
        entries.length === names.length &&
        dnsNames.every((d) => entries.includes(`DNS:${d}`)) &&
        ips.every((ip) => cert.checkIP(ip.text) !== undefined) &&
        (spiffeId === undefined || entries.includes(`URI:${spiffeId}`))
      );
    });
    if (!generated) return issued;
    return {
      ...issued,
      privateKey: generated,
      privateKeyPem: generated.export({ type: 'pkcs8', format: 'pem' }).toString(),
    };
  }

  /** A v2 CRL of `revoked` (each serial listed once, at its earliest revocation), signed natively. */
  signCrl(req: CrlRequest): Buffer {
    for (const [name, v] of [
      ['thisUpdate', req.thisUpdate],
      ['nextUpdate', req.nextUpdate],
    ] as const) {
      if (!Number.isSafeInteger(v) || v < 0) throw new TypeError(`${name} must be whole epoch seconds`);
    }
    if (req.nextUpdate <= req.thisUpdate) throw new TypeError('nextUpdate must be after thisUpdate');
    let crlNumber: bigint;
    try {
      crlNumber = BigInt(req.crlNumber);
    } catch {
      throw new TypeError('crlNumber must be an integer');
    }
    if (crlNumber < 0n || crlNumber > MAX_CRL_NUMBER) throw new TypeError('crlNumber is out of range');

    const bySerial = new Map<string, CrlEntryParts>();
    for (const entry of req.revoked) {
      const serial = serialBytes(entry.serialHex);
      if (!Number.isSafeInteger(entry.revokedAt) || entry.revokedAt < 0) {
        throw new TypeError('revokedAt must be whole epoch seconds');
      }
      const reason = entry.reason ?? 'unspecified';
      const code = REASON_CODES[reason];
      if (code === undefined) throw new TypeError('unknown crl reason');
      const key = serial.toString('hex');
      const prior = bySerial.get(key);
      if (prior && prior.revokedAt <= entry.revokedAt) continue;
      // §5.3.1: the reason code extension SHOULD be absent rather than say unspecified.
      bySerial.set(key, { serial, revokedAt: entry.revokedAt, reasonCode: code === 0 ? undefined : code });
    }

    const tbs = this.#template.crl({
      thisUpdate: req.thisUpdate,
      nextUpdate: req.nextUpdate,
      crlNumber,
      entries: [...bySerial.values()],
    });
    const tbsDer = encode(tbs);
    const signature = sign(this.#template.suite.hash, tbsDer, this.#privateKey);
    const signedNode = this.#template.signed(tbs, signature);
    const der = encode(signedNode);
    // Check what was minted: the signature over the TBS bytes as they sit in the CRL, with the CA's public key.
    const tail = encode(this.#template.suite.algorithm).length + encode(bitString(signature)).length;
    const embedded = der.subarray(der.length - tail - tbsDer.length, der.length - tail);
    if (!verify(this.#template.suite.hash, embedded, this.#publicKey, signature))
      throw mintCheck('crl failed its check');
    return der;
  }

  #spiffeId(value: string, what: string): string {
    const reason = validateSpiffeId(value);
    if (reason !== null) throw new TypeError(`${what}: ${reason}`);
    if (this.#trustDomain !== undefined && !isMemberOf(value, this.#trustDomain)) {
      throw new TypeError(`${what} is outside the ca's trust domain`);
    }
    return value;
  }

  #workloadId(value: string, what: string): string {
    const id = this.#spiffeId(value, what);
    if (isTrustDomainId(id)) throw new TypeError(`${what} must name a workload, not the trust domain`);
    return id;
  }

  #validity(now: number, requested: number, backdate = 0): { notBefore: number; notAfter: number } {
    if (!Number.isSafeInteger(now) || now < 0) throw new TypeError('now must be whole epoch seconds');
    if (!Number.isSafeInteger(requested)) throw new TypeError('notAfter must be whole epoch seconds');
    if (!Number.isSafeInteger(backdate) || backdate < 0 || backdate > MAX_BACKDATE) {
      throw new TypeError(`backdate must be 0..${MAX_BACKDATE} seconds`);
    }
    if (requested <= now) throw new TypeError('notAfter must be after now');
    const notAfter = Math.min(requested, this.#notAfter);
    if (notAfter <= now) throw new CaError('ERR_CA_EXPIRED', 'the ca has expired');
    return { notBefore: now - backdate, notAfter };
  }

  #finish(der: Buffer, serial: Buffer, notBefore: number, notAfter: number): IssuedCertificate {
    return { der, pem: certificatePem(der), serialHex: serial.toString('hex'), notBefore, notAfter };
  }

  /** Mint, then check: an independent parser (OpenSSL through node:crypto) must read back what was meant. */
  #checkLeaf(
    issued: IssuedCertificate,
    subject: SubjectPublicKey,
    expectedKey: KeyObject | undefined,
    eku: readonly string[],
    sanOk: (cert: X509Certificate) => boolean,
  ): void {
    const read = readBack(issued.der, {
      issuer: this.#ca.x509,
      issuerKey: this.#publicKey,
      serialHex: issued.serialHex,
      notBefore: issued.notBefore,
      notAfter: issued.notAfter,
      caNotAfter: this.#notAfter,
      key: expectedKey,
      eku,
      sanOk,
    });
    if (read.failed !== null) throw readBackError(read.failed, read.cause);
    checkOwnBytes(issued, subject, expectedKey ?? read.cert.publicKey);
  }
}

/**
 * The mint check's part that OpenSSL's reading does not answer: the leaf's constraints and key as its own bytes
 * say, and the key policy on `key`, which is the certificate's key (readBack compared them).
 */
function checkOwnBytes(issued: IssuedCertificate, subject: SubjectPublicKey, key: KeyObject): void {
  // cert.ca (readBack) is X509_check_ca, which reads CA:TRUE without keyCertSign as no CA; Go's verifier
  // ignores key usage.
  if (!leafConstraintsOk(issued.der)) throw mintCheck('certificate failed its check: ca flag');
  // The request's key bytes, verbatim.
  if (!issued.der.includes(subject.spki)) throw mintCheck('certificate failed its check: public key');
  try {
    checkSubjectKey(key, subject);
    checkNotFactorable(subject);
  } catch (e) {
    // The caller passed a key that parseCsr would have refused: a programming error, not a minting one.
    throw new TypeError('spki is not an accepted key', { cause: e });
  }
}

/** A SubjectPublicKeyInfo as OpenSSL reads it from its bytes; for a caller that did not give the CSR's key. */
function loadSpki(spki: Buffer): KeyObject {
  try {
    return createPublicKey({ key: spki, format: 'der', type: 'spki' });
  } catch (e) {
    throw new TypeError('spki is not an accepted key', { cause: e });
  }
}

const EMPTY_SEQUENCE = Buffer.from([0x30, 0x00]);
// KeyUsage bits keyCertSign (5) and cRLSign (6), in the first octet after the unused-bits octet.
const CA_KEY_USAGES = 0x04 | 0x02;

/**
 * A minted leaf's basic constraints and key usage as its own bytes say: basic constraints present once,
 * critical and empty (CA false, no path length); no keyCertSign or cRLSign. False when it does not read so.
 */
export function leafConstraintsOk(der: Buffer): boolean {
  try {
    const [tbs] = childrenOf(der, readTlv(der, 0, der.length), 'certificate');
    const extensions = childrenOf(der, tbs, 'tbs certificate').at(-1);
    const [list] = childrenOf(der, extensions, 'extensions', contextTag(3));
    let basicConstraints = 0;
    for (const extension of childrenOf(der, list, 'extensions')) {
      const parts = childrenOf(der, extension, 'extension');
      const id = readOidAt(der, parts[0], 'extension id');
      const value = contentBytes(der, parts.at(-1), TAG.OCTET_STRING, 'extension value');
      if (id === OID.basicConstraints) {
        basicConstraints++;
        if (parts.length !== 3 || !value.equals(EMPTY_SEQUENCE)) return false;
      } else if (id === OID.keyUsage) {
        if (value.length < 4 || value[0] !== TAG.BIT_STRING || (value[3]! & CA_KEY_USAGES) !== 0)
          return false;
      }
    }
    return basicConstraints === 1;
  } catch {
    return false;
  }
}

function subjectKeyOf(spki: Buffer): { key: SubjectPublicKey } {
  if (!Buffer.isBuffer(spki)) throw new TypeError('spki must be a Buffer');
  try {
    return { key: inspectSpki(spki) };
  } catch (e) {
    if (e instanceof CsrError)
      throw new TypeError('spki is not an accepted SubjectPublicKeyInfo', { cause: e });
    throw e;
  }
}

function parseCert(der: Buffer, what: string): ParsedCert {
  let x509: X509Certificate;
  let fields: CertificateFields;
  try {
    x509 = new X509Certificate(der);
  } catch (e) {
    throw invalid(`${what} is not a certificate`, e);
  }
  try {
    fields = readCertificate(der);
  } catch (e) {
    throw invalid(`${what} is not canonical der`, e);
  }
  return { der, x509, fields };
}

function caKeyType(key: KeyObject): CaKeyType {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1') return 'ec-p256';
  if (key.asymmetricKeyType === 'ec' && details.namedCurve === 'secp384r1') return 'ec-p384';
  if (key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048) return 'rsa';
  throw invalid('the ca key must be ec p-256, ec p-384 or rsa of at least 2048 bits');
}

function checkUsableCa(cert: ParsedCert, what: string, now: number, issuing: boolean): void {
  const f = cert.fields;
  if (f.version !== 3) throw invalid(`${what} is not an x.509 v3 certificate`);
  if (!f.basicConstraints?.ca) throw invalid(`${what} is not a ca certificate`);
  if (issuing) {
    // RFC 5280 §4.2.1.9 and §4.2.1.3, and what `openssl verify -x509_strict` demands of an issuer.
    if (!f.basicConstraints.critical) throw invalid(`${what} must mark basic constraints critical`);
    if (!f.keyUsage?.keyCertSign || !f.keyUsage.cRLSign) {
      throw invalid(`${what} must allow keyCertSign and cRLSign in its key usage`);
    }
    if (!f.subjectKeyId || f.subjectKeyId.length === 0)
      throw invalid(`${what} has no subject key identifier`);
  }
  // OpenSSL's own judgement (X509_check_ca), which is what relying parties will apply.
  if (!cert.x509.ca) throw invalid(`${what} is not usable as a ca`);
  if (now < f.notBefore) throw invalid(`${what} is not valid yet`);
  if (now >= f.notAfter) throw invalid(`${what} has expired`);
  if (f.extKeyUsage && !f.extKeyUsage.includes(OID.anyExtendedKeyUsage)) {
    if (!EKU_SERVER_CLIENT.every((u) => f.extKeyUsage!.includes(u))) {
      throw invalid(`${what} restricts extended key usage and excludes tls server or client authentication`);
    }
  }
}

function issued(child: ParsedCert, parent: ParsedCert): boolean {
  return (
    child.fields.issuerDer.equals(parent.fields.subjectDer) &&
    child.x509.checkIssued(parent.x509) &&
    child.x509.verify(parent.x509.publicKey)
  );
}

function trustDomainOf(cert: ParsedCert): string | undefined {
  const ids = cert.fields.uris.filter((u) => u.startsWith('spiffe://'));
  for (const id of ids) {
    if (validateSpiffeId(id) === null) return id.slice('spiffe://'.length).split('/')[0];
  }
  return undefined;
}

function mintRoot(opts: GenerateRootCaOptions): {
  der: Buffer;
  privateKey: KeyObject;
  trustDomain: string;
  crlUrl: string | undefined;
} {
  const trustDomain = checkTrustDomain(opts.trustDomain);
  if (!Number.isSafeInteger(opts.ttlSeconds) || opts.ttlSeconds <= 0) {
    throw new TypeError('ttlSeconds must be a positive integer');
  }
  const backdate = opts.backdate ?? ROOT_BACKDATE;
  if (!Number.isSafeInteger(backdate) || backdate < 0 || backdate > MAX_BACKDATE) {
    throw new TypeError(`backdate must be 0..${MAX_BACKDATE} seconds`);
  }
  const crlUrl = checkCrlUrl(opts.crlUrl);
  const curve = opts.curve ?? 'P-256';
  if (curve !== 'P-256' && curve !== 'P-384') throw new TypeError('curve must be P-256 or P-384');
  const { privateKey, publicKey } = generateKeyPairSync('ec', {
    namedCurve: curve === 'P-256' ? 'prime256v1' : 'secp384r1',
  });
  const keyType: CaKeyType = curve === 'P-256' ? 'ec-p256' : 'ec-p384';
  const suite = signatureSuite(keyType);
  const spki = decode(publicKey.export({ type: 'spki', format: 'der' }), { maxBytes: 4096, maxDepth: 4 });
  const keyId = keyIdentifier(readOctetAlignedBits(elements(spki, 'spki')[1], 'subject public key'));
  const serial = newSerial();
  const now = seconds(opts.clock);
  // A serialNumber attribute makes every generated root's name unique, so that after a rotation a relying
  // party never matches a certificate or a CRL to the other root of the same trust domain by name.
  const subject = distinguishedName([
    { type: 'O', value: 'Writ' },
    { type: 'CN', value: trustDomain.slice(0, 64) },
    { type: 'serialNumber', value: serial.toString('hex') },
  ]);
  const tbs = selfSignedCaTbs({
    serial,
    notBefore: now - backdate,
    notAfter: now + opts.ttlSeconds,
    subject,
    spki,
    keyId,
    suite,
    spiffeId: `spiffe://${trustDomain}`,
  });
  const signature = sign(suite.hash, encode(tbs), privateKey);
  const der = encode(seq(tbs, suite.algorithm, bitString(signature)));
  return { der, privateKey, trustDomain, crlUrl };
}

function certificatesOf(text: string, what: string): Buffer[] {
  if (typeof text !== 'string') throw new TypeError(`${what} must be a string`);
  let blocks: ReturnType<typeof pemBlocks>;
  try {
    blocks = pemBlocks(text, { allowText: true });
  } catch (e) {
    throw invalid(`${what} is not pem`, e);
  }
  if (blocks.some((b) => b.label !== 'CERTIFICATE')) throw invalid(`${what} must hold only certificates`);
  return blocks.map((b) => b.der);
}

/** A self-signed root for a trust domain (dev mode, or generated once and shared through the store). */
export function generateRootCa(opts: GenerateRootCaOptions): CertificateAuthority {
  return CertificateAuthority.generateRoot(opts);
}

/** Loads a CA (typically an intermediate under the user's root) from PEM, checking key, usage and chain. */
export function loadCa(opts: LoadCaOptions): CertificateAuthority {
  return CertificateAuthority.load(opts);
}

/** PEM of a DER CRL (`X509 CRL`, RFC 7468). */
export function crlToPem(der: Buffer): string {
  return toPem('X509 CRL', der);
}
