// The one error type of the relying-party SDK: stable codes, safe messages, never the token.

/** Every code a {@link VerifyError} can carry, with what it means. */
export const VERIFY_ERRORS = {
  /** Not a compact JWS, bad base64url or JSON, or a header without `alg` or `kid`. */
  ERR_TOKEN_MALFORMED: 'the token is malformed',
  /** Signature, algorithm, key, `typ` or a claim is wrong (issuer, audience, subject, nbf, iat...). */
  ERR_TOKEN_INVALID: 'the token is not valid',
  /** `exp` has passed (beyond the clock tolerance). */
  ERR_TOKEN_EXPIRED: 'the token has expired',
  /** The broker revoked the credential, or ended its task. */
  ERR_TOKEN_REVOKED: 'the token has been revoked',
  /** The revocation feed is not current: the verifier fails closed (retry later). */
  ERR_FEED_STALE: 'the revocation feed is not current',
  /** The broker's JWKS could not be fetched or parsed (retry later). */
  ERR_JWKS_UNAVAILABLE: 'the signing keys are unavailable',
  /** The broker's policy decision point (/v1/authorize) could not be reached or answered oddly (retry later). */
  ERR_AUTHORIZE_UNAVAILABLE: 'the policy decision is unavailable',
} as const;

export type VerifyErrorCode = keyof typeof VERIFY_ERRORS;

/**
 * Thrown by `verify()` and `start()`. `code` is stable; `message` is lowercase text for logs that never
 * contains the token. `temporary` is true when the token itself may be fine and a retry can succeed.
 */
export class VerifyError extends Error {
  readonly code: VerifyErrorCode;
  /** The claim or header parameter at fault, when one is (`aud`, `iss`, `exp`, `kid`...). */
  readonly claim: string | undefined;

  constructor(code: VerifyErrorCode, message?: string, options?: { claim?: string; cause?: unknown }) {
    super(
      message ?? VERIFY_ERRORS[code],
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'VerifyError';
    this.code = code;
    this.claim = options?.claim;
  }

  /** True for the codes where the token may be fine and the failure is the verifier's state. */
  get temporary(): boolean {
    return (
      this.code === 'ERR_FEED_STALE' ||
      this.code === 'ERR_JWKS_UNAVAILABLE' ||
      this.code === 'ERR_AUTHORIZE_UNAVAILABLE'
    );
  }
}

export function isVerifyError(e: unknown): e is VerifyError {
  return e instanceof VerifyError;
}
