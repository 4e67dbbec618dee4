// Typed errors of the X.509 module: stable codes and safe lowercase messages (the cause is kept, never exposed).

/**
 * Bad CSRs from the wire; all belong in the central registry as 400s:
 * - `ERR_CSR_INVALID`: not exactly one well-formed, canonical DER PKCS#10 request in PEM.
 * - `ERR_CSR_UNSUPPORTED_ALGORITHM`: the request's signature algorithm is not on the allow-list or does
 *   not fit its key.
 * - `ERR_CSR_WEAK_KEY`: the key is weak or of a type the broker does not certify.
 * - `ERR_CSR_SIGNATURE`: the self-signature does not verify (no proof of possession).
 */
export type CsrErrorCode =
  | 'ERR_CSR_INVALID'
  | 'ERR_CSR_UNSUPPORTED_ALGORITHM'
  | 'ERR_CSR_WEAK_KEY'
  | 'ERR_CSR_SIGNATURE';

export class CsrError extends Error {
  readonly code: CsrErrorCode;

  constructor(code: CsrErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CsrError';
    this.code = code;
  }
}

/**
 * CA problems:
 * - `ERR_CA_INVALID`: the CA certificate, key or chain cannot be used (configuration; refused at start).
 * - `ERR_CA_EXPIRED`: the CA (or a certificate above it) ends before the requested certificate could start.
 * - `ERR_CA_MINT_CHECK`: a certificate or CRL just minted failed its independent re-check (a bug; nothing
 *   is returned).
 */
export type CaErrorCode = 'ERR_CA_INVALID' | 'ERR_CA_EXPIRED' | 'ERR_CA_MINT_CHECK';

export class CaError extends Error {
  readonly code: CaErrorCode;

  constructor(code: CaErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CaError';
    this.code = code;
  }
}
