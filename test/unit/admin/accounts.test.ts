// The pieces the adapters share: the OTP attempt rule, TOTP matching, tokens, break-glass and the error shim.
import { generateSync } from 'otplib';
import { describe, expect, it } from 'vitest';
import {
  applyOtpAttempt,
  BREAK_GLASS_ADMIN,
  generateAdminToken,
  hashAdminToken,
  initialOtpState,
  isAdminTokenShaped,
  isBreakGlass,
  otpPolicy,
  sameHash,
} from '../../../src/admin/accounts.ts';
import { ADMIN_ERRORS, adminError } from '../../../src/admin/errors.ts';
import { generateTotpSecret, matchTotpStep, otpauthUri } from '../../../src/admin/totp.ts';
import { ERRORS, WritError } from '../../../src/errors.ts';

const POLICY = { maxFailures: 3, lockoutMs: 60_000 };

describe('applyOtpAttempt', () => {
  it('accepts a step after the last one, counts failures, locks and unlocks', () => {
    const state = initialOtpState();
    expect(applyOtpAttempt(state, 0, 10, POLICY)).toEqual({ ok: true, step: 10 });
    expect(applyOtpAttempt(state, 0, 10, POLICY)).toEqual({ ok: false, reason: 'replayed', failures: 1 });
    expect(applyOtpAttempt(state, 0, 9, POLICY)).toEqual({ ok: false, reason: 'replayed', failures: 2 });
    expect(applyOtpAttempt(state, 5, null, POLICY)).toEqual({
      ok: false,
      reason: 'locked',
      lockedUntil: 60_005,
      lockedNow: true,
    });
    expect(applyOtpAttempt(state, 60_004, 11, POLICY)).toMatchObject({ reason: 'locked', lockedNow: false });
    expect(state).toEqual({ lastStep: 10, failures: 0, lockedUntil: 60_005 });
    expect(applyOtpAttempt(state, 60_005, 11, POLICY)).toEqual({ ok: true, step: 11 });
    expect(state).toEqual({ lastStep: 11, failures: 0, lockedUntil: 0 });
  });

  it('validates the policy', () => {
    expect(otpPolicy({})).toEqual({ maxFailures: 5, lockoutMs: 900_000 });
    expect(() => otpPolicy({ maxOtpFailures: 0 })).toThrow(TypeError);
    expect(() => otpPolicy({ lockoutSeconds: 1.5 })).toThrow(TypeError);
  });
});

describe('TOTP', () => {
  const secret = generateTotpSecret();
  const at = (s: number) => generateSync({ secret, epoch: s });

  it('makes 160-bit base32 secrets and the otpauth URI authenticator apps read', () => {
    expect(secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(otpauthUri('alice', secret)).toBe(`otpauth://totp/Writ:alice?secret=${secret}&issuer=Writ`);
  });

  it('matches the step of now and one either side (RFC 6238, 30 s)', () => {
    const now = 1_700_000_025; // step 56666667, 15 s in
    expect(matchTotpStep(secret, at(now), now * 1000)).toBe(56_666_667);
    expect(matchTotpStep(secret, at(now - 30), now * 1000)).toBe(56_666_666);
    expect(matchTotpStep(secret, at(now + 30), now * 1000)).toBe(56_666_668);
    expect(matchTotpStep(secret, at(now - 60), now * 1000)).toBeNull();
    expect(matchTotpStep(secret, at(now + 60), now * 1000)).toBeNull();
    for (const bad of ['', '12345', '1234567', '12 456', 'abcdef', '１２３４５６']) {
      expect(matchTotpStep(secret, bad, now * 1000)).toBeNull();
    }
  });

  it('is the RFC 6238 algorithm (its SHA-1 test vector, truncated to 6 digits)', () => {
    const rfcSecret = 'GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ'; // base32 of "12345678901234567890"
    expect(matchTotpStep(rfcSecret, '287082', 59_000)).toBe(1);
    expect(matchTotpStep(rfcSecret, '081804', 1_111_111_109_000)).toBe(37_037_036);
  });
});

describe('tokens', () => {
  it('are writ_admin_ and 32 random bytes, and stored as SHA-256 hex', () => {
    const token = generateAdminToken();
    expect(isAdminTokenShaped(token)).toBe(true);
    expect(Buffer.from(token.slice('writ_admin_'.length), 'base64url')).toHaveLength(32);
    expect(generateAdminToken()).not.toBe(token);
    const hash = hashAdminToken(token);
    expect(hash).toMatch(/^[0-9a-f]{64}$/);
    expect(sameHash(hash, hashAdminToken(token))).toBe(true);
    expect(sameHash(hash, hashAdminToken(`${token}x`))).toBe(false);
    expect(sameHash(hash, 'abc')).toBe(false);
  });
});

describe('break-glass', () => {
  it('is the bootstrap principal only', () => {
    expect(isBreakGlass(BREAK_GLASS_ADMIN)).toBe(true);
    expect(isBreakGlass({ name: 'bootstrap', breakGlass: false })).toBe(false);
    expect(isBreakGlass({ name: 'alice', breakGlass: true })).toBe(false);
    expect(isBreakGlass(undefined)).toBe(false);
  });
});

describe('adminError', () => {
  it('writes each code with its status and description, registered or not yet', () => {
    for (const [code, spec] of Object.entries(ADMIN_ERRORS)) {
      const error = adminError(code as keyof typeof ADMIN_ERRORS);
      expect(error).toBeInstanceOf(WritError);
      expect(error.code).toBe(code);
      expect(error.status).toBe(spec.status);
      expect(error.toJSON()).toEqual({
        error: code,
        error_description:
          code in ERRORS
            ? (ERRORS as Record<string, { description: string }>)[code]!.description
            : spec.description,
      });
    }
    expect(adminError('ERR_ADMIN_UNAUTHENTICATED').status).toBe(401);
  });
});
