// X.509 endpoints: X.509-SVIDs for workloads; the trust anchors as PEM and the CRL for relying parties.
import { type RequestHandler, Router } from 'express';
import { z } from 'zod';
import type { Deps } from '../../deps.ts';
import { WritError } from '../../errors.ts';
import { issueX509Svid, type X509SvidRequest } from '../../issuance/x509-svid.ts';
import { callerTaskIdSchema } from '../../lifecycle/task-id.ts';
import type { RegistrationEntry } from '../../store/types.ts';
import { invalidRequest, parseBody, requireJson } from '../middleware.ts';
import { attestationRateLimit } from '../rate-limit.ts';
import { memberIdSchema } from '../schemas.ts';
import { issuanceStep, prefetchEntries } from './workload.routes.ts';

export function x509SvidRequestSchema(trustDomain: string) {
  return z.strictObject({
    attestor: z.string().min(1).max(64),
    evidence: z.custom<unknown>((v) => v !== undefined, { message: 'evidence is required' }),
    // Size and shape are judged by the CSR parser (ERR_CSR_INVALID); the body limit bounds it first.
    csr: z.string().min(1),
    ttl: z.number().int().min(1).optional(),
    task: callerTaskIdSchema.optional(),
    spiffeId: memberIdSchema(trustDomain).optional(),
    // As for JWT-SVIDs: the id of an approval an admin gave, when a policy required one (202 before).
    approval: z
      .string()
      .regex(/^apr_[A-Za-z0-9_-]{22}$/, 'an approval id')
      .optional(),
  });
}

const crlQuerySchema = z.strictObject({ format: z.enum(['der', 'pem']).optional() });
const caKeyIdSchema = z.string().regex(/^[0-9a-f]{2,128}$/, 'a CA key id (lowercase hex)');

function bundlePem(deps: Deps): RequestHandler {
  return function bundlePemStep(_req, res) {
    res
      .status(200)
      .set('Cache-Control', 'public, max-age=60')
      .type('application/x-pem-file')
      .send(deps.cas.rootsPem().join(''));
  };
}

function crl(deps: Deps): RequestHandler {
  return async function crlStep(req, res) {
    const query = crlQuerySchema.safeParse(req.query);
    if (!query.success) throw invalidRequest(query.error);
    // /v1/crl serves the current CA's CRL; /v1/crl/<key id> any published CA's (the distribution point).
    const keyId = req.params.keyId === undefined ? undefined : caKeyIdSchema.safeParse(req.params.keyId);
    if (keyId && !keyId.success) throw new WritError('ERR_NOT_FOUND', 'no ca has this key id');
    const signed = await deps.crl.current(keyId?.data);
    if (!signed) throw new WritError('ERR_NOT_FOUND', 'no ca has this key id');
    // Revocations must reach relying parties at once: caches may keep a copy but must revalidate it.
    res.status(200).set('Cache-Control', 'no-cache');
    res.set('Last-Modified', new Date(signed.thisUpdate * 1000).toUTCString());
    res.set('Expires', new Date(signed.nextUpdate * 1000).toUTCString());
    if (query.data.format === 'pem') res.type('application/x-pem-file').send(signed.pem);
    else res.type('application/pkix-crl').send(signed.der);
  };
}

/** The steps of `POST /v1/svid/x509` after its body is read: the express route's and the issuance lane's. */
export function x509SvidSteps(deps: Deps): RequestHandler[] {
  return [
    parseBody(x509SvidRequestSchema(deps.config.trustDomain)),
    prefetchEntries(deps),
    attestationRateLimit(deps, (res) => (res.locals.body as X509SvidRequest).attestor),
    issuanceStep<X509SvidRequest>(deps, 'x509', (body, ip, locals) =>
      issueX509Svid(deps, body, ip, { entries: locals.entries as Promise<RegistrationEntry[]> | undefined }),
    ),
  ];
}

/** `json` is the app's JSON body parser, `steps` what follows it (x509SvidSteps). */
export function x509Routes(deps: Deps, json: RequestHandler, steps = x509SvidSteps(deps)): Router {
  const router = Router();
  router.post('/v1/svid/x509', requireJson, json, ...steps);
  router.get('/v1/bundle.pem', bundlePem(deps));
  router.get('/v1/crl', crl(deps));
  router.get('/v1/crl/:keyId', crl(deps));
  return router;
}
