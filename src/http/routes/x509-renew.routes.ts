// POST /v1/svid/x509/renew: a workload renews its X.509-SVID over mutual TLS, without new attestation.
import type { X509Certificate } from 'node:crypto';
import { TLSSocket } from 'node:tls';
import { type RequestHandler, Router } from 'express';
import { z } from 'zod';
import type { Deps } from '../../deps.ts';
import { isWritError, WritError } from '../../errors.ts';
import { RENEWAL_METHOD, renewX509Svid, type X509RenewRequest } from '../../issuance/x509-renew.ts';
import { parseBody, requireJson } from '../middleware.ts';

export const x509RenewRequestSchema = z.strictObject({
  // Size and shape are judged by the CSR parser (ERR_CSR_INVALID); the body limit bounds it first.
  csr: z.string().min(1),
  ttl: z.number().int().min(1).optional(),
  approval: z
    .string()
    .regex(/^apr_[A-Za-z0-9_-]{22}$/, 'an approval id')
    .optional(),
});

/**
 * The client certificate of this connection, as the broker's own TLS stack verified it against the client
 * trust anchors. Nothing else counts: no header (X-Forwarded-Client-Cert and the like) is ever read, so
 * behind a TLS-terminating proxy renewal is unavailable.
 */
function clientCertificate(deps: Deps): RequestHandler {
  return function clientCertificateStep(req, res, next) {
    const socket = req.socket;
    if (!(socket instanceof TLSSocket) || deps.config.server.clientCertificates === 'off') {
      throw new WritError('ERR_MTLS_UNAVAILABLE');
    }
    const leaf = socket.getPeerX509Certificate();
    if (!leaf) throw new WritError('ERR_CLIENT_CERT_REQUIRED');
    // Per request, not per connection: a keep-alive connection or a resumed session is judged again below.
    if (!socket.authorized) {
      deps.logger.info(
        { reqId: res.locals.reqId, reason: String(socket.authorizationError ?? 'unknown') },
        'mtls: client certificate not verified',
      );
      throw new WritError('ERR_CLIENT_CERT_INVALID');
    }
    res.locals.clientCertificate = leaf;
    next();
  };
}

function renew(deps: Deps): RequestHandler {
  return async function renewStep(req, res) {
    const stop = deps.metrics.issuanceDuration.startTimer({ type: 'x509' });
    try {
      const body = res.locals.body as X509RenewRequest;
      const renewed = await renewX509Svid(
        deps,
        body,
        res.locals.clientCertificate as X509Certificate,
        req.ip,
      );
      deps.metrics.issued.inc({ type: 'x509', attestor: RENEWAL_METHOD });
      deps.logger.info(
        {
          reqId: res.locals.reqId,
          id: renewed.id,
          spiffeId: renewed.spiffeId,
          task: renewed.task,
          renewedFrom: renewed.renewedFrom,
        },
        'x509-svid renewed',
      );
      res.status(200).set('Cache-Control', 'no-store').json(renewed);
    } catch (e) {
      deps.metrics.issuanceFailures.inc({ type: 'x509', code: isWritError(e) ? e.code : 'server_error' });
      throw e;
    } finally {
      stop();
    }
  };
}

export function x509RenewRoutes(deps: Deps): Router {
  const router = Router();
  router.post(
    '/v1/svid/x509/renew',
    // Authentication first: without a verified certificate the body is not looked at.
    clientCertificate(deps),
    requireJson,
    parseBody(x509RenewRequestSchema),
    renew(deps),
  );
  return router;
}
