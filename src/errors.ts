// One error registry: every stable error code Writ puts on the wire, its HTTP status and its meaning.

export interface ErrorSpec {
  readonly status: number;
  /** What a client is told; never the cause. */
  readonly description: string;
}

export const ERRORS = {
  // generic request problems
  invalid_request: { status: 400, description: 'the request is malformed' },
  ERR_BODY_TOO_LARGE: { status: 413, description: 'the request body is too large' },
  ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, description: 'the request body must be application/json' },
  ERR_NOT_FOUND: { status: 404, description: 'no such resource' },
  ERR_ROTATION_UNAVAILABLE: {
    status: 409,
    description: 'these keys are given as files; Writ cannot rotate them',
  },
  ERR_ROTATION_TOO_SOON: {
    status: 409,
    description:
      'the next key has not been published long enough to sign yet; retry after Retry-After seconds',
  },
  ERR_METHOD_NOT_ALLOWED: { status: 405, description: 'method not allowed on this resource' },
  ERR_SPIFFE_ID_INVALID: { status: 400, description: 'the SPIFFE ID is not valid' },
  ERR_TTL_INVALID: { status: 400, description: 'the requested ttl is out of range' },
  // certificate signing requests (POST /v1/svid/x509)
  ERR_CSR_INVALID: { status: 400, description: 'the csr is not one well-formed PEM PKCS#10 request' },
  ERR_CSR_UNSUPPORTED_ALGORITHM: {
    status: 400,
    description: 'the csr signature algorithm is not accepted or does not fit its key',
  },
  ERR_CSR_WEAK_KEY: { status: 400, description: 'the csr key is weak or of a type that is not certified' },
  ERR_CSR_SIGNATURE: {
    status: 400,
    description: 'the csr signature does not verify (no proof of possession)',
  },
  // X.509-SVID renewal over mutual TLS (POST /v1/svid/x509/renew)
  ERR_MTLS_UNAVAILABLE: {
    status: 400,
    description:
      'renewal needs mutual TLS with the broker itself; this connection is plain HTTP or client certificates are off',
  },
  ERR_CLIENT_CERT_REQUIRED: {
    status: 401,
    description: 'a client certificate is required: present the X.509-SVID to renew',
  },
  ERR_CLIENT_CERT_INVALID: {
    status: 401,
    description: 'the client certificate does not verify against the trust bundle (or has expired)',
  },
  ERR_CLIENT_CERT_INACTIVE: {
    status: 401,
    description:
      'the client certificate is not a live X.509-SVID of this broker (unknown, revoked, expired, or its task has ended)',
  },
  ERR_CSR_KEY_REUSED: {
    status: 400,
    description: 'a renewal certifies a new key: the csr key is the key of the presented certificate',
  },
  ERR_RATE_LIMITED: { status: 429, description: 'too many requests' },
  ERR_FEED_BUSY: { status: 503, description: 'the revocation feed has no room for another subscriber' },
  // admin authentication
  ERR_ADMIN_UNAUTHENTICATED: { status: 401, description: 'a valid admin bearer token is required' },
  ERR_OTP_REQUIRED: {
    status: 401,
    description: 'this operation needs a fresh TOTP code in the X-Writ-OTP header',
  },
  ERR_OTP_INVALID: { status: 401, description: 'the TOTP code is not valid or was already used' },
  ERR_ACCOUNT_LOCKED: {
    status: 423,
    description: 'the admin account is locked after repeated TOTP failures; try again later',
  },
  ERR_ADMIN_EXISTS: { status: 409, description: 'an admin account with this name exists' },
  // attestation
  ERR_ATTESTOR_UNKNOWN: { status: 400, description: 'no such attestor is enabled' },
  ERR_ATTESTATION_FAILED: { status: 401, description: 'attestation failed' },
  ERR_ATTESTOR_UNAVAILABLE: { status: 503, description: 'the attestor could not complete in time' },
  // registration and issuance
  ERR_NO_MATCHING_ENTRY: { status: 403, description: 'no registration entry matches the attested workload' },
  ERR_AMBIGUOUS_ENTRY: {
    status: 403,
    description: 'several registration entries match; name one with spiffeId',
  },
  ERR_AUDIENCE_NOT_ALLOWED: {
    status: 403,
    description: 'the registration entry does not allow this audience',
  },
  ERR_TASK_ENDED: { status: 409, description: 'the task has ended; no credential is issued for it' },
  ERR_TASK_MISMATCH: { status: 403, description: 'the attested workload is bound to another task' },
  access_denied: { status: 403, description: 'denied by policy' },
  ERR_POLICY_INVALID: {
    status: 400,
    description: 'the policy directory does not validate; the old policies stay',
  },
  ERR_APPROVAL_PENDING: { status: 202, description: 'an admin must approve this request first' },
  ERR_APPROVAL_INVALID: {
    status: 403,
    description: 'no pending or approved approval matches this request (or it was already used)',
  },
  ERR_APPROVAL_DECIDED: { status: 409, description: 'the approval has already been decided' },
  ERR_ENTRY_CONFLICT: { status: 409, description: 'an entry with this SPIFFE ID and selectors exists' },
  // relying parties
  ERR_TOKEN_MISSING: { status: 400, description: 'a token is required' },
  ERR_TOKEN_INVALID: { status: 401, description: 'the bearer token is not a live JWT-SVID for this request' },
  // state and dependencies
  ERR_STORE_UNAVAILABLE: {
    status: 503,
    description: 'the credential store is unavailable; nothing was issued',
  },
  // OAuth token endpoint (RFC 6749 §5.2, RFC 8693 §2.2.2)
  unsupported_grant_type: { status: 400, description: 'the grant type is not supported' },
  invalid_target: { status: 400, description: 'no token can be issued for the requested audience' },
  temporarily_unavailable: {
    status: 503,
    description: 'the broker cannot issue a token right now; retry later',
  },
  // webhooks
  ERR_WEBHOOK_SIGNATURE_INVALID: {
    status: 401,
    description: 'the webhook signature is missing or does not verify',
  },
  server_error: { status: 500, description: 'internal error' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** The only error type handlers throw. `detail` is a safe, client-facing refinement of the description. */
export class WritError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly detail: string | undefined;
  readonly extra: Readonly<Record<string, unknown>> | undefined;
  /** Facts for logs and the audit trail, never sent to the client (e.g. the SPIFFE ID a policy denied). */
  readonly meta: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: ErrorCode,
    detail?: string,
    options?: { cause?: unknown; extra?: Record<string, unknown>; meta?: Record<string, unknown> },
  ) {
    super(
      detail ? `${code}: ${detail}` : code,
      options?.cause === undefined ? undefined : { cause: options.cause },
    );
    this.name = 'WritError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.detail = detail;
    this.extra = options?.extra;
    this.meta = options?.meta;
  }

  /** The RFC 6749-shaped wire body. */
  toJSON(): Record<string, unknown> {
    return {
      error: this.code,
      error_description: this.detail ?? ERRORS[this.code].description,
      ...(this.extra ?? {}),
    };
  }
}

export function isWritError(e: unknown): e is WritError {
  return e instanceof WritError;
}
