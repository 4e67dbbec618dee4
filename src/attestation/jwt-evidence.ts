// Verification of JWT evidence (CI OIDC tokens, Kubernetes projected tokens) shared by the token attestors.
import { createHash } from 'node:crypto';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  decodeJwt,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { z } from 'zod';
import { WritError } from '../errors.ts';
import { seconds } from '../store/types.ts';
import { SELECTOR_PATTERN } from './selectors.ts';
import { AttestationError, type AttestorHost } from './types.ts';

/** Asymmetric algorithms only: `none` and HMAC (HS*) can never be configured, so never accepted. */
export const EVIDENCE_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
] as const;
export type EvidenceAlgorithm = (typeof EVIDENCE_ALGORITHMS)[number];

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** https, or plain http on a loopback address (local tests and sidecars); no credentials or fragment. */
export function isSecureUrl(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.username || url.password || url.hash || url.search) return false;
  if (url.protocol === 'https:') return true;
  return url.protocol === 'http:' && LOOPBACK_HOSTS.has(url.hostname);
}

export const secureUrlSchema = z
  .string()
  .max(2048)
  .refine(
    isSecureUrl,
    'must be an https:// URL (http:// only on a loopback address), without query or fragment',
  );

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

const publicJwkSchema = z
  .looseObject({
    kty: z.string().refine((k) => k === 'RSA' || k === 'EC', 'only RSA and EC public keys'),
    kid: z.string().max(256).optional(),
    alg: z.string().max(16).optional(),
    use: z.string().max(16).optional(),
  })
  .refine(
    (jwk) => PRIVATE_JWK_MEMBERS.every((m) => !(m in jwk)),
    'a JWKS here holds public keys only (no d, p, q, k ... members)',
  );

export const jwksSchema = z
  .strictObject({ keys: z.array(publicJwkSchema).min(1).max(64) })
  .describe('An inline JWKS (public RSA or EC keys), for issuers whose JWKS URL is not reachable.');

export const algorithmsSchema = z
  .array(z.enum(EVIDENCE_ALGORITHMS))
  .min(1)
  .refine((a) => new Set(a).size === a.length, 'algorithms must be distinct');

export const clockSkewSchema = z
  .number()
  .int()
  .min(0)
  .max(300)
  .default(30)
  .describe('Leeway for exp, nbf and iat, seconds.');

export const maxTokenLifetimeSchema = z
  .number()
  .int()
  .min(60)
  .max(366 * 86_400)
  .default(86_400)
  .describe('Tokens whose exp - iat exceeds this are refused, seconds.');

export const evidenceTokenSchema = z.strictObject({ token: z.string().min(1).max(16_384) });

/** Parses `{token}` evidence or fails the attestation with a message that names the expected shape. */
export function parseTokenEvidence(evidence: unknown): string {
  const parsed = evidenceTokenSchema.safeParse(evidence);
  if (!parsed.success) throw new AttestationError('evidence must be {"token": "<JWT>"}');
  return parsed.data.token;
}

/**
 * The `iss` of a JWT, unverified. Only for choosing which issuer's keys to verify it with (or which attestor
 * to route a token exchange to); never a fact about the workload.
 */
export function unverifiedClaims(token: string): JWTPayload | undefined {
  try {
    return decodeJwt(token);
  } catch {
    return undefined;
  }
}

export function unverifiedIssuer(token: string): string | undefined {
  const iss = unverifiedClaims(token)?.iss;
  return typeof iss === 'string' ? iss : undefined;
}

export interface JwtEvidenceOptions {
  /** The attestor's name, for log lines and 503 messages. */
  attestor: string;
  issuer: string;
  audience: string;
  jwksUri?: string | undefined;
  jwks?: JSONWebKeySet | undefined;
  algorithms: readonly EvidenceAlgorithm[];
  clockSkew: number;
  maxTokenLifetime: number;
  /** Accept each token (its jti, else its hash) once while it is valid. */
  singleUse: boolean;
  /** Store scope of the replay guard, `^[a-z0-9_]{1,32}$`. */
  replayScope: string;
  /** Bound on each JWKS or discovery fetch, ms. */
  fetchTimeoutMs?: number | undefined;
}

export type VerifiedClaims = JWTPayload & { iss: string; exp: number; iat: number };

export interface VerifiedJwt {
  claims: VerifiedClaims;
  /** What the replay guard records: a hash of the issuer and the jti (or of the whole token). */
  replayKey: string;
}

/** The reason given when no key of the issuer verifies the signature. */
export const REASON_BAD_SIGNATURE = 'the token signature is invalid';

/** The keys could not be fetched: not the workload's fault, so 503 rather than 401. */
class KeysUnavailable extends Error {}

const DISCOVERY_RETRY_MS = 5_000;

/**
 * Verifies JWTs of one issuer: signature by the issuer's keys (a remote JWKS cached by jose, found by OIDC
 * discovery when no jwksUri is given, or an inline JWKS), an algorithm allow-list, iss, aud, exp/nbf/iat with
 * a small leeway, a cap on the token's lifetime, and an optional single-use guard.
 */
export class JwtEvidenceVerifier {
  readonly issuer: string;
  readonly #opts: JwtEvidenceOptions;
  readonly #host: AttestorHost;
  readonly #timeoutMs: number;
  #keys: JWTVerifyGetKey | undefined;
  #discovery: Promise<JWTVerifyGetKey> | undefined;
  #discoveryFailedAt = 0;

  constructor(opts: JwtEvidenceOptions, host: AttestorHost) {
    this.issuer = opts.issuer;
    this.#opts = opts;
    this.#host = host;
    this.#timeoutMs = opts.fetchTimeoutMs ?? 3_000;
    if (opts.jwks) this.#keys = createLocalJWKSet(opts.jwks);
    else if (opts.jwksUri) this.#keys = this.#remote(opts.jwksUri);
  }

  /** Signature and claims; throws AttestationError (401) or WritError ERR_ATTESTOR_UNAVAILABLE (503). */
  async verify(token: string): Promise<VerifiedJwt> {
    const o = this.#opts;
    const now = seconds(this.#host.clock);
    let payload: JWTPayload;
    try {
      const getKey = await this.#keySet();
      ({ payload } = await jwtVerify(token, guardFetch(getKey), {
        algorithms: [...o.algorithms],
        issuer: o.issuer,
        audience: o.audience,
        requiredClaims: ['iss', 'aud', 'exp', 'iat'],
        currentDate: new Date(now * 1000),
        clockTolerance: o.clockSkew,
      }));
    } catch (e) {
      if (e instanceof KeysUnavailable) {
        this.#host.logger.warn(
          { attestor: o.attestor, issuer: o.issuer, err: e.cause },
          'the issuer keys could not be fetched',
        );
        throw new WritError(
          'ERR_ATTESTOR_UNAVAILABLE',
          `${o.attestor}: the issuer's keys could not be fetched`,
        );
      }
      throw new AttestationError(reasonOf(e), { cause: e });
    }
    const { exp, iat } = payload as { exp: number; iat: number };
    if (iat > now + o.clockSkew) throw new AttestationError('the token is issued in the future');
    if (exp - iat > o.maxTokenLifetime) throw new AttestationError('the token lives longer than allowed');
    const jti = payload.jti;
    // Without a jti the token is recognised by its signing input (header.payload): it is covered by the
    // signature, so unlike the signature's own encoding (whitespace, unused base64url bits) it cannot be
    // re-spelled into a "new" token that still verifies.
    const signingInput = token.slice(0, token.lastIndexOf('.'));
    const replayKey = createHash('sha256')
      .update(o.issuer)
      .update('\n')
      .update(typeof jti === 'string' && jti !== '' ? `jti:${jti}` : `input:${signingInput}`)
      .digest('base64url');
    return { claims: payload as VerifiedClaims, replayKey };
  }

  /**
   * The replay guard: when single-use, records the token until it expires and refuses it the second time.
   * Call it last, once everything else about the token has been checked.
   */
  async consume(verified: VerifiedJwt): Promise<void> {
    if (!this.#opts.singleUse) return;
    const until = verified.claims.exp + this.#opts.clockSkew;
    const first = await this.#host.store.markOnce(this.#opts.replayScope, verified.replayKey, until);
    if (!first) throw new AttestationError('the token was already used');
  }

  #remote(uri: string): JWTVerifyGetKey {
    return createRemoteJWKSet(new URL(uri), {
      timeoutDuration: this.#timeoutMs,
      cooldownDuration: 30_000,
      cacheMaxAge: 600_000,
    });
  }

  // Discovery is shared by concurrent attestations, so no single request's signal may abort it.
  async #keySet(): Promise<JWTVerifyGetKey> {
    if (this.#keys) return this.#keys;
    if (Date.now() - this.#discoveryFailedAt < DISCOVERY_RETRY_MS) {
      throw new KeysUnavailable('discovery failed recently');
    }
    this.#discovery ??= this.#discover().then(
      (keys) => {
        this.#keys = keys;
        return keys;
      },
      (cause: unknown) => {
        this.#discovery = undefined;
        this.#discoveryFailedAt = Date.now();
        throw cause instanceof KeysUnavailable ? cause : new KeysUnavailable('discovery failed', { cause });
      },
    );
    return this.#discovery;
  }

  /** OpenID Connect Discovery 1.0: `<issuer>/.well-known/openid-configuration`, whose `issuer` must match. */
  async #discover(): Promise<JWTVerifyGetKey> {
    const url = `${this.#opts.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    const res = await fetch(url, {
      headers: { accept: 'application/json' },
      redirect: 'manual',
      signal: AbortSignal.timeout(this.#timeoutMs),
    });
    if (res.status !== 200) throw new KeysUnavailable(`discovery answered ${res.status}`);
    const doc = discoverySchema.safeParse(await res.json());
    if (!doc.success) throw new KeysUnavailable('the discovery document is invalid');
    if (doc.data.issuer !== this.#opts.issuer)
      throw new KeysUnavailable('the discovery document names another issuer');
    if (!isSecureUrl(doc.data.jwks_uri))
      throw new KeysUnavailable('the discovered jwks_uri is not an https URL');
    return this.#remote(doc.data.jwks_uri);
  }
}

const discoverySchema = z.looseObject({ issuer: z.string(), jwks_uri: z.string() });

/** Errors of fetching the keys become KeysUnavailable; errors about the token itself pass through. */
function guardFetch(getKey: JWTVerifyGetKey): JWTVerifyGetKey {
  return async (header, token) => {
    try {
      return await getKey(header, token);
    } catch (e) {
      if (
        e instanceof errors.JWKSNoMatchingKey ||
        e instanceof errors.JWKSMultipleMatchingKeys ||
        e instanceof errors.JOSENotSupported ||
        e instanceof errors.JOSEAlgNotAllowed
      ) {
        throw e;
      }
      throw new KeysUnavailable('the JWKS could not be fetched', { cause: e });
    }
  };
}

/** A safe, lowercase reason for each way a token fails; never library text. */
function reasonOf(e: unknown): string {
  if (e instanceof errors.JWTExpired) return 'the token has expired';
  if (e instanceof errors.JWTClaimValidationFailed) {
    if (e.reason === 'missing') return `the token lacks the ${e.claim} claim`;
    switch (e.claim) {
      case 'iss':
        return 'the token issuer is not accepted';
      case 'aud':
        return 'the token audience is not accepted';
      case 'nbf':
        return 'the token is not yet valid';
      default:
        return `the token ${e.claim} claim is invalid`;
    }
  }
  if (e instanceof errors.JOSEAlgNotAllowed) return 'the token algorithm is not allowed';
  if (e instanceof errors.JWSSignatureVerificationFailed || e instanceof errors.JWKSNoMatchingKey) {
    return REASON_BAD_SIGNATURE;
  }
  if (
    e instanceof errors.JWSInvalid ||
    e instanceof errors.JWTInvalid ||
    e instanceof errors.JOSENotSupported
  ) {
    return 'the token is malformed';
  }
  return 'the token is invalid';
}

// ---- claim helpers for attestors ----

/** A string claim: undefined when absent or empty; any other type fails the attestation. */
export function stringClaim(claims: JWTPayload, name: string): string | undefined {
  const value = claims[name];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new AttestationError(`the token's ${name} claim must be a string`);
  return value;
}

export function requiredStringClaim(claims: JWTPayload, name: string): string {
  const value = stringClaim(claims, name);
  if (value === undefined) throw new AttestationError(`the token lacks the ${name} claim`);
  return value;
}

/** `<attestor>:<key>:<value>`, or a failed attestation when the value cannot be a selector value. */
export function selector(attestor: string, key: string, value: string, claim: string = key): string {
  const s = `${attestor}:${key}:${value}`;
  if (s.length > 2200 || !SELECTOR_PATTERN.test(s)) {
    throw new AttestationError(`the token's ${claim} claim is not a valid selector value`);
  }
  return s;
}
