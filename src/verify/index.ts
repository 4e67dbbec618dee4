// The relying-party SDK: verify Writ JWT-SVIDs locally, learn of revocations from the live feed, fail closed.

export {
  type AuthorizeDecision,
  type AuthorizeQuery,
  Authorizer,
  type AuthorizerOptions,
  createAuthorizer,
} from './authorizer.ts';
export { isVerifyError, VERIFY_ERRORS, VerifyError, type VerifyErrorCode } from './errors.ts';
export { getSvid, type RequireSvidOptions, requireSvid } from './middleware.ts';
export type { FeedState, FeedStatus, VerifierLogger } from './revocation-feed.ts';
export type { RevocationEvent } from './revocation-set.ts';
export {
  createVerifier,
  DEFAULT_ALGORITHMS,
  JWT_SVID_ALGORITHMS,
  type JwtSvidAlgorithm,
  type Svid,
  type Verifier,
  type VerifierOptions,
  type VerifierStatus,
  type VerifyOptions,
} from './verifier.ts';
