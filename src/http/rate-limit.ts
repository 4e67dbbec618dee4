// Rate limits on attestation failures, admin authentication failures and challenges, kept in the store.
//
// Failures are counted with the store's fixed-window `countHit`. When a count reaches its limit, a block
// mark is written with `markOnce` that lives until the end of that window. Before any work, a request
// checks its marks with the store's read-only `heldMarks`: every mark that applies in one round trip
// (one MGET in Redis), shared by every replica, writing nothing.
// Successful attempts cost no budget: a busy workload is never limited by its own successes.
import { isIPv6 } from 'node:net';
import type { RequestHandler, Response } from 'express';
import type { Deps } from '../deps.ts';
import { isWritError, WritError } from '../errors.ts';
import { seconds } from '../store/types.ts';

type LimiterDeps = Pick<Deps, 'store' | 'clock' | 'config' | 'logger' | 'metrics'>;

/** Which limit refused a request: the label of `writ_rate_limited_total`. */
export type LimitName = 'attestation_address' | 'attestation_attestor' | 'admin_auth' | 'challenge';

const SCOPE = {
  attestationAddress: 'rl_att_addr',
  attestationAttestor: 'rl_att_all',
  adminAuth: 'rl_admin',
  challenge: 'rl_challenge',
  block: 'rl_block',
} as const;

/**
 * The key of a source address: IPv4 (also IPv4-mapped IPv6) as is; IPv6 by its /64, since one host
 * usually holds a whole /64 and could otherwise change addresses at will.
 */
export function addressKey(ip: string | undefined): string {
  if (!ip) return 'unknown';
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  if (mapped) return mapped[1]!;
  if (!isIPv6(ip)) return ip.slice(0, 64);
  const [head = '', tail = ''] = ip.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  // An embedded IPv4 tail (`::ffff:1.2.3.4`, `64:ff9b::1.2.3.4`) stands for two groups.
  const width = (groups: string[]) => groups.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const groups = ip.includes('::')
    ? [...left, ...Array<string>(Math.max(0, 8 - width(left) - width(right))).fill('0'), ...right]
    : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

function windowEnd(now: number, windowSeconds: number): number {
  return (Math.floor(now / windowSeconds) + 1) * windowSeconds;
}

export class RateLimiter {
  readonly #deps: LimiterDeps;

  constructor(deps: LimiterDeps) {
    this.#deps = deps;
  }

  get #config() {
    return this.#deps.config.rateLimit;
  }

  /** Seconds until `attestor` may be tried again from `ip`, or undefined when it may be tried now. */
  async attestationBlocked(
    attestor: string,
    ip: string | undefined,
  ): Promise<{ retryAfter: number; limit: LimitName } | undefined> {
    if (!this.#config.enabled) return undefined;
    const keys = [`a:${attestor}:${addressKey(ip)}`];
    if (this.#config.attestationFailuresPerAttestor > 0) keys.push(`g:${attestor}`);
    const [address, global] = await this.#blocked(keys);
    if (address !== undefined) return { retryAfter: address, limit: 'attestation_address' };
    if (global !== undefined) return { retryAfter: global, limit: 'attestation_attestor' };
    return undefined;
  }

  /** Counts one failed attestation of `attestor` from `ip`, and blocks what reached its limit. */
  async attestationFailed(attestor: string, ip: string | undefined): Promise<void> {
    if (!this.#config.enabled) return;
    const address = addressKey(ip);
    const { windowSeconds, attestationFailuresPerAddress, attestationFailuresPerAttestor } = this.#config;
    const counts = await Promise.all([
      this.#deps.store.countHit(SCOPE.attestationAddress, `${attestor}:${address}`, windowSeconds),
      attestationFailuresPerAttestor > 0
        ? this.#deps.store.countHit(SCOPE.attestationAttestor, attestor, windowSeconds)
        : 0,
    ]);
    if (counts[0] >= attestationFailuresPerAddress) {
      await this.#block(`a:${attestor}:${address}`, { limit: 'attestation_address', attestor, address });
    }
    if (attestationFailuresPerAttestor > 0 && counts[1] >= attestationFailuresPerAttestor) {
      await this.#block(`g:${attestor}`, { limit: 'attestation_attestor', attestor });
    }
  }

  async adminBlocked(ip: string | undefined): Promise<number | undefined> {
    if (!this.#config.enabled) return undefined;
    const [blocked] = await this.#blocked([`m:${addressKey(ip)}`]);
    return blocked;
  }

  async adminFailed(ip: string | undefined): Promise<void> {
    if (!this.#config.enabled) return;
    const address = addressKey(ip);
    const count = await this.#deps.store.countHit(SCOPE.adminAuth, address, this.#config.windowSeconds);
    if (count >= this.#config.adminAuthFailuresPerAddress) {
      await this.#block(`m:${address}`, { limit: 'admin_auth', address });
    }
  }

  /** Counts a challenge request from `ip`; seconds to wait when it is one too many. */
  async challengeRefused(ip: string | undefined): Promise<number | undefined> {
    if (!this.#config.enabled) return undefined;
    const { windowSeconds, challengesPerAddress } = this.#config;
    const count = await this.#deps.store.countHit(SCOPE.challenge, addressKey(ip), windowSeconds);
    if (count <= challengesPerAddress) return undefined;
    const now = seconds(this.#deps.clock);
    return windowEnd(now, windowSeconds) - now;
  }

  /** For each key, seconds left of its live block, or undefined; one read, nothing written. */
  async #blocked(keys: string[]): Promise<(number | undefined)[]> {
    const held = await this.#deps.store.heldMarks(SCOPE.block, keys);
    const now = seconds(this.#deps.clock);
    // A block lives until the end of the window it was set in, which is the current one while it lives.
    return held.map((h) => (h ? windowEnd(now, this.#config.windowSeconds) - now : undefined));
  }

  async #block(
    key: string,
    fields: { limit: LimitName; attestor?: string; address?: string },
  ): Promise<void> {
    const now = seconds(this.#deps.clock);
    const until = windowEnd(now, this.#config.windowSeconds);
    if (await this.#deps.store.markOnce(SCOPE.block, key, until)) {
      this.#deps.logger.warn({ ...fields, until }, 'rate limit reached; blocking until the window ends');
    }
  }
}

/** The 429 answer: `Retry-After` set on the response, the error to throw. */
export function rateLimited(
  res: Response,
  retryAfter: number,
  limit: LimitName,
  metrics: Deps['metrics'],
): WritError {
  metrics.rateLimited.inc({ limit });
  res.setHeader('Retry-After', String(Math.max(1, retryAfter))); // node:http's call: also runs without express
  return new WritError(
    'ERR_RATE_LIMITED',
    `too many failures; retry after ${Math.max(1, retryAfter)} seconds`,
  );
}

/**
 * Refuses, before any attestation work, an attestation request for an attestor that its source address
 * (or everyone) has failed too often in this window. Unknown attestors are left to the pipeline (400).
 */
export function attestationRateLimit(deps: Deps, attestorOf: (res: Response) => string): RequestHandler {
  const limiter = new RateLimiter(deps);
  return async function attestationRateLimitStep(req, res, next) {
    const attestor = attestorOf(res);
    if (!deps.attestors.has(attestor)) {
      next();
      return;
    }
    const blocked = await limiter.attestationBlocked(attestor, req.ip);
    if (blocked) throw rateLimited(res, blocked.retryAfter, blocked.limit, deps.metrics);
    next();
  };
}

/**
 * Counts `error` against the source address and the attestor when it is an attestation failure. Never
 * throws: the caller is already answering with `error`, and a store outage must not replace it.
 */
export async function noteAttestationFailure(
  deps: LimiterDeps & Pick<Deps, 'attestors'>,
  attestor: string,
  ip: string | undefined,
  error: unknown,
): Promise<void> {
  if (!isWritError(error) || error.code !== 'ERR_ATTESTATION_FAILED' || !deps.attestors.has(attestor)) return;
  try {
    await new RateLimiter(deps).attestationFailed(attestor, ip);
  } catch (err) {
    deps.logger.warn({ err, attestor }, 'could not count an attestation failure');
  }
}

/** For the admin authentication step: throws 429 while `ip` is blocked. */
export async function enforceAdminAuthLimit(
  deps: LimiterDeps,
  ip: string | undefined,
  res: Response,
): Promise<void> {
  const retryAfter = await new RateLimiter(deps).adminBlocked(ip);
  if (retryAfter !== undefined) throw rateLimited(res, retryAfter, 'admin_auth', deps.metrics);
}

/** For the admin authentication step: counts a failure; never throws (see noteAttestationFailure). */
export async function noteAdminAuthFailure(deps: LimiterDeps, ip: string | undefined): Promise<void> {
  try {
    await new RateLimiter(deps).adminFailed(ip);
  } catch (err) {
    deps.logger.warn({ err }, 'could not count an admin authentication failure');
  }
}
