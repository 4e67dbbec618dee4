// POST /v1/authorize: policy at use time. The credential is re-verified (signature, expiry, revocation,
// task), then Cedar decides whether its workload may do this action on this resource now.
import { type RequestHandler, Router } from 'express';
import { z } from 'zod';
import type { Deps } from '../../deps.ts';
import { verifyLiveToken } from '../../lifecycle/introspect.ts';
import { policiesNeedingAttestationFacts } from '../../policy/attestation-facts.ts';
import { seconds } from '../../store/types.ts';
import { parseBody, requireJson } from '../middleware.ts';

const factValue = z.union([z.string().max(1024), z.number().finite(), z.boolean()]);

export const authorizeRequestSchema = z.strictObject({
  token: z.string().min(1).max(8192),
  action: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'an action name'),
  resource: z.string().min(1).max(512),
  /**
   * The address of the client presenting the token to the relying party. Policy's `source_ip` at use time
   * is this when given (the relying party vouches for it), else the address of the caller of this endpoint.
   */
  sourceIp: z.union([z.ipv4(), z.ipv6()]).optional(),
  context: z
    .record(z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/), factValue)
    .refine((c) => Object.keys(c).length <= 64, 'at most 64 context facts')
    .optional(),
});

type AuthorizeRequest = z.output<typeof authorizeRequestSchema>;

/**
 * The caller proves nothing but possession of the token it asks about; the answer says only allow or deny
 * and which policies decided (never their text). An inactive credential is a deny with reason
 * `credential_inactive`.
 */
function authorize(deps: Deps): RequestHandler {
  return async function authorizeStep(req, res) {
    const body = res.locals.body as AuthorizeRequest;
    const live = await verifyLiveToken(deps, body.token);
    res.set('Cache-Control', 'no-store');
    if (!live) {
      res.json({ decision: 'deny', reasons: ['credential_inactive'] });
      return;
    }
    // Selectors and posture are facts of attestation time, not kept with the credential: a policy for this
    // action that reads them cannot be decided here, so the answer fails closed (a forbid on selectors must
    // never be skipped). Write use-time policies on spiffe_id, attestor, task and context.
    const blind = policiesNeedingAttestationFacts(deps.policy, body.action);
    if (blind.length > 0) {
      res.json({ decision: 'deny', reasons: ['attestation_facts_unavailable', ...blind] });
      return;
    }
    const { credential } = live.view;
    const now = seconds(deps.clock);
    const decision = deps.policy.decide({
      principal: {
        spiffeId: credential.spiffeId,
        trustDomain: deps.config.trustDomain,
        attestor: credential.attestor,
        // Selectors and posture are facts of attestation time; at use time policy sees the identity.
        selectors: [],
        legacy: credential.legacy ?? false,
        task: credential.task,
        posture: {},
      },
      action: body.action,
      resource: { type: 'Resource', id: body.resource },
      context: {
        sourceIp: body.sourceIp ?? req.ip ?? '',
        now,
        ttl: Math.max(0, credential.expiresAt - now),
        credentialType: credential.type,
        legacy: credential.legacy ?? false,
        extra: body.context,
      },
    });
    if (decision.errors.length > 0)
      deps.logger.warn({ errors: decision.errors }, 'policy evaluation errors (denied)');
    res.json({ decision: decision.decision, reasons: decision.reasons, policyVersion: deps.policy.version });
  };
}

export function authorizeRoutes(deps: Deps): Router {
  const router = Router();
  router.post('/v1/authorize', requireJson, parseBody(authorizeRequestSchema), authorize(deps));
  return router;
}
