// Workload endpoints: exchange attestation evidence for an SVID.
import { type RequestHandler, Router } from 'express';
import type { Deps } from '../../deps.ts';
import { isWritError } from '../../errors.ts';
import { issueJwtSvid, type JwtSvidRequest } from '../../issuance/jwt-svid.ts';
import { parseBody, requireJson } from '../middleware.ts';
import { jwtSvidRequestSchema } from '../schemas.ts';

function issueJwt(deps: Deps): RequestHandler {
  return async function issueJwtStep(req, res) {
    const stop = deps.metrics.issuanceDuration.startTimer({ type: 'jwt' });
    const body = res.locals.body as JwtSvidRequest;
    try {
      const issued = await issueJwtSvid(deps, body, req.ip);
      deps.metrics.issued.inc({ type: 'jwt', attestor: body.attestor });
      deps.logger.info(
        {
          reqId: res.locals.reqId,
          id: issued.id,
          spiffeId: issued.spiffeId,
          task: issued.task,
          attestor: body.attestor,
        },
        'jwt-svid issued',
      );
      res.status(200).set('Cache-Control', 'no-store').json(issued);
    } catch (e) {
      deps.metrics.issuanceFailures.inc({ type: 'jwt', code: isWritError(e) ? e.code : 'server_error' });
      throw e;
    } finally {
      stop();
    }
  };
}

export function workloadRoutes(deps: Deps): Router {
  const router = Router();
  router.post(
    '/v1/svid/jwt',
    requireJson,
    parseBody(jwtSvidRequestSchema(deps.config.trustDomain)),
    issueJwt(deps),
  );
  return router;
}
