// In-memory AdminAccounts for dev mode and tests: the Redis adapter's contract, lost on exit.
// Each method finishes its state change without awaiting, so every OTP attempt is atomic on the JS thread.
import { type Clock, systemClock } from '../store/types.ts';
import {
  type AdminAccount,
  type AdminAccounts,
  type AdminAccountsOptions,
  applyOtpAttempt,
  assertAdminName,
  BREAK_GLASS_NAME,
  type CreatedAdminAccount,
  generateAdminToken,
  hashAdminToken,
  initialOtpState,
  isAdminName,
  isAdminTokenShaped,
  type OtpPolicy,
  type OtpResult,
  type OtpState,
  otpPolicy,
  sameHash,
} from './accounts.ts';
import { adminError } from './errors.ts';
import { generateTotpSecret, matchTotpStep, otpauthUri } from './totp.ts';

interface StoredAccount {
  name: string;
  tokenHash: string;
  secret: string;
  createdAt: number;
  disabledAt?: number;
  otp: OtpState;
}

export interface MemoryAdminAccountsOptions extends AdminAccountsOptions {
  clock?: Clock;
}

export class MemoryAdminAccounts implements AdminAccounts {
  readonly kind = 'memory' as const;
  readonly #clock: Clock;
  readonly #policy: OtpPolicy;
  readonly #accounts = new Map<string, StoredAccount>();
  /** token hash -> account name */
  readonly #byToken = new Map<string, string>();

  constructor(opts: MemoryAdminAccountsOptions = {}) {
    this.#clock = opts.clock ?? systemClock;
    this.#policy = otpPolicy(opts);
  }

  async create(name: string): Promise<CreatedAdminAccount> {
    assertAdminName(name);
    if (name === BREAK_GLASS_NAME || this.#accounts.has(name)) throw adminError('ERR_ADMIN_EXISTS');
    const token = generateAdminToken();
    const secret = generateTotpSecret();
    const tokenHash = hashAdminToken(token);
    this.#accounts.set(name, { name, tokenHash, secret, createdAt: this.#clock(), otp: initialOtpState() });
    this.#byToken.set(tokenHash, name);
    return { name, token, otpauthUri: otpauthUri(name, secret) };
  }

  async authenticate(token: string): Promise<AdminAccount | null> {
    if (!isAdminTokenShaped(token)) return null;
    const hash = hashAdminToken(token);
    const name = this.#byToken.get(hash);
    const account = name === undefined ? undefined : this.#accounts.get(name);
    if (account === undefined || !sameHash(account.tokenHash, hash) || account.disabledAt !== undefined) {
      return null;
    }
    return this.#view(account);
  }

  async verifyOtp(name: string, code: string, now: number = this.#clock()): Promise<OtpResult> {
    if (!Number.isSafeInteger(now)) throw new TypeError('now must be an integer (epoch ms)');
    const account = isAdminName(name) ? this.#accounts.get(name) : undefined;
    if (account === undefined || account.disabledAt !== undefined) return { ok: false, reason: 'unknown' };
    const step = typeof code === 'string' ? matchTotpStep(account.secret, code, now) : null;
    return applyOtpAttempt(account.otp, now, step, this.#policy);
  }

  async list(): Promise<AdminAccount[]> {
    return [...this.#accounts.values()].sort(byName).map((account) => this.#view(account));
  }

  async get(name: string): Promise<AdminAccount | null> {
    const account = isAdminName(name) ? this.#accounts.get(name) : undefined;
    return account === undefined ? null : this.#view(account);
  }

  async disable(name: string): Promise<AdminAccount | null> {
    const account = isAdminName(name) ? this.#accounts.get(name) : undefined;
    if (account === undefined) return null;
    account.disabledAt ??= this.#clock();
    return this.#view(account);
  }

  #view(account: StoredAccount): AdminAccount {
    const view: AdminAccount = {
      name: account.name,
      createdAt: account.createdAt,
      disabled: account.disabledAt !== undefined,
    };
    if (account.disabledAt !== undefined) view.disabledAt = account.disabledAt;
    if (account.otp.lockedUntil > this.#clock()) view.lockedUntil = account.otp.lockedUntil;
    return view;
  }
}

function byName(a: { name: string }, b: { name: string }): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}
