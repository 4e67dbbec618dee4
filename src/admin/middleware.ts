// Admin authentication steps for the HTTP layer: requireAdmin (bearer token) and requireOtp (TOTP for privileged
// routes). Both hand errors to the app's one error handler (src/http/middleware.ts errorHandler).
//
// Break-glass: the bootstrap token (WRIT_ADMIN_TOKEN) authenticates as `bootstrap`, which has no TOTP secret.
// It may do privileged operations without a code, so that an operator locked out of every account can still act;
// every use is logged at warn level and audited, and a privileged use is refused (503) when it cannot be audited.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import { type AuditEvent, type AuditLog, secretShape } from '../audit/audit-log.ts';
import { WritError } from '../errors.ts';
import type { Clock } from '../store/types.ts';
import { type AdminAccounts, type AdminPrincipal, BREAK_GLASS_ADMIN, isBreakGlass } from './accounts.ts';
import { adminError } from './errors.ts';

export interface AdminAuthDeps {
  accounts: AdminAccounts;
  logger: Logger;
  clock: Clock;
  /** SHA-256 of the bootstrap token (as Deps.adminTokenHash); absent: no break-glass account. */
  bootstrapTokenHash?: Buffer | undefined;
  audit?: AuditLog | undefined;
}

export const OTP_HEADER = 'X-Writ-OTP';
const BEARER = /^Bearer ([\x21-\x7e]{1,512})$/i;
const WWW_AUTHENTICATE = 'Bearer realm="writ-admin"';

/** The admin of a request that passed requireAdmin. */
export function getAdmin(res: Response): AdminPrincipal {
  const admin: unknown = res.locals.admin;
  if (typeof admin !== 'object' || admin === null || typeof (admin as AdminPrincipal).name !== 'string') {
    throw new TypeError('no admin on this request: mount requireAdmin first');
  }
  return admin as AdminPrincipal;
}

/**
 * Bearer admin token -> res.locals.admin = { name, breakGlass }. The bootstrap token is compared in constant time
 * (both sides SHA-256); an account token is looked up by its SHA-256 (the lookup's timing depends on the hash,
 * not on how much of a token is right). Otherwise 401 ERR_ADMIN_UNAUTHENTICATED with WWW-Authenticate.
 */
export function requireAdmin(deps: AdminAuthDeps): RequestHandler {
  const bootstrap = deps.bootstrapTokenHash;
  if (bootstrap !== undefined && bootstrap.length !== 32) {
    throw new TypeError('bootstrapTokenHash must be a SHA-256 digest (32 bytes)');
  }
  return async function requireAdminStep(req, res, next) {
    try {
      const token = BEARER.exec(req.get('authorization') ?? '')?.[1];
      if (token === undefined) {
        unauthenticated(res, next);
        return;
      }
      if (bootstrap !== undefined && timingSafeEqual(sha256(token), bootstrap)) {
        res.locals.admin = { ...BREAK_GLASS_ADMIN };
        deps.logger.warn(
          { reqId: res.locals.reqId, admin: BREAK_GLASS_ADMIN.name, ...where(req) },
          'break-glass admin token used',
        );
        await auditQuietly(deps, {
          type: 'admin.breakglass.used',
          actor: `admin:${BREAK_GLASS_ADMIN.name}`,
          details: where(req),
        });
        next();
        return;
      }
      const account = await deps.accounts.authenticate(token);
      if (account === null) {
        deps.logger.warn({ reqId: res.locals.reqId, ...where(req) }, 'admin authentication failed');
        await auditQuietly(deps, {
          type: 'admin.login.failed',
          actor: 'anonymous:http',
          decision: 'deny',
          details: { ...where(req), source_ip: req.ip ?? null },
        });
        unauthenticated(res, next);
        return;
      }
      const admin: AdminPrincipal = { name: account.name, breakGlass: false };
      res.locals.admin = admin;
      next();
    } catch (error) {
      next(error);
    }
  };
}

/**
 * For privileged routes, after requireAdmin: the `X-Writ-OTP` header must hold a fresh TOTP code of the admin.
 * Missing: 401 ERR_OTP_REQUIRED (not a failure). Wrong or replayed: 401 ERR_OTP_INVALID (a failure). Locked:
 * 423 ERR_ACCOUNT_LOCKED with Retry-After. The break-glass admin passes without a code, loudly.
 */
export function requireOtp(deps: AdminAuthDeps): RequestHandler {
  return async function requireOtpStep(req, res, next) {
    try {
      const admin = getAdmin(res);
      if (isBreakGlass(admin)) {
        deps.logger.warn(
          { reqId: res.locals.reqId, admin: admin.name, ...where(req) },
          'break-glass admin token used for a privileged operation without TOTP',
        );
        // Fail closed: a privileged break-glass action that cannot be audited does not happen.
        await deps.audit?.append({
          type: 'admin.otp.bypassed',
          actor: `admin:${admin.name}`,
          decision: 'allow',
          details: { ...where(req), reason: 'break_glass' },
        });
        next();
        return;
      }
      const code = req.get(OTP_HEADER)?.trim() ?? '';
      if (code === '') {
        next(adminError('ERR_OTP_REQUIRED'));
        return;
      }
      const now = deps.clock();
      const result = await deps.accounts.verifyOtp(admin.name, code, now);
      if (result.ok) {
        next();
        return;
      }
      const log = { reqId: res.locals.reqId, admin: admin.name, reason: result.reason, ...where(req) };
      const actor = `admin:${admin.name}`;
      switch (result.reason) {
        case 'invalid':
        case 'replayed':
          deps.logger.warn({ ...log, failures: result.failures }, 'admin TOTP refused');
          await auditQuietly(deps, {
            type: 'admin.otp.failed',
            actor,
            decision: 'deny',
            details: { ...where(req), reason: result.reason, failures: result.failures },
          });
          next(adminError('ERR_OTP_INVALID'));
          return;
        case 'locked':
          if (result.lockedNow) {
            deps.logger.warn(
              { ...log, lockedUntil: result.lockedUntil },
              'admin account locked after TOTP failures',
            );
            await auditQuietly(deps, {
              type: 'admin.account.locked',
              actor,
              subject: admin.name,
              decision: 'deny',
              details: { ...where(req), lockedUntil: result.lockedUntil },
            });
          }
          res.set('Retry-After', String(Math.max(1, Math.ceil((result.lockedUntil - now) / 1000))));
          next(adminError('ERR_ACCOUNT_LOCKED'));
          return;
        case 'unknown':
          // disabled since requireAdmin ran
          unauthenticated(res, next);
          return;
      }
    } catch (error) {
      next(error);
    }
  };
}

function unauthenticated(res: Response, next: (error: WritError) => void): void {
  res.set('WWW-Authenticate', WWW_AUTHENTICATE);
  next(new WritError('ERR_ADMIN_UNAUTHENTICATED'));
}

function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/** Method and path of a request, never its query string or body (nor a path that holds something secret). */
function where(req: Request): { method: string; path: string } {
  const path = `${req.baseUrl}${req.path}`.slice(0, 512);
  return { method: req.method.slice(0, 16), path: secretShape(path) === null ? path : '[redacted]' };
}

/** Audits a refusal; an audit failure is logged, not allowed to change the refusal. */
async function auditQuietly(deps: AdminAuthDeps, event: AuditEvent): Promise<void> {
  if (deps.audit === undefined) return;
  try {
    await deps.audit.append(event);
  } catch (err) {
    deps.logger.error({ err, type: event.type }, 'audit append failed');
  }
}
