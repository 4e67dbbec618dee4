// Relying-party endpoints: keys, discovery, the trust bundle and introspection.
import express, { type RequestHandler, Router } from 'express';
import type { Deps } from '../../deps.ts';
import { WritError } from '../../errors.ts';
import { introspect } from '../../lifecycle/introspect.ts';
import { adminAuth, invalidRequest } from '../middleware.ts';
import { introspectRequestSchema } from '../schemas.ts';

function jwks(deps: Deps): RequestHandler {
  return function jwksStep(_req, res) {
    res.set('Cache-Control', 'public, max-age=60').json(deps.keys.jwks());
  };
}

function openidConfiguration(deps: Deps): RequestHandler {
  return function openidConfigurationStep(_req, res) {
    res.set('Cache-Control', 'public, max-age=300').json({
      issuer: deps.issuer,
      jwks_uri: `${deps.issuer}/.well-known/jwks.json`,
      introspection_endpoint: `${deps.issuer}/v1/introspect`,
      response_types_supported: ['id_token'],
      subject_types_supported: ['public'],
      id_token_signing_alg_values_supported: deps.keys.algorithms(),
      claims_supported: ['sub', 'aud', 'exp', 'iat', 'iss', 'jti', 'task'],
    });
  };
}

function bundle(deps: Deps): RequestHandler {
  return function bundleStep(_req, res) {
    const jwt = deps.keys.bundle();
    // The SPIFFE bundle: the X.509 authorities (use x509-svid, x5c) beside the JWT-SVID keys. Every change of
    // either ring takes a new value of one store counter, so the larger of the two increases on any change.
    res.set('Cache-Control', 'public, max-age=60').json({
      ...jwt,
      keys: [...deps.cas.bundleKeys(), ...jwt.keys],
      spiffe_sequence: Math.max(1, deps.keys.sequence, deps.cas.sequence),
    });
  };
}

/** RFC 7662 takes `token=` form bodies; JSON `{token}` is accepted too. */
const introspectionBody: RequestHandler = function introspectionBody(req, res, next) {
  if (!req.is('application/x-www-form-urlencoded') && !req.is('application/json')) {
    next(new WritError('ERR_UNSUPPORTED_MEDIA_TYPE', 'send token= as a form or {"token": ...} as JSON'));
    return;
  }
  const body: unknown = req.body;
  if (body === undefined || body === null) {
    next(new WritError('ERR_TOKEN_MISSING'));
    return;
  }
  const result = introspectRequestSchema.safeParse(body);
  if (!result.success) {
    const missing = typeof body === 'object' && !('token' in body);
    next(missing ? new WritError('ERR_TOKEN_MISSING') : invalidRequest(result.error));
    return;
  }
  res.locals.body = result.data;
  next();
};

function introspectToken(deps: Deps): RequestHandler {
  return async function introspectTokenStep(_req, res) {
    const { token } = res.locals.body as { token: string };
    res.set('Cache-Control', 'no-store').json(await introspect(deps, token));
  };
}

export function relyingPartyRoutes(deps: Deps): Router {
  const router = Router();
  const form = express.urlencoded({
    extended: false,
    limit: deps.config.server.bodyLimit,
    parameterLimit: 10,
  });
  router.get('/.well-known/jwks.json', jwks(deps));
  router.get('/.well-known/openid-configuration', openidConfiguration(deps));
  router.get('/v1/bundle', bundle(deps));
  router.post('/v1/introspect', adminAuth(deps), form, introspectionBody, introspectToken(deps));
  return router;
}
