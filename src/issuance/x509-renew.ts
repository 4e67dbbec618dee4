// X.509-SVID renewal over mutual TLS: the live X.509-SVID a client presented stands in for attestation. A new
// key (CSR) gets a certificate of the same SPIFFE ID in the same task, never past the task's deadline.
import type { X509Certificate } from 'node:crypto';
import type { VerifiedAttestation } from '../attestation/facade.ts';
import type { Deps } from '../deps.ts';
import { isWritError, WritError } from '../errors.ts';
import { svidIssuer } from '../keys/x509/client-trust.ts';
import type { ParsedCsr } from '../keys/x509/index.ts';
import { policiesNeedingAttestationFacts } from '../policy/attestation-facts.ts';
import { isMemberOf, isTrustDomainId } from '../spiffe/spiffe-id.ts';
import { credentialStatus } from '../store/status.ts';
import { type CredentialRecord, type CredentialView, seconds, type TaskInit } from '../store/types.ts';
import { AUDITED_DENIALS } from './jwt-svid.ts';
import { policyGate } from './policy-gate.ts';
import { checkCsrAsync, type IssuedX509Svid, mintRecorded } from './x509-svid.ts';

/** The attestor name renewals carry in the audit trail, metrics and approval fingerprints. */
export const RENEWAL_METHOD = 'mtls';

export interface X509RenewRequest {
  /** A PEM PKCS#10 request for a new key (proof of possession); its subject and SANs are ignored. */
  csr: string;
  ttl?: number | undefined;
  /** An approval id, when a policy required an admin's approval for this renewal. */
  approval?: string | undefined;
}

export interface RenewedX509Svid extends IssuedX509Svid {
  /** The serial of the certificate that was presented. */
  renewedFrom: string;
}

/** Serials the CA writes: 16 bytes, the first in 0x40..0x7f, so always 32 lowercase hex digits. */
const SVID_SERIAL = /^[0-9a-f]{32}$/;

/**
 * Renews the X.509-SVID `presented` (the client certificate the TLS stack verified against the trust anchors).
 * Every renewal and every refusal of a verified certificate lands in the audit trail.
 */
export async function renewX509Svid(
  deps: Deps,
  req: X509RenewRequest,
  presented: X509Certificate,
  sourceIp?: string,
): Promise<RenewedX509Svid> {
  const serial = presented.serialNumber.toLowerCase();
  let view: CredentialView | undefined;
  try {
    // Authentication first: what the request asks for is looked at once the certificate is live.
    view = await liveSvid(deps, presented, serial);
    const csr = await checkCsrAsync(req.csr);
    const { maxTtl } = deps.config.credentials;
    if (req.ttl !== undefined && req.ttl > maxTtl) {
      throw new WritError('ERR_TTL_INVALID', `ttl must be between 1 and ${maxTtl} seconds`);
    }
    // A renewal rotates the key: the old key may be why the workload renews at all.
    if (csr.publicKey.equals(presented.publicKey)) throw new WritError('ERR_CSR_KEY_REUSED');
    const renewed = await mintRenewal(deps, req, csr, view, sourceIp);
    await deps.audit.append({
      type: 'svid.renewed',
      actor: `workload:${renewed.spiffeId}`,
      subject: `credential:${renewed.id}`,
      decision: 'allow',
      details: {
        type: 'x509',
        task: renewed.task,
        attestor: view.credential.attestor,
        method: RENEWAL_METHOD,
        renewedFrom: serial,
        expiresAt: renewed.expiresAt,
        keyType: csr.keyType,
      },
    });
    return renewed;
  } catch (e) {
    if (isWritError(e) && (AUDITED_DENIALS.has(e.code) || e.code === 'ERR_CLIENT_CERT_INACTIVE')) {
      await auditRefusal(deps, e, serial, view, sourceIp);
    }
    throw e;
  }
}

/**
 * The record of the presented certificate, when it is a live X.509-SVID of ours: the TLS stack only said that
 * it chains to a trusted root. The serial is looked up, and the record must agree with the certificate, which
 * must verify under the very CA that recorded it (a root's other intermediates choose their own serials).
 */
async function liveSvid(deps: Deps, cert: X509Certificate, serial: string): Promise<CredentialView> {
  const inactive = (why: string): WritError => {
    deps.logger.info({ serial: SVID_SERIAL.test(serial) ? serial : undefined, why }, 'mtls: renewal refused');
    return new WritError('ERR_CLIENT_CERT_INACTIVE');
  };
  if (!SVID_SERIAL.test(serial)) throw inactive('not a serial this broker writes');
  if (cert.ca) throw inactive('a ca certificate');
  const view = await deps.store.getCredential(serial);
  if (view?.credential.type !== 'x509' || view.credential.id !== serial) throw inactive('unknown');
  const { credential } = view;
  const issuer = svidIssuer(deps.cas, credential.kid);
  if (!issuer || !cert.checkIssued(issuer.certificate) || !cert.verify(issuer.publicKey)) {
    throw inactive('not signed by the ca that recorded it');
  }
  // The one SAN is the recorded SPIFFE ID, and the validity is the recorded one.
  if (cert.subjectAltName !== `URI:${credential.spiffeId}`) throw inactive('spiffe id differs');
  if (!isMemberOf(credential.spiffeId, deps.config.trustDomain) || isTrustDomainId(credential.spiffeId)) {
    throw inactive('outside the trust domain');
  }
  if (Math.floor(Date.parse(cert.validTo) / 1000) !== credential.expiresAt) throw inactive('expiry differs');
  if (!view.task || view.task.id !== credential.task) throw inactive('no task');
  const status = credentialStatus(view, seconds(deps.clock));
  if (status !== 'active') throw inactive(status);
  return view;
}

async function mintRenewal(
  deps: Deps,
  req: X509RenewRequest,
  csr: ParsedCsr,
  view: CredentialView,
  sourceIp: string | undefined,
): Promise<RenewedX509Svid> {
  const { credential } = view;
  const task = view.task;
  if (!task) throw new WritError('ERR_CLIENT_CERT_INACTIVE');
  const ttl = await decide(deps, req, credential, sourceIp);
  // Same task, same deadline: renewing can never outlive the task (nor the CA).
  const init: TaskInit = {
    id: task.id,
    owner: credential.spiffeId,
    origin: task.origin,
    deadline: task.deadline,
  };
  const issued = await mintRecorded(deps, csr, {
    spiffeId: credential.spiffeId,
    task: init,
    ttl,
    // The attestation it descends from: revoking by attestor reaches renewed certificates too.
    attestor: credential.attestor,
    legacy: credential.legacy ?? false,
  });
  return { ...issued, renewedFrom: credential.id };
}

/**
 * The lifetime a renewal may have, after policy: at most what was asked (default `x509DefaultTtl`), the
 * entries' `x509Ttl` for this SPIFFE ID, the hard cap, and the lifetime of the certificate presented (which
 * carried the attestor's and policy's caps of its day: a renewal never lengthens a lifetime).
 */
async function decide(
  deps: Deps,
  req: X509RenewRequest,
  credential: CredentialRecord,
  sourceIp: string | undefined,
): Promise<number> {
  const creds = deps.config.credentials;
  const entries = await deps.store.listEntries();
  const entryCaps = entries
    .filter((e) => e.spiffeId === credential.spiffeId && e.x509Ttl !== undefined)
    .map((e) => e.x509Ttl as number);
  const limit = Math.min(
    req.ttl ?? creds.x509DefaultTtl,
    ...entryCaps,
    credential.expiresAt - credential.issuedAt,
    creds.maxTtl,
  );
  // Selectors and posture are facts of attestation time: a policy for issue_x509 that reads them cannot be
  // honoured without attestation, so renewal fails closed (a forbid on selectors must never be skipped).
  const blind = policiesNeedingAttestationFacts(deps.policy, 'issue_x509');
  if (blind.length > 0) {
    throw new WritError(
      'access_denied',
      'a policy for issue_x509 reads selectors or posture, which a renewal does not have: attest again',
      { extra: { policies: blind }, meta: { spiffeId: credential.spiffeId } },
    );
  }
  const attestation: VerifiedAttestation = {
    attestor: credential.attestor,
    legacy: credential.legacy ?? false,
    selectors: [],
    posture: {},
  };
  const { ttl } = await policyGate(deps, {
    attestation,
    spiffeId: credential.spiffeId,
    task: credential.task,
    audience: [],
    credentialType: 'x509',
    ttl: Math.max(1, limit),
    sourceIp,
    extra: { renewal: true },
    request: { attestor: RENEWAL_METHOD, ttl: req.ttl, task: credential.task, approval: req.approval },
  });
  return ttl;
}

/** A refused renewal of a certificate that chained to our roots; caller values never enter the trail. */
async function auditRefusal(
  deps: Deps,
  e: WritError,
  serial: string,
  view: CredentialView | undefined,
  sourceIp: string | undefined,
): Promise<void> {
  const spiffeId = view?.credential.spiffeId;
  const policies = Array.isArray(e.extra?.policies) ? { policies: e.extra.policies as string[] } : {};
  try {
    await deps.audit.append({
      type: 'svid.denied',
      actor: spiffeId ? `workload:${spiffeId}` : 'client:certificate',
      ...(SVID_SERIAL.test(serial) ? { subject: `credential:${serial}` } : {}),
      decision: 'deny',
      ...policies,
      details: { type: 'x509', method: RENEWAL_METHOD, code: e.code, source_ip: sourceIp ?? null },
    });
  } catch (err) {
    deps.logger.error({ err }, 'could not audit a refused renewal');
  }
}
