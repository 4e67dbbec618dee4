// TOTP (RFC 6238) with otplib's defaults, which authenticator apps assume: SHA-1, 6 digits, 30-second steps.
import { generateSecret, generateURI, verifySync } from 'otplib';

export const TOTP_ISSUER = 'Writ';
export const TOTP_PERIOD_SECONDS = 30;
const CODE_PATTERN = /^\d{6}$/;

/** A fresh secret: 20 random bytes (160 bits, RFC 4226's recommendation), base32. */
export function generateTotpSecret(): string {
  return generateSecret();
}

/** `otpauth://totp/Writ:<name>?secret=<base32>&issuer=Writ` (names need no escaping: ADMIN_NAME_PATTERN). */
export function otpauthUri(name: string, secret: string): string {
  return generateURI({ issuer: TOTP_ISSUER, label: name, secret });
}

/**
 * The time step a code belongs to, looking at the step of `nowMs` and one step either side; null when the code
 * is malformed or matches none. otplib compares codes in constant time.
 */
export function matchTotpStep(secret: string, code: string, nowMs: number): number | null {
  if (!CODE_PATTERN.test(code)) return null;
  const result = verifySync({
    secret,
    token: code,
    epoch: Math.floor(nowMs / 1000),
    epochTolerance: TOTP_PERIOD_SECONDS,
  });
  return result.valid && 'timeStep' in result ? result.timeStep : null;
}
