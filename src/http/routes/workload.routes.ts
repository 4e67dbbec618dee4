// Workload endpoints: exchange attestation evidence for an SVID.
import { type RequestHandler, Router } from 'express';
import { LEGACY_ATTESTORS } from '../../../attestors/plugins.ts';
import type { Deps } from '../../deps.ts';
import { isWritError } from '../../errors.ts';
import { issueJwtSvid, type JwtSvidRequest } from '../../issuance/jwt-svid.ts';
import type { RegistrationEntry } from '../../store/types.ts';
import { parseBody, requireJson } from '../middleware.ts';
import { attestationRateLimit, noteAttestationFailure } from '../rate-limit.ts';
import { commonJwtSvidRequest, jwtSvidRequestSchema } from '../schemas.ts';

/**
 * Legacy evidence (static shared secrets) must stay visible: one count per credential it yields, and the
 * workload in the log (in full at first, then summed up per interval: LegacyIssuanceLog); the credential
 * record and its audit record are marked by the pipeline. Never logs the evidence.
 */
export function noteLegacyIssuance(
  deps: Deps,
  issued: { id: string; spiffeId: string; task: string; expiresAt: number },
  attestor: string,
  reqId: unknown,
): void {
  if (!LEGACY_ATTESTORS.has(attestor)) return;
  deps.metrics.legacyIssuance.inc({ attestor });
  deps.legacyLog.note(attestor, issued, reqId);
}

/**
 * The route step of an issuance: metrics, the issuance log line, the legacy note, and counting attestation
 * failures for rate limits. Shared by the JWT-SVID and X.509-SVID routes.
 */
export function issuanceStep<B extends { attestor: string }>(
  deps: Deps,
  type: 'jwt' | 'x509',
  issue: (
    body: B,
    ip: string | undefined,
    locals: Record<string, unknown>,
  ) => Promise<{ id: string; spiffeId: string; task: string; expiresAt: number }>,
): RequestHandler {
  const issuedMessage = `${type}-svid issued`;
  return async function issuanceStepHandler(req, res) {
    const stop = deps.metrics.issuanceDuration.startTimer({ type });
    const body = res.locals.body as B;
    try {
      const issued = await issue(body, req.ip, res.locals);
      deps.metrics.issued.inc({ type, attestor: body.attestor });
      // The fields are built only when the line is written (production runs at warn).
      if (deps.logger.isLevelEnabled('info')) {
        deps.logger.info(
          {
            reqId: res.locals.reqId,
            id: issued.id,
            spiffeId: issued.spiffeId,
            task: issued.task,
            attestor: body.attestor,
          },
          issuedMessage,
        );
      }
      noteLegacyIssuance(deps, issued, body.attestor, res.locals.reqId);
      // node:http's own calls: this step also runs without express (the issuance lane), and express's res.json
      // would hash the body for an ETag, useless on a one-off POST.
      const json = JSON.stringify(issued);
      res.writeHead(200, {
        'Cache-Control': 'no-store',
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': Buffer.byteLength(json),
      });
      res.end(json);
    } catch (e) {
      deps.metrics.issuanceFailures.inc({ type, code: isWritError(e) ? e.code : 'server_error' });
      await noteAttestationFailure(deps, body.attestor, req.ip, e);
      throw e;
    } finally {
      stop();
    }
  };
}

/**
 * Starts reading the registration entries as a valid request arrives, in the same event-loop tick as the
 * rate-limit check's read that follows (the Redis client sends both in one write: one round trip, not two).
 * The pipeline awaits the result after attestation; a request refused before that leaves it unread.
 */
export function prefetchEntries(deps: Deps): RequestHandler {
  return function prefetchEntriesStep(_req, res, next) {
    const entries = deps.store.listEntries();
    entries.catch(() => {}); // a refused request never awaits it; the pipeline's await still gets the error
    res.locals.entries = entries;
    next();
  };
}

/**
 * The steps of `POST /v1/svid/jwt` after its body is read: shared by the express route and the issuance lane
 * (src/http/issuance-lane.ts), which serves the common form of the request without express.
 */
export function jwtSvidSteps(deps: Deps): RequestHandler[] {
  return [
    parseBody(jwtSvidRequestSchema(deps.config.trustDomain), commonJwtSvidRequest),
    prefetchEntries(deps),
    attestationRateLimit(deps, (res) => (res.locals.body as JwtSvidRequest).attestor),
    issuanceStep<JwtSvidRequest>(deps, 'jwt', (body, ip, locals) =>
      issueJwtSvid(deps, body, ip, { entries: locals.entries as Promise<RegistrationEntry[]> | undefined }),
    ),
  ];
}

/** `json` is the app's JSON body parser, `steps` what follows it (jwtSvidSteps). */
export function workloadRoutes(deps: Deps, json: RequestHandler, steps = jwtSvidSteps(deps)): Router {
  const router = Router();
  router.post('/v1/svid/jwt', requireJson, json, ...steps);
  return router;
}
