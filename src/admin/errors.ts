// Error codes of admin accounts and MFA that are not in the registry (src/errors.ts) yet, and one way to make them.
import { ERRORS, type ErrorCode, type ErrorSpec, WritError } from '../errors.ts';

export const ERR_OTP_REQUIRED = 'ERR_OTP_REQUIRED';
export const ERR_OTP_INVALID = 'ERR_OTP_INVALID';
export const ERR_ACCOUNT_LOCKED = 'ERR_ACCOUNT_LOCKED';
export const ERR_ADMIN_EXISTS = 'ERR_ADMIN_EXISTS';

/** To be moved into ERRORS in src/errors.ts (and docs/api.md); until then adminError uses these. */
export const ADMIN_ERRORS = {
  [ERR_OTP_REQUIRED]: {
    status: 401,
    description: 'this operation needs a fresh TOTP code in the X-Writ-OTP header',
  },
  [ERR_OTP_INVALID]: { status: 401, description: 'the TOTP code is not valid or was already used' },
  [ERR_ACCOUNT_LOCKED]: {
    status: 423,
    description: 'the admin account is locked after repeated TOTP failures; try again later',
  },
  [ERR_ADMIN_EXISTS]: { status: 409, description: 'an admin account with this name exists' },
} as const satisfies Record<string, ErrorSpec>;

export type AdminErrorCode = keyof typeof ADMIN_ERRORS;

/**
 * A WritError for an admin code. Once the code is in the registry this is just `new WritError(code)`; until
 * then the error is built on a registered code and given the new code, status and description, so that the
 * shared error handler writes `{error: code, error_description}` with the right status either way.
 */
export function adminError(code: AdminErrorCode | 'ERR_ADMIN_UNAUTHENTICATED'): WritError {
  if (Object.hasOwn(ERRORS, code)) return new WritError(code as ErrorCode);
  const spec = ADMIN_ERRORS[code as AdminErrorCode];
  const error = new WritError('server_error', spec.description);
  Object.defineProperties(error, {
    code: { value: code },
    status: { value: spec.status },
    message: { value: `${code}: ${spec.description}` },
  });
  return error;
}
