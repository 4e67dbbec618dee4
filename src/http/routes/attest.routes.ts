// Challenge-response attestation: `POST /v1/attest/challenge` hands out a single-use, short-lived nonce.
import { type RequestHandler, Router } from 'express';
import { z } from 'zod';
import { type Challenge, createChallenge, NAME as X509POP } from '../../../attestors/x509pop/index.ts';
import type { Deps } from '../../deps.ts';
import { WritError } from '../../errors.ts';
import { parseBody, requireJson } from '../middleware.ts';
import { RateLimiter, rateLimited } from '../rate-limit.ts';

const challengeRequestSchema = z.strictObject({ attestor: z.string().min(1).max(64) });

type Issuer = (deps: Deps) => Promise<Challenge>;

/** The challenge-response attestors this build ships, by name; each issues only when it is enabled. */
function challengeIssuers(deps: Deps): Map<string, Issuer> {
  const issuers = new Map<string, Issuer>();
  const x509pop = deps.config.attestors.x509pop;
  if (x509pop !== undefined) issuers.set(X509POP, (d) => createChallenge(d, x509pop));
  return issuers;
}

function challengeAttestor(issuers: Map<string, Issuer>, deps: Deps): RequestHandler {
  return function challengeAttestorStep(_req, res, next) {
    const { attestor } = res.locals.body as { attestor: string };
    if (!deps.attestors.has(attestor)) {
      throw new WritError('ERR_ATTESTOR_UNKNOWN', `no attestor named "${attestor}" is enabled`);
    }
    if (!issuers.has(attestor)) {
      throw new WritError('invalid_request', `attestor: ${attestor} takes no challenge`);
    }
    next();
  };
}

/**
 * Every challenge counts against its source address (nonces cost store space), and an address blocked
 * for the attestor's failures gets no nonce either.
 */
function challengeRateLimit(deps: Deps): RequestHandler {
  const limiter = new RateLimiter(deps);
  return async function challengeRateLimitStep(req, res, next) {
    const { attestor } = res.locals.body as { attestor: string };
    const blocked = await limiter.attestationBlocked(attestor, req.ip);
    if (blocked) throw rateLimited(res, blocked.retryAfter, blocked.limit, deps.metrics);
    const retryAfter = await limiter.challengeRefused(req.ip);
    if (retryAfter !== undefined) throw rateLimited(res, retryAfter, 'challenge', deps.metrics);
    next();
  };
}

function issueChallenge(issuers: Map<string, Issuer>, deps: Deps): RequestHandler {
  return async function issueChallengeStep(_req, res) {
    const { attestor } = res.locals.body as { attestor: string };
    const challenge = await (issuers.get(attestor) as Issuer)(deps);
    res.status(200).set('Cache-Control', 'no-store').json(challenge);
  };
}

export function attestRoutes(deps: Deps): Router {
  const router = Router();
  const issuers = challengeIssuers(deps);
  router.post(
    '/v1/attest/challenge',
    requireJson,
    parseBody(challengeRequestSchema),
    challengeAttestor(issuers, deps),
    challengeRateLimit(deps),
    issueChallenge(issuers, deps),
  );
  return router;
}
