// Verifies Writ JWT-SVIDs locally (jose + the broker's JWKS) and rejects revoked ones from the live feed.
import {
  type CryptoKey,
  errors,
  type FlattenedJWSInput,
  type JWSHeaderParameters,
  type JWTPayload,
  type JWTVerifyResult,
  jwtVerify,
} from 'jose';
import { parseTrustDomain, validateSpiffeId } from '../spiffe/spiffe-id.ts';
import { VerifyError } from './errors.ts';
import { JwksCache, jwksUnavailable } from './jwks-cache.ts';
import { type FeedStatus, RevocationFeed, type VerifierLogger } from './revocation-feed.ts';
import { MAX_CREDENTIAL_LIFETIME, type RevocationEvent, RevocationSet } from './revocation-set.ts';

/** The algorithms the SPIFFE JWT-SVID standard allows. `none`, HMAC and EdDSA can never be enabled. */
export const JWT_SVID_ALGORITHMS = [
  'ES256',
  'ES384',
  'ES512',
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
] as const;
export type JwtSvidAlgorithm = (typeof JWT_SVID_ALGORITHMS)[number];
/** The algorithms a Writ broker can sign with. */
export const DEFAULT_ALGORITHMS: readonly JwtSvidAlgorithm[] = ['ES256', 'ES384', 'RS256', 'PS256'];

export interface VerifierOptions {
  /** The broker's issuer URL: the `iss` every token must carry, and the base of the JWKS and feed URLs. */
  issuer: string;
  /** The audience this relying party answers to; a token's `aud` must contain it (or one of them). */
  audience: string | readonly string[];
  /** When set, `sub` must be a SPIFFE ID in this trust domain (`example.org` or `spiffe://example.org`). */
  trustDomain?: string | undefined;
  /** Allow-list of `alg` values. Default {@link DEFAULT_ALGORITHMS}. */
  algorithms?: readonly JwtSvidAlgorithm[] | undefined;
  /** Default `${issuer}/.well-known/jwks.json`. */
  jwksUri?: string | undefined;
  /** Allow plain http:// URLs to hosts other than loopback (never in production). Default false. */
  allowInsecureHttp?: boolean | undefined;
  /** Default `${issuer}/v1/revocations/stream`. */
  revocationStreamUrl?: string | undefined;
  /**
   * Default true. `false` is signature-only mode: revocations are not seen and a revoked token passes
   * until it expires. An explicit opt-out, for relying parties that accept that.
   */
  revocationFeed?: boolean | undefined;
  /** Fail closed when the feed has sent nothing (heartbeats included) for longer. Default 30 000. */
  maxStalenessMs?: number | undefined;
  /** How long `start()` waits for the feed's first `ready` and the JWKS. Default 10 000. */
  startTimeoutMs?: number | undefined;
  /** Allowed clock skew for `exp`, `nbf` and `iat`, seconds. Default 5. */
  clockToleranceSec?: number | undefined;
  jwks?:
    | {
        /**
         * Minimum time between refetches triggered by an unknown `kid`, from the end of the last fetch
         * (successful or not). Default 30 000.
         */
        cooldownMs?: number | undefined;
        /** Refetch the JWKS when it is older; past it, no key verifies until a fetch succeeds. Default 600 000. */
        cacheMaxAgeMs?: number | undefined;
        /** Timeout of one JWKS request. Default 5 000. */
        timeoutMs?: number | undefined;
      }
    | undefined;
  /** Cap of the feed's reconnection backoff (before jitter). Default 30 000. */
  maxReconnectDelayMs?: number | undefined;
  /** Used for the JWKS and the feed. Default the global `fetch`. */
  fetch?: typeof fetch | undefined;
  /** Epoch milliseconds, for token times, feed staleness and the JWKS cache. Default `Date.now`. */
  now?: (() => number) | undefined;
  logger?: VerifierLogger | undefined;
  /** Called for every revocation event the feed applies (after it is applied). */
  onRevocation?: ((event: RevocationEvent) => void) | undefined;
}

export interface VerifyOptions {
  /** Overrides the verifier's audience for this call (e.g. one route's own audience). */
  audience?: string | readonly string[] | undefined;
}

/** A verified JWT-SVID. */
export interface Svid {
  /** `sub`. */
  readonly spiffeId: string;
  readonly trustDomain: string;
  /** `aud`, always as an array. */
  readonly audience: readonly string[];
  /** `exp`, epoch seconds. */
  readonly expiresAt: number;
  /** `iat`, epoch seconds. */
  readonly issuedAt: number;
  readonly jti: string;
  /** The task the credential belongs to; when it ends, the credential is revoked. */
  readonly task: string;
  /** The signing key's id. */
  readonly kid: string;
  /** Every claim, as signed. */
  readonly claims: Readonly<JWTPayload>;
}

export interface VerifierStatus {
  /** Whether `verify()` currently relies on a current feed; false in signature-only mode. */
  revocationFeed: boolean;
  /** Whether `verify()` would get past the staleness check now (always true in signature-only mode). */
  current: boolean;
  /** Feed details; null in signature-only mode. */
  feed: FeedStatus | null;
}

export interface Verifier {
  /**
   * Fetches the JWKS and connects the revocation feed; resolves once the feed has caught up (its first
   * `ready`). Rejects with `ERR_FEED_STALE` after `startTimeoutMs` (the feed keeps trying in the
   * background; `close()` stops it) or `ERR_JWKS_UNAVAILABLE`. Until it resolves, `verify()` fails closed.
   */
  start(): Promise<void>;
  /**
   * Verifies a compact JWT-SVID: signature with an allowed algorithm and a key of the JWKS named by its
   * `kid`, `typ: JWT`, `iss`, `aud`, `exp`/`nbf`/`iat`, `sub` a SPIFFE ID, `jti` and `task` present; then
   * that the credential and its task are not revoked. Throws {@link VerifyError}.
   */
  verify(token: string, options?: VerifyOptions): Promise<Svid>;
  /** Synchronous revocation lookup by credential id (jti or X.509 serial in hex) or task; O(1). */
  isRevoked(ref: { credential?: string | undefined; task?: string | undefined }): boolean;
  status(): VerifierStatus;
  /** Stops the feed and every timer; afterwards `verify()` fails with `ERR_FEED_STALE`. Idempotent. */
  close(): void;
}

const REQUIRED_CLAIMS = ['sub', 'aud', 'exp', 'iat', 'jti', 'iss', 'task'];
/** JWT-SVIDs are a few hundred bytes; this bounds the work an oversized header can cause. */
const MAX_TOKEN_LENGTH = 16_384;
const SPIFFE_SCHEME = 'spiffe://';
const SUBJECT_MEMO_ENTRIES = 1024;

type GetKey = (header: JWSHeaderParameters, token: FlattenedJWSInput) => CryptoKey | Promise<CryptoKey>;

function positive(name: string, value: number | undefined, fallback: number, allowZero = false): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value < 0 || (!allowZero && value === 0)) {
    throw new TypeError(`${name} must be a ${allowZero ? 'non-negative' : 'positive'} number`);
  }
  return value;
}

function audienceList(name: string, value: string | readonly string[]): string[] {
  const list = typeof value === 'string' ? [value] : Array.isArray(value) ? [...value] : [];
  if (list.length === 0 || list.some((a) => typeof a !== 'string' || a.length === 0)) {
    throw new TypeError(`${name} must be a non-empty string or a non-empty array of them`);
  }
  return list;
}

const LOOPBACK = new Set(['localhost', '127.0.0.1', '[::1]']);

/**
 * Keys and revocations must come over TLS: over plain HTTP an intermediary could swap keys or drop events
 * while keeping heartbeats. Plain HTTP is allowed to loopback (dev mode) or with `allowInsecureHttp`.
 */
export function url(name: string, value: string, allowInsecureHttp = false): string {
  let parsed: URL;
  try {
    parsed = new URL(value);
  } catch {
    throw new TypeError(`${name} must be an absolute URL`);
  }
  if (parsed.protocol === 'https:') return parsed.href;
  if (parsed.protocol === 'http:' && (allowInsecureHttp || LOOPBACK.has(parsed.hostname))) return parsed.href;
  throw new TypeError(`${name} must be an https URL (plain http only to loopback or with allowInsecureHttp)`);
}

function claimError(e: errors.JWTClaimValidationFailed): VerifyError {
  const claim = e.claim;
  if (claim === 'typ') return new VerifyError('ERR_TOKEN_INVALID', 'the "typ" header is not JWT', { claim });
  const what = e.reason === 'missing' ? 'is missing' : 'check failed';
  return new VerifyError('ERR_TOKEN_INVALID', `the "${claim}" claim ${what}`, { claim });
}

/** jose errors to stable codes; jose's text is not passed on (it would be a format oracle). */
function toVerifyError(e: unknown): unknown {
  if (e instanceof VerifyError) return e;
  if (e instanceof errors.JWTExpired) {
    return new VerifyError('ERR_TOKEN_EXPIRED', undefined, { claim: 'exp' });
  }
  if (e instanceof errors.JWTClaimValidationFailed) return claimError(e);
  if (e instanceof errors.JWSSignatureVerificationFailed) {
    return new VerifyError('ERR_TOKEN_INVALID', 'signature verification failed');
  }
  if (e instanceof errors.JOSEAlgNotAllowed) {
    return new VerifyError('ERR_TOKEN_INVALID', 'the "alg" is not allowed', { claim: 'alg' });
  }
  if (e instanceof errors.JWKSNoMatchingKey) {
    return new VerifyError('ERR_TOKEN_INVALID', 'no key of the jwks matches the token', { claim: 'kid' });
  }
  if (e instanceof errors.JWKSMultipleMatchingKeys) {
    return new VerifyError('ERR_TOKEN_INVALID', 'several keys of the jwks match the token', { claim: 'kid' });
  }
  // A JWKS of the wrong shape, or a member that does not import: the keys, not the token, are at fault.
  if (e instanceof errors.JWKSInvalid || e instanceof errors.JWKInvalid || e instanceof errors.JWKSTimeout) {
    return jwksUnavailable(e);
  }
  if (e instanceof errors.JWSInvalid || e instanceof errors.JWTInvalid) {
    return new VerifyError('ERR_TOKEN_MALFORMED');
  }
  if (e instanceof errors.JOSEError) return new VerifyError('ERR_TOKEN_INVALID');
  return e; // not about the token: a bug or a caller mistake, surfaced as is
}

function invalid(claim: string, message: string): VerifyError {
  return new VerifyError('ERR_TOKEN_INVALID', message, { claim });
}

class JwtSvidVerifier implements Verifier {
  readonly #issuer: string;
  readonly #audience: string[];
  readonly #algorithms: JwtSvidAlgorithm[];
  readonly #trustDomain: string | undefined;
  readonly #clockTolerance: number;
  readonly #startTimeoutMs: number;
  readonly #now: () => number;
  readonly #jwks: JwksCache;
  readonly #getKey: GetKey;
  readonly #revocations = new RevocationSet();
  /** Valid SPIFFE IDs seen in verified tokens -> their trust domain. */
  readonly #subjects = new Map<string, string>();
  readonly #feed: RevocationFeed | undefined;
  #started: Promise<void> | undefined;
  #closed = false;

  constructor(o: VerifierOptions) {
    if (typeof o !== 'object' || o === null) throw new TypeError('options are required');
    if (typeof o.issuer !== 'string' || o.issuer.length === 0) throw new TypeError('issuer is required');
    const base = url('issuer', o.issuer).replace(/\/+$/, '');
    // Kept exactly as given: `iss` is compared byte for byte.
    this.#issuer = o.issuer;
    this.#audience = audienceList('audience', o.audience);
    const algorithms = o.algorithms === undefined ? [...DEFAULT_ALGORITHMS] : [...o.algorithms];
    const allowed: readonly string[] = JWT_SVID_ALGORITHMS;
    const refused = algorithms.find((a) => !allowed.includes(a));
    if (algorithms.length === 0 || refused !== undefined) {
      throw new TypeError(
        `algorithms must be a non-empty subset of ${JWT_SVID_ALGORITHMS.join(', ')}` +
          (refused === undefined ? '' : ` (got ${String(refused).slice(0, 16)})`),
      );
    }
    this.#algorithms = algorithms;
    if (o.trustDomain !== undefined) {
      try {
        this.#trustDomain = parseTrustDomain(o.trustDomain);
      } catch (cause) {
        throw new TypeError('trustDomain is not a valid SPIFFE trust domain', { cause });
      }
    }
    this.#clockTolerance = positive('clockToleranceSec', o.clockToleranceSec, 5, true);
    this.#startTimeoutMs = positive('startTimeoutMs', o.startTimeoutMs, 10_000);
    this.#now = o.now ?? Date.now;
    const fetchImpl = o.fetch ?? globalThis.fetch;

    this.#jwks = new JwksCache({
      url: url('jwksUri', o.jwksUri ?? `${base}/.well-known/jwks.json`, o.allowInsecureHttp),
      fetch: fetchImpl,
      algorithms,
      cooldownMs: positive('jwks.cooldownMs', o.jwks?.cooldownMs, 30_000, true),
      cacheMaxAgeMs: positive('jwks.cacheMaxAgeMs', o.jwks?.cacheMaxAgeMs, 600_000),
      timeoutMs: Math.ceil(positive('jwks.timeoutMs', o.jwks?.timeoutMs, 5_000)),
      now: this.#now,
    });
    const jwks = this.#jwks;
    // Not async, and no await of its own: this sits on every verification's path. jose has already checked
    // `alg` against the allow-list; a known (kid, alg) resolves synchronously from the cached set.
    this.#getKey = (header, token) => {
      // SPIFFE requires kid; without it jose would try whichever key fits, so refuse before any lookup.
      if (typeof header.kid !== 'string' || header.kid.length === 0) {
        throw new VerifyError('ERR_TOKEN_MALFORMED', 'the token header has no "kid"', { claim: 'kid' });
      }
      return jwks.key(header, token.protected);
    };

    if (o.revocationFeed !== false) {
      const maxStalenessMs = positive('maxStalenessMs', o.maxStalenessMs, 30_000);
      this.#feed = new RevocationFeed({
        url: url(
          'revocationStreamUrl',
          o.revocationStreamUrl ?? `${base}/v1/revocations/stream`,
          o.allowInsecureHttp,
        ),
        fetch: fetchImpl,
        now: this.#now,
        revocations: this.#revocations,
        maxStalenessMs,
        clockToleranceSec: this.#clockTolerance,
        initialRetryMs: 1000,
        maxRetryMs: positive('maxReconnectDelayMs', o.maxReconnectDelayMs, 30_000),
        logger: o.logger,
        onRevocation: o.onRevocation,
      });
    }
  }

  start(): Promise<void> {
    if (this.#closed) return Promise.reject(new VerifyError('ERR_FEED_STALE', 'the verifier is closed'));
    this.#started ??= this.#start();
    return this.#started;
  }

  async #start(): Promise<void> {
    this.#feed?.start();
    const keys = this.#jwks.refresh().catch((e: unknown) => {
      throw e instanceof VerifyError ? e : jwksUnavailable(e);
    });
    await Promise.all([keys, this.#feed?.waitCurrent(this.#startTimeoutMs)]);
  }

  async verify(token: string, options?: VerifyOptions): Promise<Svid> {
    const feed = this.#feed;
    // Cheap and first: while stale no answer can be trusted, so spend no crypto on it.
    if (feed ? !feed.isCurrent() : this.#closed) throw new VerifyError('ERR_FEED_STALE');
    if (typeof token !== 'string' || token.length === 0 || token.length > MAX_TOKEN_LENGTH) {
      throw new VerifyError('ERR_TOKEN_MALFORMED');
    }
    const audience =
      options?.audience === undefined ? this.#audience : audienceList('audience', options.audience);
    // A header already looked up in the current key set goes straight to its key; any other through #getKey.
    const dot = token.indexOf('.');
    const known = dot > 0 ? this.#jwks.remembered(token.slice(0, dot)) : undefined;
    let result: JWTVerifyResult;
    try {
      result = await jwtVerify(token, known ?? this.#getKey, {
        algorithms: this.#algorithms,
        issuer: this.#issuer,
        audience,
        typ: 'JWT',
        requiredClaims: REQUIRED_CLAIMS,
        clockTolerance: this.#clockTolerance,
        currentDate: new Date(this.#now()),
      });
    } catch (e) {
      throw toVerifyError(e);
    }
    const svid = this.#toSvid(result);
    if (feed) {
      // Again after the await: the feed may have gone stale or delivered a revocation meanwhile.
      if (!feed.isCurrent()) throw new VerifyError('ERR_FEED_STALE');
      if (this.#revocations.hasCredential(svid.jti) || this.#revocations.hasTask(svid.task)) {
        throw new VerifyError('ERR_TOKEN_REVOKED');
      }
    }
    return svid;
  }

  #toSvid({ payload, protectedHeader }: JWTVerifyResult): Svid {
    const { sub, aud, jti, task, iat, exp } = payload;
    if (typeof sub !== 'string') throw invalid('sub', 'the "sub" claim is not a spiffe id');
    const trustDomain = this.#trustDomainOf(sub);
    if (this.#trustDomain !== undefined && trustDomain !== this.#trustDomain) {
      throw invalid('sub', 'the "sub" claim is not in the trusted trust domain');
    }
    if (typeof jti !== 'string' || jti.length === 0) throw invalid('jti', 'the "jti" claim is not a string');
    if (typeof task !== 'string' || task.length === 0)
      throw invalid('task', 'the "task" claim is not a string');
    const audience = typeof aud === 'string' ? [aud] : aud;
    if (!Array.isArray(audience) || audience.some((a) => typeof a !== 'string')) {
      throw invalid('aud', 'the "aud" claim is not a string array');
    }
    // jose checks iat's type; a token minted in the future is refused (jose checks that only with maxTokenAge).
    if (typeof iat !== 'number' || typeof exp !== 'number') throw invalid('iat', 'the token has no lifetime');
    if (iat > this.#now() / 1000 + this.#clockTolerance)
      throw invalid('iat', 'the "iat" claim is in the future');
    // Revocations are remembered for at most this long; a token that claims to live longer is not ours.
    if (exp - iat > MAX_CREDENTIAL_LIFETIME)
      throw invalid('exp', 'the token lives longer than a JWT-SVID may');
    return {
      spiffeId: sub,
      trustDomain,
      audience,
      expiresAt: exp,
      issuedAt: iat,
      jti,
      task,
      kid: protectedHeader.kid as string,
      claims: payload,
    };
  }

  /** The trust domain of a valid SPIFFE ID; the few IDs a relying party sees are validated once each. */
  #trustDomainOf(sub: string): string {
    const known = this.#subjects.get(sub);
    if (known !== undefined) return known;
    if (validateSpiffeId(sub) !== null) throw invalid('sub', 'the "sub" claim is not a spiffe id');
    const slash = sub.indexOf('/', SPIFFE_SCHEME.length);
    const trustDomain = slash < 0 ? sub.slice(SPIFFE_SCHEME.length) : sub.slice(SPIFFE_SCHEME.length, slash);
    // Only valid IDs of signed tokens get here, and each is at most 2 KiB; clearing bounds the memory.
    if (this.#subjects.size >= SUBJECT_MEMO_ENTRIES) this.#subjects.clear();
    this.#subjects.set(sub, trustDomain);
    return trustDomain;
  }

  isRevoked(ref: { credential?: string | undefined; task?: string | undefined }): boolean {
    return (
      (ref.credential !== undefined && this.#revocations.hasCredential(ref.credential)) ||
      (ref.task !== undefined && this.#revocations.hasTask(ref.task))
    );
  }

  status(): VerifierStatus {
    const feed = this.#feed?.status() ?? null;
    return { revocationFeed: feed !== null, current: feed === null ? !this.#closed : feed.current, feed };
  }

  close(): void {
    this.#closed = true;
    this.#feed?.close();
  }
}

/**
 * Creates a verifier of Writ JWT-SVIDs. Call `start()` before serving: until the revocation feed has
 * caught up, `verify()` fails closed with `ERR_FEED_STALE`. Throws `TypeError` for invalid options.
 */
export function createVerifier(options: VerifierOptions): Verifier {
  return new JwtSvidVerifier(options);
}
