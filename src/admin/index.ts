// Admin accounts with TOTP MFA, the break-glass bootstrap admin, and the express steps that enforce them.
export * from './accounts.ts';
export * from './errors.ts';
export { MemoryAdminAccounts, type MemoryAdminAccountsOptions } from './memory.accounts.ts';
export { type AdminAuthDeps, getAdmin, OTP_HEADER, requireAdmin, requireOtp } from './middleware.ts';
export { adminKeys, RedisAdminAccounts, type RedisAdminAccountsOptions } from './redis.accounts.ts';
export { generateTotpSecret, matchTotpStep, otpauthUri, TOTP_ISSUER, TOTP_PERIOD_SECONDS } from './totp.ts';
