// Middleware steps shared by the routes: body parsing, admin auth, request logs, the one error handler.
import { createHash, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { ErrorRequestHandler, NextFunction, Request, RequestHandler, Response } from 'express';
import type { z } from 'zod';
import { type AdminAuthDeps, requireAdmin, requireOtp } from '../admin/middleware.ts';
import type { Deps } from '../deps.ts';
import { ERRORS, isWritError, WritError } from '../errors.ts';
import { enforceAdminAuthLimit, noteAdminAuthFailure } from './rate-limit.ts';

export function sha256(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/**
 * Which bodies the JSON parser reads: `application/json` in UTF-8 (or with no charset), nothing else.
 * Other charsets (UTF-7, UTF-16) would let a body slip past an inspecting proxy.
 */
export function isJsonBody(req: IncomingMessage): boolean {
  const header = req.headers['content-type'];
  if (typeof header !== 'string') return false;
  const [type = '', ...params] = header.split(';');
  if (type.trim().toLowerCase() !== 'application/json') return false;
  for (const param of params) {
    const [name = '', value = ''] = param.split('=');
    if (name.trim().toLowerCase() !== 'charset') continue;
    if (!/^"?utf-?8"?$/i.test(value.trim())) return false;
  }
  return true;
}

/** Refuses a body that is not UTF-8 JSON before any step reads it. */
export const requireJson: RequestHandler = function requireJson(req, _res, next) {
  if (!isJsonBody(req)) {
    next(new WritError('ERR_UNSUPPORTED_MEDIA_TYPE'));
    return;
  }
  next();
};

/**
 * Validates `req.body` with a strict zod schema; the first problems are named, values never echoed. `common`
 * may accept the most frequent shape of body by hand first (it must accept only what the schema accepts, and
 * give what the schema would); anything it does not accept goes to the schema.
 */
export function parseBody<S extends z.ZodType>(
  schema: S,
  common?: (body: unknown) => z.infer<S> | undefined,
): RequestHandler {
  return function parseBodyStep(req, res, next) {
    const accepted = common?.(req.body);
    if (accepted !== undefined) {
      res.locals.body = accepted;
      next();
      return;
    }
    const result = schema.safeParse(req.body);
    if (!result.success) {
      next(invalidRequest(result.error));
      return;
    }
    res.locals.body = result.data;
    next();
  };
}

export function invalidRequest(error: z.ZodError): WritError {
  const spiffe = error.issues.find((i) => i.path.some((p) => String(p).toLowerCase().includes('spiffeid')));
  const describe = (i: z.core.$ZodIssue): string => {
    const path = i.path.map(String).join('.') || 'body';
    if (i.code === 'unrecognized_keys')
      return `${path}: unknown field(s) ${i.keys.map((k) => k.slice(0, 64)).join(', ')}`;
    return `${path}: ${i.message}`;
  };
  const detail = error.issues.slice(0, 5).map(describe).join('; ');
  if (spiffe && spiffe.code === 'custom') return new WritError('ERR_SPIFFE_ID_INVALID', describe(spiffe));
  return new WritError('invalid_request', detail);
}

/**
 * The bootstrap admin bearer token, compared in constant time (both sides hashed to a fixed length).
 * An address with too many failures in the window gets 429 before its token is even looked at.
 */
export function adminAuth(deps: Deps): RequestHandler {
  const authenticate = requireAdmin(adminAuthDeps(deps));
  return async function adminAuthStep(req, res, next) {
    await enforceAdminAuthLimit(deps, req.ip, res);
    await authenticate(req, res, (err?: unknown) => {
      if (err === undefined) {
        next();
        return;
      }
      const counted = isWritError(err) && err.code === 'ERR_ADMIN_UNAUTHENTICATED';
      (counted ? noteAdminAuthFailure(deps, req.ip) : Promise.resolve()).then(
        () => next(err),
        () => next(err),
      );
    });
  };
}

/** A fresh TOTP code for privileged operations (after adminAuth). */
export function adminOtp(deps: Deps): RequestHandler {
  return requireOtp(adminAuthDeps(deps));
}

function adminAuthDeps(deps: Deps): AdminAuthDeps {
  return {
    accounts: deps.accounts,
    logger: deps.logger,
    clock: deps.clock,
    bootstrapTokenHash: deps.adminTokenHash,
    audit: deps.audit,
  };
}

/** One structured log line per request: no query strings, no bodies, no headers. */
export function requestLog(deps: Deps): RequestHandler {
  return function requestLogStep(req, res, next) {
    const start = process.hrtime.bigint();
    const reqId = randomUUID();
    res.locals.reqId = reqId;
    res.setHeader('X-Request-Id', reqId);
    res.on('finish', () => {
      // The issuance lane (no express router) names its route in locals.
      const route =
        (res.locals.route as string | undefined) ?? (req.route?.path as string | undefined) ?? 'unmatched';
      deps.metrics.httpRequests.inc({ route, method: req.method, status: String(res.statusCode) });
      if (!deps.logger.isLevelEnabled('info')) return;
      const ms = Number(process.hrtime.bigint() - start) / 1e6;
      deps.logger.info(
        { reqId, method: req.method, route, status: res.statusCode, ms: Math.round(ms * 100) / 100 },
        'request',
      );
    });
    next();
  };
}

export const notFound: RequestHandler = function notFound(_req, _res, next) {
  next(new WritError('ERR_NOT_FOUND'));
};

interface BodyParserError {
  type?: string;
  status?: number;
}

/** Maps every error to the wire shape; only registered codes and their safe details leave the broker. */
export function errorHandler(deps: Deps): ErrorRequestHandler {
  return function errorHandlerStep(err: unknown, _req: Request, res: Response, _next: NextFunction) {
    let error: WritError;
    if (isWritError(err)) {
      error = err;
    } else {
      const bp = err as BodyParserError;
      if (bp?.type === 'entity.too.large') error = new WritError('ERR_BODY_TOO_LARGE');
      else if (bp?.type === 'entity.parse.failed')
        error = new WritError('invalid_request', 'the body is not valid JSON');
      else if (bp?.type === 'encoding.unsupported' || bp?.type === 'charset.unsupported') {
        error = new WritError('ERR_UNSUPPORTED_MEDIA_TYPE', 'unsupported body encoding');
      } else if (typeof bp?.status === 'number' && bp.status >= 400 && bp.status < 500) {
        error = new WritError('invalid_request');
      } else error = new WritError('server_error', undefined, { cause: err });
    }
    if (error.status >= 500) {
      deps.logger.error(
        { reqId: res.locals.reqId, code: error.code, err: error.cause ?? error },
        'request failed',
      );
    }
    if (res.headersSent) return;
    // node:http's own calls: this step also runs without express (the issuance lane).
    res.statusCode = error.status;
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.end(JSON.stringify(error.toJSON()));
  };
}

export { ERRORS };
