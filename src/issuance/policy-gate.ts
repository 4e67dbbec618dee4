// The policy step of every issuance: Cedar decides over identity and context; caps the TTL; may require an
// admin's approval first. Shared by the JWT-SVID and X.509-SVID pipelines.
import { approvalFingerprint } from '../admin/approvals.ts';
import type { VerifiedAttestation } from '../attestation/facade.ts';
import type { Deps } from '../deps.ts';
import { WritError } from '../errors.ts';
import { workloadFacts } from '../policy/index.ts';
import { seconds } from '../store/types.ts';

export interface PolicyGateInput {
  attestation: VerifiedAttestation;
  spiffeId: string;
  task: string;
  audience: readonly string[];
  credentialType: 'jwt' | 'x509';
  /** The lifetime the pipeline would give, seconds. */
  ttl: number;
  sourceIp: string | undefined;
  /** Facts for `context.extra` (empty at issuance; `renewal=true` for an X.509-SVID renewal over mTLS). */
  extra?: Readonly<Record<string, string | number | boolean>> | undefined;
  /** What the caller asked for, to recognise the same request when it comes back with an approval. */
  request: {
    attestor: string;
    ttl?: number | undefined;
    task?: string | undefined;
    approval?: string | undefined;
  };
}

/**
 * Allows (returning the possibly lower TTL), or throws `access_denied` naming the deciding policies (never
 * their text), or `ERR_APPROVAL_PENDING` (202) with a new approval id. With an approved `approval`, lets the
 * request through once.
 */
export async function policyGate(
  deps: Deps,
  input: PolicyGateInput,
): Promise<{ ttl: number; policies: string[] }> {
  const now = seconds(deps.clock);
  const action = input.credentialType === 'jwt' ? 'issue_jwt' : 'issue_x509';
  const principal = workloadFacts(input.attestation, {
    spiffeId: input.spiffeId,
    trustDomain: deps.config.trustDomain,
    task: input.task,
  });
  // An X.509-SVID has no audience: it is decided against the trust domain's own audience.
  const audiences = input.audience.length > 0 ? input.audience : [`spiffe://${deps.config.trustDomain}`];
  const decision = deps.policy.decideAll(
    audiences.map((a) => ({
      principal,
      action,
      resource: { type: 'Audience' as const, id: a },
      context: {
        sourceIp: input.sourceIp ?? '',
        now,
        ttl: input.ttl,
        credentialType: input.credentialType,
        legacy: input.attestation.legacy,
        ...(input.extra === undefined ? {} : { extra: input.extra }),
      },
    })),
  );
  if (decision.errors.length > 0)
    deps.logger.warn({ errors: decision.errors }, 'policy evaluation errors (denied)');
  if (decision.decision !== 'allow') {
    throw new WritError(
      'access_denied',
      decision.reasons.length > 0
        ? `denied by policy ${decision.reasons.join(', ')}`
        : 'no policy permits this request',
      { extra: { policies: decision.reasons }, meta: { spiffeId: input.spiffeId } },
    );
  }
  const ttl = Math.min(input.ttl, decision.ttlCap ?? input.ttl);
  if (decision.approvalRequired) {
    const fingerprint = approvalFingerprint({
      attestor: input.request.attestor,
      spiffeId: input.spiffeId,
      audience: input.audience,
      credentialType: input.credentialType,
      ttl: input.request.ttl,
      task: input.request.task,
    });
    if (input.request.approval === undefined) {
      const record = await deps.approvals.request({
        fingerprint,
        spiffeId: input.spiffeId,
        attestor: input.attestation.attestor,
        audience: [...input.audience],
        credentialType: input.credentialType,
        policies: decision.approvalPolicies,
      });
      await deps.audit.append({
        type: 'approval.requested',
        actor: `workload:${input.spiffeId}`,
        subject: `approval:${record.id}`,
        policies: decision.approvalPolicies,
        details: { audience: [...input.audience], type: input.credentialType },
      });
      throw pending(record.id, record.expiresAt, decision.approvalPolicies);
    }
    const redeemed = await deps.approvals.redeem(input.request.approval, fingerprint);
    if (redeemed.outcome === 'pending') {
      throw pending(redeemed.record.id, redeemed.record.expiresAt, redeemed.record.policies);
    }
    if (redeemed.outcome === 'denied') {
      throw new WritError('access_denied', 'an admin denied the approval', {
        extra: { policies: redeemed.record.policies },
        meta: { spiffeId: input.spiffeId },
      });
    }
  }
  return { ttl, policies: decision.reasons };
}

function pending(id: string, expiresAt: number, policies: string[]): WritError {
  return new WritError(
    'ERR_APPROVAL_PENDING',
    'an admin must approve this request; repeat it with "approval"',
    {
      extra: { approval: id, status: 'pending', expiresAt, policies },
    },
  );
}
