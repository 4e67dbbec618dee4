// Redis adapter of AdminAccounts: every admin key in one hash slot, Lua for each change of an account.
//
// Data model (`<p>` is the prefix, `writ:` by default; times epoch ms by the injected clock):
//   <p>{admin}:acct:<name>   hash    c createdAt, h token hash (hex SHA-256), s TOTP secret (base32), l last accepted
//                                    TOTP step (-1: none), f consecutive OTP failures, u OTP locked until (0: not),
//                                    d disabledAt (absent while active)
//   <p>{admin}:tok:<hash>    string  account name: a token is found by its hash (the token itself is never stored)
//   <p>{admin}:names         set     every account name (listing)
// The TOTP secret must be readable to check codes: protect Redis (ACLs, TLS, no shared access). Nothing expires.
// The {admin} hash tag keeps every key in one slot, so the scripts are atomic on a Redis Cluster too.
// Failures: fail closed, as the credential store (ERR_STORE_UNAVAILABLE; an unanswered write may still land).

import type { Redis } from 'ioredis';
import { z } from 'zod';
import { WritError } from '../errors.ts';
import { callRedis, defineScripts, malformed } from '../store/redis/redis-call.ts';
import { type Clock, systemClock } from '../store/types.ts';
import {
  type AdminAccount,
  type AdminAccounts,
  type AdminAccountsOptions,
  assertAdminName,
  BREAK_GLASS_NAME,
  type CreatedAdminAccount,
  generateAdminToken,
  hashAdminToken,
  isAdminName,
  isAdminTokenShaped,
  type OtpPolicy,
  type OtpResult,
  otpPolicy,
  sameHash,
} from './accounts.ts';
import { adminError } from './errors.ts';
import { generateTotpSecret, matchTotpStep, otpauthUri } from './totp.ts';

export interface RedisAdminAccountsOptions extends AdminAccountsOptions {
  /** Owned by the caller: never closed here. */
  redis: Redis;
  /** Key prefix; default `writ:`. */
  prefix?: string;
  clock?: Clock;
  /** A call that gets no answer within this many ms fails with ERR_STORE_UNAVAILABLE; default 2000. */
  commandTimeoutMs?: number;
}

export function adminKeys(prefix: string) {
  return {
    account: (name: string) => `${prefix}{admin}:acct:${name}`,
    token: (hash: string) => `${prefix}{admin}:tok:${hash}`,
    names: `${prefix}{admin}:names`,
  };
}

const SCRIPTS = {
  writAdminCreate: 'create-account-3.lua',
  writAdminVerifyOtp: 'verify-otp-1.lua',
  writAdminDisable: 'disable-account-1.lua',
} as const;

const CREATE_CODES = { 1: 'created', 0: 'taken', [-1]: 'token_collision' } as const;
const DISABLE_CODES = { 1: 'disabled', 0: 'already', [-1]: 'missing' } as const;

function mapCode<T extends Record<number, string>>(codes: T, code: unknown): T[keyof T] {
  const mapped = typeof code === 'number' ? (codes as Record<number, T[keyof T]>)[code] : undefined;
  if (mapped === undefined) throw malformed('script reply', new Error(`unknown code ${String(code)}`));
  return mapped;
}

const int = z
  .string()
  .regex(/^-?\d{1,16}$/)
  .transform(Number);

const BASE32 = /^[A-Z2-7]+=*$/;

const accountHash = z.object({
  c: int,
  h: z.string().regex(/^[0-9a-f]{64}$/),
  s: z.string().regex(BASE32),
  l: int,
  f: int,
  u: int,
  d: int.optional(),
});

type StoredAccount = z.output<typeof accountHash>;

const otpReply = z.tuple([z.number().int(), z.number().int()]);

export class RedisAdminAccounts implements AdminAccounts {
  readonly kind = 'redis' as const;
  readonly #redis: Redis;
  readonly #scripts: ReturnType<typeof defineScripts<keyof typeof SCRIPTS>>;
  readonly #keys: ReturnType<typeof adminKeys>;
  readonly #clock: Clock;
  readonly #policy: OtpPolicy;
  readonly #timeoutMs: number;

  constructor(opts: RedisAdminAccountsOptions) {
    this.#redis = opts.redis;
    this.#scripts = defineScripts(opts.redis, new URL('./lua/', import.meta.url), SCRIPTS);
    this.#keys = adminKeys(opts.prefix ?? 'writ:');
    this.#clock = opts.clock ?? systemClock;
    this.#policy = otpPolicy(opts);
    this.#timeoutMs = opts.commandTimeoutMs ?? 2000;
  }

  async create(name: string): Promise<CreatedAdminAccount> {
    assertAdminName(name);
    if (name === BREAK_GLASS_NAME) throw adminError('ERR_ADMIN_EXISTS');
    const secret = generateTotpSecret();
    // A collision of 256-bit random tokens does not happen; the script refuses one all the same.
    for (let attempt = 0; attempt < 3; attempt++) {
      const token = generateAdminToken();
      const tokenHash = hashAdminToken(token);
      const code = await this.#call(() =>
        this.#scripts.writAdminCreate(
          this.#keys.account(name),
          this.#keys.token(tokenHash),
          this.#keys.names,
          name,
          this.#clock(),
          tokenHash,
          secret,
        ),
      );
      const outcome = mapCode(CREATE_CODES, code);
      if (outcome === 'taken') throw adminError('ERR_ADMIN_EXISTS');
      if (outcome === 'created') return { name, token, otpauthUri: otpauthUri(name, secret) };
    }
    throw new WritError('server_error', undefined, { cause: new Error('no unused admin token drawn') });
  }

  async authenticate(token: string): Promise<AdminAccount | null> {
    if (!isAdminTokenShaped(token)) return null;
    const hash = hashAdminToken(token);
    const name = await this.#call(() => this.#redis.get(this.#keys.token(hash)));
    if (name === null || !isAdminName(name)) return null;
    const account = await this.#load(name);
    if (account === null || !sameHash(account.h, hash) || account.d !== undefined) return null;
    return this.#view(name, account);
  }

  async verifyOtp(name: string, code: string, now: number = this.#clock()): Promise<OtpResult> {
    if (!Number.isSafeInteger(now)) throw new TypeError('now must be an integer (epoch ms)');
    if (!isAdminName(name)) return { ok: false, reason: 'unknown' };
    // The secret never changes, so reading it first is safe; the state changes only in the script.
    const secret = await this.#call(() => this.#redis.hget(this.#keys.account(name), 's'));
    if (secret === null) return { ok: false, reason: 'unknown' };
    if (!BASE32.test(secret)) throw malformed('admin account');
    const step = typeof code === 'string' ? matchTotpStep(secret, code, now) : null;
    const raw = await this.#call(() =>
      this.#scripts.writAdminVerifyOtp(
        this.#keys.account(name),
        now,
        step ?? -1,
        this.#policy.maxFailures,
        this.#policy.lockoutMs,
      ),
    );
    const parsed = otpReply.safeParse(raw);
    if (!parsed.success) throw malformed('script reply', parsed.error);
    const [result, value] = parsed.data;
    switch (result) {
      case 1:
        return { ok: true, step: value };
      case 0:
        return { ok: false, reason: 'invalid', failures: value };
      case -1:
        return { ok: false, reason: 'replayed', failures: value };
      case -2:
        return { ok: false, reason: 'locked', lockedUntil: value, lockedNow: false };
      case -3:
        return { ok: false, reason: 'locked', lockedUntil: value, lockedNow: true };
      case -4:
        return { ok: false, reason: 'unknown' };
      default:
        throw malformed('script reply', new Error(`unknown code ${result}`));
    }
  }

  async list(): Promise<AdminAccount[]> {
    const names = (await this.#call(() => this.#redis.smembers(this.#keys.names))).filter(isAdminName).sort();
    if (names.length === 0) return [];
    const replies = await this.#call(async () => {
      const pipeline = this.#redis.pipeline();
      for (const name of names) pipeline.hgetall(this.#keys.account(name));
      const results = await pipeline.exec();
      if (results === null) throw new Error('pipeline aborted');
      return results.map(([error, value]) => {
        if (error) throw error;
        return value;
      });
    });
    const accounts: AdminAccount[] = [];
    names.forEach((name, i) => {
      const account = this.#parse(replies[i]);
      if (account !== null) accounts.push(this.#view(name, account));
    });
    return accounts;
  }

  async get(name: string): Promise<AdminAccount | null> {
    if (!isAdminName(name)) return null;
    const account = await this.#load(name);
    return account === null ? null : this.#view(name, account);
  }

  async disable(name: string): Promise<AdminAccount | null> {
    if (!isAdminName(name)) return null;
    const code = await this.#call(() =>
      this.#scripts.writAdminDisable(this.#keys.account(name), this.#clock()),
    );
    if (mapCode(DISABLE_CODES, code) === 'missing') return null;
    return this.get(name);
  }

  async #load(name: string): Promise<StoredAccount | null> {
    return this.#parse(await this.#call(() => this.#redis.hgetall(this.#keys.account(name))));
  }

  /** null for a missing account (HGETALL of no key is {}); server_error for a malformed one. */
  #parse(fields: unknown): StoredAccount | null {
    if (typeof fields === 'object' && fields !== null && Object.keys(fields).length === 0) return null;
    const parsed = accountHash.safeParse(fields);
    if (!parsed.success) throw malformed('admin account', parsed.error);
    return parsed.data;
  }

  #view(name: string, account: StoredAccount): AdminAccount {
    const view: AdminAccount = { name, createdAt: account.c, disabled: account.d !== undefined };
    if (account.d !== undefined) view.disabledAt = account.d;
    if (account.u > this.#clock()) view.lockedUntil = account.u;
    return view;
  }

  #call<T>(op: () => Promise<T>): Promise<T> {
    return callRedis(op, this.#timeoutMs);
  }
}
