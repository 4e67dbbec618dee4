// The X.509-SVID issue pipeline: CSR (proof of possession) -> attest -> plan -> sign -> re-check -> record.
import type { Deps } from '../deps.ts';
import { WritError } from '../errors.ts';
import {
  CaError,
  type CertificateAuthority,
  CsrError,
  type IssuedCertificate,
  type ParsedCsr,
  parseCsrAsync,
} from '../keys/x509/index.ts';
import { type CredentialRecord, seconds, type TaskInit } from '../store/types.ts';
import { audited, type PlanOptions, planSvid, scheduleDeadline } from './jwt-svid.ts';

export interface X509SvidRequest {
  attestor: string;
  evidence: unknown;
  /** A PEM PKCS#10 request; only its key (and its signature, the proof of possession) is used. */
  csr: string;
  ttl?: number | undefined;
  task?: string | undefined;
  spiffeId?: string | undefined;
  /** An approval id, when a policy required an admin's approval for this request. */
  approval?: string | undefined;
}

export interface IssuedX509Svid {
  /** PEM of the X.509-SVID. */
  certificate: string;
  /** PEM of each intermediate between the SVID and the root, issuer first; empty when the CA is the root. */
  chain: string[];
  /** PEM of the trust anchors (the X.509 authorities of the trust domain). */
  bundle: string;
  spiffeId: string;
  /** The certificate's serial, lowercase hex. */
  id: string;
  task: string;
  expiresAt: number;
}

/**
 * Parses and checks a CSR (its signature verified off the event loop); its errors become 400s with stable
 * codes. Called before attestation, so that a bad request never spends single-use evidence.
 */
export async function checkCsrAsync(pem: string): Promise<ParsedCsr> {
  try {
    return await parseCsrAsync(pem);
  } catch (e) {
    if (e instanceof CsrError) throw new WritError(e.code, e.message, { cause: e });
    throw e;
  }
}

/** Issues an X.509-SVID; every issuance and every denial lands in the audit trail. */
export async function issueX509Svid(
  deps: Deps,
  req: X509SvidRequest,
  sourceIp?: string,
  opts: PlanOptions = {},
): Promise<IssuedX509Svid> {
  const csr = await checkCsrAsync(req.csr);
  return audited(deps, 'x509', req, sourceIp, () => mintX509Svid(deps, req, csr, sourceIp, opts), {
    keyType: csr.keyType,
  });
}

async function mintX509Svid(
  deps: Deps,
  req: X509SvidRequest,
  csr: ParsedCsr,
  sourceIp: string | undefined,
  opts: PlanOptions,
): Promise<IssuedX509Svid> {
  const { plan, attestation } = await planSvid(
    deps,
    {
      attestor: req.attestor,
      evidence: req.evidence,
      audience: [],
      ttl: req.ttl,
      task: req.task,
      spiffeId: req.spiffeId,
      approval: req.approval,
    },
    sourceIp,
    'x509',
    opts,
  );
  return mintRecorded(deps, csr, {
    spiffeId: plan.spiffeId,
    task: plan.task,
    ttl: plan.ttl,
    attestor: attestation.attestor,
    legacy: attestation.legacy,
  });
}

/** What a certificate is minted for: the identity, its task, the lifetime decided, and whence it came. */
export interface X509Mint {
  spiffeId: string;
  task: TaskInit;
  /** Upper bound of the lifetime, seconds (the task deadline and the CA's end cap it further). */
  ttl: number;
  /** The attestor the credential descends from (recorded; revocation by attestor reaches it). */
  attestor: string;
  legacy: boolean;
}

/**
 * Mints an X.509-SVID from the current CA and records it before it is returned (issuance and mTLS renewal
 * alike). The certificate never outlives its task nor its CA.
 */
export async function mintRecorded(deps: Deps, csr: ParsedCsr, mint: X509Mint): Promise<IssuedX509Svid> {
  const { ca } = deps;
  const now = seconds(deps.clock);
  // The CA caps notAfter at its own end (and at every certificate's above it).
  let notAfter = Math.min(now + mint.ttl, mint.task.deadline, ca.notAfter);
  // As for JWT-SVIDs: an existing task's deadline is only known to the store, which refuses a credential
  // that would outlive it; the certificate is then re-issued once within that deadline.
  for (let attempt = 0; attempt < 2; attempt++) {
    if (notAfter <= now) {
      if (ca.notAfter <= now) throw caUnusable(deps, new CaError('ERR_CA_EXPIRED', 'the ca has expired'));
      throw new WritError('ERR_TASK_ENDED');
    }
    const cert = await sign(deps, ca, csr, mint.spiffeId, notAfter, now);
    const credential: CredentialRecord = {
      id: cert.serialHex,
      type: 'x509',
      spiffeId: mint.spiffeId,
      task: mint.task.id,
      attestor: mint.attestor,
      // An X.509-SVID is not addressed to anyone: entry audiences restrict JWT-SVIDs only.
      audience: [],
      issuedAt: now,
      expiresAt: cert.notAfter,
      kid: ca.keyId,
      legacy: mint.legacy || undefined,
    };
    const recorded = await deps.store.recordIssuance(credential, mint.task);
    if (recorded.ok) {
      if (recorded.created) scheduleDeadline(deps, recorded.task);
      return {
        certificate: cert.pem,
        chain: [...ca.chainPem],
        bundle: deps.cas.rootsPem().join(''),
        spiffeId: mint.spiffeId,
        id: cert.serialHex,
        task: mint.task.id,
        expiresAt: cert.notAfter,
      };
    }
    if (recorded.reason === 'task_ended') throw new WritError('ERR_TASK_ENDED');
    if (recorded.reason === 'task_mismatch') {
      throw new WritError('ERR_TASK_MISMATCH', 'the task belongs to another workload');
    }
    notAfter = Math.min(notAfter, recorded.task.deadline);
  }
  throw new WritError('ERR_TASK_ENDED');
}

/**
 * Mints and re-checks (the CA re-parses every certificate with OpenSSL and verifies its signature before
 * returning it; the signing and that check run on the CA's own thread, off the event loop).
 */
async function sign(
  deps: Deps,
  ca: CertificateAuthority,
  csr: ParsedCsr,
  spiffeId: string,
  notAfter: number,
  now: number,
): Promise<IssuedCertificate> {
  try {
    return await ca.issueX509SvidAsync({
      spiffeId,
      spki: csr.spki,
      publicKey: csr.publicKey,
      notAfter,
      now,
      backdate: deps.config.credentials.backdate,
    });
  } catch (e) {
    throw caUnusable(deps, e);
  }
}

function caUnusable(deps: Deps, cause: unknown): WritError {
  deps.logger.error({ err: cause }, 'the x509 ca could not issue a certificate');
  return new WritError('server_error', undefined, { cause });
}
