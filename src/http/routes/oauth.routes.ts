// RFC 8693 token exchange: a platform's JWT (CI OIDC token, Kubernetes token) for a JWT-SVID.
import express, { type RequestHandler, Router } from 'express';
import { tokenIssuers as githubIssuers } from '../../../attestors/github_actions/index.ts';
import { tokenIssuers as k8sIssuers } from '../../../attestors/k8s_psat/index.ts';
import { tokenIssuers as oidcIssuers } from '../../../attestors/oidc/index.ts';
import { unverifiedIssuer } from '../../attestation/jwt-evidence.ts';
import type { Deps } from '../../deps.ts';
import { type ErrorCode, isWritError, WritError } from '../../errors.ts';
import { issueJwtSvid } from '../../issuance/jwt-svid.ts';
import { seconds } from '../../store/types.ts';
import { attestationRateLimit, noteAttestationFailure } from '../rate-limit.ts';

export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
export const TOKEN_TYPE_ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const SUBJECT_TOKEN_TYPES = new Set([TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN]);
const MAX_AUDIENCES = 16;
const AUDIENCE = /^[^\p{Cc}]{1,512}$/u;

interface ExchangeRequest {
  subjectToken: string;
  audience: string[];
}

/**
 * Which attestor verifies a token of which issuer, among the enabled OIDC-style attestors. When several
 * claim one issuer, the first in this order wins (and the broker warns at start).
 */
export function issuerRoutes(deps: Deps): Map<string, string> {
  const a = deps.config.attestors;
  const candidates: Array<[string, string[]]> = [
    ['github_actions', a.github_actions ? githubIssuers(a.github_actions) : []],
    ['oidc', a.oidc ? oidcIssuers(a.oidc) : []],
    ['k8s_psat', a.k8s_psat ? k8sIssuers(a.k8s_psat) : []],
  ];
  const routes = new Map<string, string>();
  for (const [attestor, issuers] of candidates) {
    if (!deps.attestors.has(attestor)) continue;
    for (const issuer of issuers) {
      const taken = routes.get(issuer);
      if (taken === undefined) routes.set(issuer, attestor);
      else
        deps.logger.warn(
          { issuer, attestor, routedTo: taken },
          'token exchange: issuer claimed by two attestors',
        );
    }
  }
  return routes;
}

/** RFC 6749 §3.1: a parameter sent twice is an error, except those RFC 8693 lets repeat. */
function single(body: Record<string, unknown>, name: string): string | undefined {
  const value = body[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new WritError('invalid_request', `${name} must be sent once`);
  return value;
}

function repeated(body: Record<string, unknown>, name: string): string[] {
  const value = body[name];
  if (value === undefined) return [];
  const values = Array.isArray(value) ? value : [value];
  for (const v of values) {
    if (typeof v !== 'string' || !AUDIENCE.test(v))
      throw new WritError('invalid_request', `${name} is malformed`);
  }
  return values as string[];
}

const tokenRequest: RequestHandler = function tokenRequest(req, res, next) {
  if (!req.is('application/x-www-form-urlencoded')) {
    throw new WritError('invalid_request', 'the body must be application/x-www-form-urlencoded');
  }
  const body = (req.body ?? {}) as Record<string, unknown>;
  const grantType = single(body, 'grant_type');
  if (grantType === undefined) throw new WritError('invalid_request', 'grant_type is required');
  if (grantType !== GRANT_TOKEN_EXCHANGE) {
    throw new WritError('unsupported_grant_type', `only ${GRANT_TOKEN_EXCHANGE} is supported`);
  }
  const subjectToken = single(body, 'subject_token');
  if (!subjectToken) throw new WritError('invalid_request', 'subject_token is required');
  if (subjectToken.length > 16_384) throw new WritError('invalid_request', 'subject_token is too long');
  const subjectTokenType = single(body, 'subject_token_type');
  if (subjectTokenType === undefined)
    throw new WritError('invalid_request', 'subject_token_type is required');
  if (!SUBJECT_TOKEN_TYPES.has(subjectTokenType)) {
    throw new WritError(
      'invalid_request',
      `subject_token_type must be ${TOKEN_TYPE_JWT} or ${TOKEN_TYPE_ID_TOKEN}`,
    );
  }
  const requested = single(body, 'requested_token_type');
  if (requested !== undefined && requested !== TOKEN_TYPE_JWT) {
    throw new WritError('invalid_request', `requested_token_type must be ${TOKEN_TYPE_JWT}`);
  }
  if (body.actor_token !== undefined || body.actor_token_type !== undefined) {
    throw new WritError('invalid_request', 'delegation (actor_token) is not supported');
  }
  single(body, 'scope'); // accepted and ignored: the registration entry decides what the SVID is for
  // RFC 8693 lets audience (and resource) repeat; both name audiences of the JWT-SVID.
  const audience = [...new Set([...repeated(body, 'audience'), ...repeated(body, 'resource')])];
  if (audience.length === 0) throw new WritError('invalid_request', 'audience is required');
  if (audience.length > MAX_AUDIENCES) {
    throw new WritError('invalid_target', `at most ${MAX_AUDIENCES} audiences per token`);
  }
  const parsed: ExchangeRequest = { subjectToken, audience };
  res.locals.body = parsed;
  next();
};

/**
 * Broker errors in RFC 6749 §5.2 / RFC 8693 §2.2.2 terms: a subject token that is invalid or unacceptable by
 * policy is `invalid_request` (RFC 8693 says MUST), a refused audience `invalid_target`; the description
 * keeps the broker's detail (the attestor's reason).
 */
function oauthError(e: unknown): unknown {
  if (!isWritError(e)) return e;
  const as = (code: ErrorCode) =>
    new WritError(code, e.detail ?? (e.toJSON().error_description as string), { cause: e });
  switch (e.code) {
    case 'ERR_ATTESTATION_FAILED':
    case 'ERR_NO_MATCHING_ENTRY':
    case 'ERR_AMBIGUOUS_ENTRY':
    case 'ERR_TASK_ENDED':
    case 'ERR_TASK_MISMATCH':
    case 'ERR_ATTESTOR_UNKNOWN':
    case 'ERR_TTL_INVALID':
      return as('invalid_request');
    case 'ERR_AUDIENCE_NOT_ALLOWED':
      return as('invalid_target');
    case 'ERR_ATTESTOR_UNAVAILABLE':
    case 'ERR_STORE_UNAVAILABLE':
      return as('temporarily_unavailable');
    case 'invalid_request':
    case 'invalid_target':
    case 'temporarily_unavailable':
    case 'ERR_RATE_LIMITED':
    case 'server_error':
      return e;
    default:
      // Any other refusal (a policy decision, say) is a subject token "unacceptable based on policy".
      return e.status >= 400 && e.status < 500 ? as('invalid_request') : e;
  }
}

/** Routing only: the chosen attestor verifies the token, its issuer included. */
function routeSubjectToken(deps: Deps): RequestHandler {
  const routes = issuerRoutes(deps);
  return function routeSubjectTokenStep(_req, res, next) {
    const { subjectToken } = res.locals.body as ExchangeRequest;
    const iss = unverifiedIssuer(subjectToken);
    if (iss === undefined)
      throw new WritError('invalid_request', 'subject_token is not a JWT with an iss claim');
    const attestor = routes.get(iss);
    if (attestor === undefined) {
      throw new WritError('invalid_request', 'no enabled attestor accepts tokens of this issuer');
    }
    res.locals.attestor = attestor;
    next();
  };
}

function exchangeToken(deps: Deps): RequestHandler {
  return async function exchangeTokenStep(req, res) {
    const { subjectToken, audience } = res.locals.body as ExchangeRequest;
    const attestor = res.locals.attestor as string;
    const stop = deps.metrics.issuanceDuration.startTimer({ type: 'jwt' });
    try {
      const issued = await issueJwtSvid(
        deps,
        { attestor, evidence: { token: subjectToken }, audience },
        req.ip,
      );
      deps.metrics.issued.inc({ type: 'jwt', attestor });
      deps.logger.info(
        { reqId: res.locals.reqId, id: issued.id, spiffeId: issued.spiffeId, task: issued.task, attestor },
        'jwt-svid issued by token exchange',
      );
      res
        .status(200)
        .set({ 'Cache-Control': 'no-store', Pragma: 'no-cache' })
        .json({
          access_token: issued.token,
          issued_token_type: TOKEN_TYPE_JWT,
          token_type: 'N_A',
          expires_in: Math.max(0, issued.expiresAt - seconds(deps.clock)),
        });
    } catch (e) {
      deps.metrics.issuanceFailures.inc({ type: 'jwt', code: isWritError(e) ? e.code : 'server_error' });
      // The exchange is an attestation like POST /v1/svid/jwt, and counts against the same limits.
      await noteAttestationFailure(deps, attestor, req.ip, e);
      throw oauthError(e);
    } finally {
      stop();
    }
  };
}

export function oauthRoutes(deps: Deps): Router {
  const router = Router();
  const form = express.urlencoded({
    extended: false,
    limit: deps.config.server.bodyLimit,
    parameterLimit: 64,
  });
  router.post(
    '/oauth2/token',
    form,
    tokenRequest,
    routeSubjectToken(deps),
    attestationRateLimit(deps, (res) => res.locals.attestor as string),
    exchangeToken(deps),
  );
  return router;
}
