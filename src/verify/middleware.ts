// Express middleware: a Bearer JWT-SVID in, a verified Svid on the request out (RFC 6750 errors otherwise).

import type { Request, RequestHandler, Response } from 'express';
import type { AuthorizeDecision, Authorizer } from './authorizer.ts';
import { isVerifyError, VERIFY_ERRORS, VerifyError } from './errors.ts';
import type { Svid, Verifier, VerifyOptions } from './verifier.ts';

export interface RequireSvidOptions {
  /** This route's audience, instead of the verifier's. */
  audience?: string | readonly string[] | undefined;
  /** Called with every rejected token (logs, metrics). The error never holds the token. */
  onRejected?: ((error: VerifyError, req: Request) => void) | undefined;
  /**
   * Also ask the broker's policy at use time (POST /v1/authorize, cached briefly): a deny answers 403
   * `insufficient_scope`; an unreachable decision point answers 503 (fail closed).
   */
  authorize?:
    | {
        authorizer: Authorizer;
        action: string;
        resource: string | ((req: Request) => string);
        context?: ((req: Request) => Record<string, string | number | boolean>) | undefined;
      }
    | undefined;
}

// RFC 6750 section 2.1: the scheme is case-insensitive, the token is a b64token.
const BEARER_SCHEME = /^bearer +\S/i;
const BEARER = /^bearer +([A-Za-z0-9\-._~+/]+=*) *$/i;

const svids = new WeakMap<Request | Response, Svid>();

/**
 * The SVID that {@link requireSvid} verified for this request (pass `req` or `res`; it is also at
 * `res.locals.svid`). Throws TypeError when the route is not behind `requireSvid`.
 */
export function getSvid(target: Request | Response): Svid {
  const svid = svids.get(target);
  if (svid === undefined)
    throw new TypeError('no verified svid on this request: is the route behind requireSvid()?');
  return svid;
}

function challenge(res: Response, error: string | undefined, description: string): void {
  res.set('WWW-Authenticate', error === undefined ? 'Bearer' : `Bearer error="${error}"`);
  res.status(401).json({ error: 'invalid_token', error_description: description });
}

function reject(res: Response, e: VerifyError): void {
  if (e.temporary) {
    // Fail closed, but say it is the relying party's state, not the token: the client may retry.
    res.set('Retry-After', '1');
    res.status(503).json({ error: 'temporarily_unavailable', error_description: VERIFY_ERRORS[e.code] });
    return;
  }
  challenge(res, 'invalid_token', VERIFY_ERRORS[e.code]);
}

/**
 * Requires `Authorization: Bearer <JWT-SVID>`. On success the verified {@link Svid} is at
 * `res.locals.svid` and `getSvid(req)`. Otherwise: 401 `{error: "invalid_token", error_description}`
 * with `WWW-Authenticate: Bearer error="invalid_token"` (just `Bearer` when no bearer token was sent,
 * as RFC 6750 section 3.1 asks), or 503 `{error: "temporarily_unavailable"}` with `Retry-After` when the
 * verifier cannot decide (revocation feed stale, JWKS unreachable): it fails closed.
 */
export function requireSvid(verifier: Verifier, options: RequireSvidOptions = {}): RequestHandler {
  const { audience } = options;
  if (audience !== undefined) {
    const list: readonly unknown[] = typeof audience === 'string' ? [audience] : audience;
    if (list.length === 0 || list.some((a) => typeof a !== 'string' || a.length === 0)) {
      throw new TypeError('audience must be a non-empty string or a non-empty array of them');
    }
  }
  const verifyOptions: VerifyOptions | undefined = audience === undefined ? undefined : { audience };
  return async function requireSvidStep(req, res, next) {
    const header = req.headers.authorization;
    if (header === undefined || !BEARER_SCHEME.test(header)) {
      challenge(res, undefined, 'a bearer token is required');
      return;
    }
    const token = BEARER.exec(header)?.[1];
    let svid: Svid;
    try {
      if (token === undefined) {
        throw new VerifyError('ERR_TOKEN_MALFORMED', 'the authorization header is not a bearer token');
      }
      svid = await verifier.verify(token, verifyOptions);
    } catch (e) {
      if (!isVerifyError(e)) {
        next(e);
        return;
      }
      options.onRejected?.(e, req);
      reject(res, e);
      return;
    }
    if (options.authorize && token !== undefined) {
      const a = options.authorize;
      let decision: AuthorizeDecision;
      try {
        decision = await a.authorizer.authorize(token, {
          action: a.action,
          resource: typeof a.resource === 'function' ? a.resource(req) : a.resource,
          sourceIp: req.ip,
          context: a.context?.(req),
        });
      } catch (e) {
        if (!isVerifyError(e)) {
          next(e);
          return;
        }
        options.onRejected?.(e, req);
        reject(res, e);
        return;
      }
      if (decision.decision !== 'allow') {
        res.set('WWW-Authenticate', 'Bearer error="insufficient_scope"');
        res.status(403).json({
          error: 'insufficient_scope',
          error_description: 'denied by policy',
          policies: decision.reasons,
        });
        return;
      }
    }
    res.locals.svid = svid;
    svids.set(req, svid);
    svids.set(res, svid);
    next();
  };
}
