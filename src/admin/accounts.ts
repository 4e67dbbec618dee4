// Admin accounts with TOTP MFA: the contract both adapters keep, and what they share (names, tokens, OTP rules).
//
// An account has a bearer token (`writ_admin_` + 32 random bytes, base64url), kept only as its SHA-256, and a
// TOTP secret (RFC 6238: SHA-1, 6 digits, 30 s steps), kept as is because codes cannot be checked without it.
// A code is good for its step and one step either side, and is accepted once: the account remembers the last
// step it accepted and refuses that step and older ones. Consecutive failures (wrong, malformed or replayed
// codes) lock the account's OTP for a while; a success resets the count. Each adapter applies one attempt
// atomically (Redis: one Lua script), so two replicas never both accept one code.
// All times here are epoch milliseconds from the injected clock.

import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

export interface AdminAccount {
  name: string;
  createdAt: number;
  disabled: boolean;
  disabledAt?: number;
  /** Present while the account's OTP is locked. */
  lockedUntil?: number;
}

/** What create returns: the only time the token and the TOTP secret (in the URI) leave the broker. */
export interface CreatedAdminAccount {
  name: string;
  token: string;
  /** `otpauth://totp/Writ:<name>?secret=<base32>&issuer=Writ`, for an authenticator app (QR code). */
  otpauthUri: string;
}

export type OtpResult =
  /** Accepted; `step` is the TOTP time step it belonged to (no code of it or before is accepted again). */
  | { ok: true; step: number }
  /** Wrong or malformed code (`invalid`), or one of a step already used (`replayed`). */
  | { ok: false; reason: 'invalid' | 'replayed'; failures: number }
  /** Refused because the account is locked; `lockedNow` when this attempt's failure locked it. */
  | { ok: false; reason: 'locked'; lockedUntil: number; lockedNow: boolean }
  /** No such account, or it is disabled. */
  | { ok: false; reason: 'unknown' };

export interface AdminAccounts {
  readonly kind: 'memory' | 'redis';
  /**
   * A new account. A name not matching ADMIN_NAME_PATTERN: TypeError. A name in use (also by a disabled account,
   * or the reserved break-glass name): WritError ERR_ADMIN_EXISTS.
   */
  create(name: string): Promise<CreatedAdminAccount>;
  /** The active account a bearer token belongs to, or null (unknown, malformed, or disabled). */
  authenticate(token: string): Promise<AdminAccount | null>;
  /** One attempt at a TOTP code for the account, at `now` (ms; default: the injected clock). */
  verifyOtp(name: string, code: string, now?: number): Promise<OtpResult>;
  /** All accounts, by name. */
  list(): Promise<AdminAccount[]>;
  get(name: string): Promise<AdminAccount | null>;
  /** Disables the account for good (its token stops working; the name stays taken); null when unknown. */
  disable(name: string): Promise<AdminAccount | null>;
}

export interface AdminAccountsOptions {
  /** Consecutive OTP failures that lock the account; default 5. */
  maxOtpFailures?: number;
  /** How long a lock lasts, in seconds; default 900 (15 minutes). */
  lockoutSeconds?: number;
}

export interface OtpPolicy {
  maxFailures: number;
  lockoutMs: number;
}

export function otpPolicy(opts: AdminAccountsOptions): OtpPolicy {
  const maxFailures = opts.maxOtpFailures ?? 5;
  const lockoutSeconds = opts.lockoutSeconds ?? 900;
  if (!Number.isSafeInteger(maxFailures) || maxFailures < 1 || maxFailures > 100) {
    throw new TypeError('maxOtpFailures must be an integer from 1 to 100');
  }
  if (!Number.isSafeInteger(lockoutSeconds) || lockoutSeconds < 1 || lockoutSeconds > 86_400) {
    throw new TypeError('lockoutSeconds must be an integer from 1 to 86400');
  }
  return { maxFailures, lockoutMs: lockoutSeconds * 1000 };
}

// ---- names

/** Account names: lowercase, 2..32 characters, starting with a letter (safe in keys, URIs and audit actors). */
export const ADMIN_NAME_PATTERN = /^[a-z][a-z0-9_.-]{1,31}$/;

/** The account that stands for the bootstrap token (WRIT_ADMIN_TOKEN); no account may take its name. */
export const BREAK_GLASS_NAME = 'bootstrap';

/** TypeError unless `name` is a valid account name (callers validate client input first). */
export function assertAdminName(name: string): void {
  if (typeof name !== 'string' || !ADMIN_NAME_PATTERN.test(name)) {
    throw new TypeError(`admin name must match ${ADMIN_NAME_PATTERN}`);
  }
}

export function isAdminName(name: unknown): name is string {
  return typeof name === 'string' && ADMIN_NAME_PATTERN.test(name);
}

// ---- tokens

export const ADMIN_TOKEN_PREFIX = 'writ_admin_';
const ADMIN_TOKEN_PATTERN = /^writ_admin_[A-Za-z0-9_-]{43}$/;

export function generateAdminToken(): string {
  return `${ADMIN_TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
}

export function isAdminTokenShaped(token: unknown): token is string {
  return typeof token === 'string' && ADMIN_TOKEN_PATTERN.test(token);
}

/** Lowercase hex SHA-256: the only form in which a token is stored. */
export function hashAdminToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Constant-time comparison of two hex hashes of equal length. */
export function sameHash(a: string, b: string): boolean {
  const left = Buffer.from(a, 'hex');
  const right = Buffer.from(b, 'hex');
  return left.length === 32 && right.length === 32 && timingSafeEqual(left, right);
}

// ---- the OTP attempt rule (the Redis script lua/verify-otp-1.lua is the same rule)

export interface OtpState {
  /** The last accepted time step; -1 before the first. */
  lastStep: number;
  /** Consecutive failures since the last success or lock. */
  failures: number;
  /** Epoch ms until which OTP is refused; 0 when not locked. */
  lockedUntil: number;
}

export function initialOtpState(): OtpState {
  return { lastStep: -1, failures: 0, lockedUntil: 0 };
}

/**
 * Applies one attempt to `state` (mutating it). `step` is the time step the code matched within the window, or
 * null when it matched none. While locked every attempt is refused and nothing else changes.
 */
export function applyOtpAttempt(
  state: OtpState,
  now: number,
  step: number | null,
  policy: OtpPolicy,
): Exclude<OtpResult, { reason: 'unknown' }> {
  if (state.lockedUntil > now)
    return { ok: false, reason: 'locked', lockedUntil: state.lockedUntil, lockedNow: false };
  if (step !== null && step > state.lastStep) {
    state.lastStep = step;
    state.failures = 0;
    state.lockedUntil = 0;
    return { ok: true, step };
  }
  state.failures += 1;
  if (state.failures >= policy.maxFailures) {
    state.failures = 0;
    state.lockedUntil = now + policy.lockoutMs;
    return { ok: false, reason: 'locked', lockedUntil: state.lockedUntil, lockedNow: true };
  }
  return { ok: false, reason: step === null ? 'invalid' : 'replayed', failures: state.failures };
}

// ---- break-glass

/** Who an admin request acts as (res.locals.admin). */
export interface AdminPrincipal {
  name: string;
  /** The bootstrap token (WRIT_ADMIN_TOKEN): no account, no TOTP; every use is logged and audited. */
  breakGlass: boolean;
}

export const BREAK_GLASS_ADMIN: Readonly<AdminPrincipal> = Object.freeze({
  name: BREAK_GLASS_NAME,
  breakGlass: true,
});

export function isBreakGlass(admin: AdminPrincipal | null | undefined): boolean {
  return admin?.breakGlass === true && admin.name === BREAK_GLASS_NAME;
}
