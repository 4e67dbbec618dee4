// The AdminAccounts contract: one behaviour suite that every adapter (memory, Redis) runs.
import { generateSync } from 'otplib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AdminAccounts, AdminAccountsOptions } from '../../src/admin/accounts.ts';
import { WritError } from '../../src/errors.ts';
import { FakeClock } from '../helpers/clock.ts';

export interface AdminFixture {
  accounts: AdminAccounts;
  /** Another instance over the same storage, as a second broker replica opens it. */
  replica(): Promise<AdminAccounts>;
  close(): Promise<void>;
}

/** 15 s into a 30 s TOTP step, so that "the current step" is unambiguous. */
const START = 1_700_000_025_000;
const STEP_MS = 30_000;

/** The base32 secret from an otpauth URI, as an authenticator app reads it. */
export function secretOf(otpauthUri: string): string {
  const secret = new URL(otpauthUri).searchParams.get('secret');
  if (!secret) throw new Error('no secret in the otpauth URI');
  return secret;
}

/** The code an authenticator app shows at `ms`. */
export function codeAt(secret: string, ms: number): string {
  return generateSync({ secret, epoch: Math.floor(ms / 1000) });
}

/** A 6-digit code that is not valid for the steps around `ms`. */
function wrongCode(secret: string, ms: number): string {
  const valid = new Set([-1, 0, 1].map((d) => codeAt(secret, ms + d * STEP_MS)));
  for (let n = 0; ; n++) {
    const code = String(n).padStart(6, '0');
    if (!valid.has(code)) return code;
  }
}

export function adminAccountsContract(
  name: string,
  make: (clock: FakeClock, options?: AdminAccountsOptions) => Promise<AdminFixture>,
): void {
  describe(`AdminAccounts contract: ${name}`, () => {
    let fake: FakeClock;
    let fx: AdminFixture;
    let accounts: AdminAccounts;

    beforeEach(async () => {
      fake = new FakeClock(START);
      fx = await make(fake);
      accounts = fx.accounts;
    });

    afterEach(async () => {
      await fx.close();
    });

    const expectCode = async (promise: Promise<unknown>, code: string, status: number) => {
      const error = await promise.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(WritError);
      expect((error as WritError).code).toBe(code);
      expect((error as WritError).status).toBe(status);
      expect((error as WritError).toJSON().error).toBe(code);
    };

    describe('accounts', () => {
      it('creates an account with a bearer token and an otpauth URI for an authenticator app', async () => {
        const created = await accounts.create('alice');
        expect(created.name).toBe('alice');
        expect(created.token).toMatch(/^writ_admin_[A-Za-z0-9_-]{43}$/);
        expect(created.otpauthUri).toMatch(/^otpauth:\/\/totp\/Writ:alice\?secret=[A-Z2-7]{32}&issuer=Writ$/);
        expect(await accounts.get('alice')).toEqual({ name: 'alice', createdAt: START, disabled: false });
        const other = await accounts.create('bob.ops-2');
        expect(other.token).not.toBe(created.token);
        expect(secretOf(other.otpauthUri)).not.toBe(secretOf(created.otpauthUri));
      });

      it('keeps names unique, refuses the break-glass name and names out of pattern', async () => {
        await accounts.create('alice');
        await expectCode(accounts.create('alice'), 'ERR_ADMIN_EXISTS', 409);
        await expectCode(accounts.create('bootstrap'), 'ERR_ADMIN_EXISTS', 409);
        for (const bad of [
          'a',
          'Alice',
          '1alice',
          'al ice',
          'alice:x',
          `a${'b'.repeat(32)}`,
          '',
          'al{ice}',
        ]) {
          await expect(accounts.create(bad)).rejects.toBeInstanceOf(TypeError);
        }
        expect((await accounts.list()).map((a) => a.name)).toEqual(['alice']);
      });

      it('authenticates a token to its active account, and nothing else', async () => {
        const alice = await accounts.create('alice');
        const bob = await accounts.create('bob');
        expect(await accounts.authenticate(alice.token)).toEqual({
          name: 'alice',
          createdAt: START,
          disabled: false,
        });
        expect((await accounts.authenticate(bob.token))?.name).toBe('bob');
        const flipped = `${alice.token.slice(0, -1)}${alice.token.endsWith('A') ? 'B' : 'A'}`;
        for (const wrong of [flipped, `writ_admin_${'A'.repeat(43)}`, '', 'alice', `${alice.token}x`]) {
          expect(await accounts.authenticate(wrong)).toBeNull();
        }
      });

      it('lists by name, gets by name, and disables for good', async () => {
        await accounts.create('carol');
        const alice = await accounts.create('alice');
        fake.advance(5000);
        await accounts.create('bob');
        expect((await accounts.list()).map((a) => [a.name, a.createdAt])).toEqual([
          ['alice', START],
          ['bob', START + 5000],
          ['carol', START],
        ]);
        expect(await accounts.get('nobody')).toBeNull();
        expect(await accounts.get('NOT A NAME')).toBeNull();
        fake.advance(1000);
        expect(await accounts.disable('alice')).toEqual({
          name: 'alice',
          createdAt: START,
          disabled: true,
          disabledAt: START + 6000,
        });
        fake.advance(1000);
        expect((await accounts.disable('alice'))?.disabledAt).toBe(START + 6000);
        expect(await accounts.disable('nobody')).toBeNull();
        expect(await accounts.authenticate(alice.token)).toBeNull();
        expect(await accounts.verifyOtp('alice', codeAt(secretOf(alice.otpauthUri), fake.now()))).toEqual({
          ok: false,
          reason: 'unknown',
        });
        await expectCode(accounts.create('alice'), 'ERR_ADMIN_EXISTS', 409);
        expect((await accounts.list()).find((a) => a.name === 'alice')?.disabled).toBe(true);
      });
    });

    describe('TOTP', () => {
      let secret: string;

      beforeEach(async () => {
        secret = secretOf((await accounts.create('alice')).otpauthUri);
      });

      it('accepts a current code once and refuses its replay', async () => {
        const code = codeAt(secret, fake.now());
        const first = await accounts.verifyOtp('alice', code);
        expect(first).toEqual({ ok: true, step: Math.floor(fake.now() / STEP_MS) });
        expect(await accounts.verifyOtp('alice', code)).toEqual({
          ok: false,
          reason: 'replayed',
          failures: 1,
        });
        fake.advance(5000); // same step, later
        expect(await accounts.verifyOtp('alice', code)).toMatchObject({ ok: false, reason: 'replayed' });
      });

      it('takes `now` from the caller when given', async () => {
        const later = START + 10 * STEP_MS;
        expect(await accounts.verifyOtp('alice', codeAt(secret, later), later)).toMatchObject({ ok: true });
        expect(await accounts.verifyOtp('alice', codeAt(secret, START), START)).toMatchObject({ ok: false });
      });

      it('accepts one step of drift either way, and nothing older than the last accepted step', async () => {
        const now = fake.now();
        expect(await accounts.verifyOtp('alice', codeAt(secret, now - 2 * STEP_MS))).toMatchObject({
          ok: false,
          reason: 'invalid',
        });
        expect(await accounts.verifyOtp('alice', codeAt(secret, now + 2 * STEP_MS))).toMatchObject({
          ok: false,
          reason: 'invalid',
        });
        expect(await accounts.verifyOtp('alice', codeAt(secret, now - STEP_MS))).toMatchObject({ ok: true });
        expect(await accounts.verifyOtp('alice', codeAt(secret, now + STEP_MS))).toMatchObject({ ok: true });
        // the current step is older than the one just used
        expect(await accounts.verifyOtp('alice', codeAt(secret, now))).toMatchObject({
          ok: false,
          reason: 'replayed',
        });
        fake.advance(2 * STEP_MS);
        expect(await accounts.verifyOtp('alice', codeAt(secret, fake.now()))).toMatchObject({ ok: true });
      });

      it('counts malformed codes as failures', async () => {
        for (const code of ['', '12345', '1234567', 'abcdef']) {
          expect(await accounts.verifyOtp('alice', code)).toMatchObject({ ok: false, reason: 'invalid' });
        }
        expect(await accounts.verifyOtp('alice', ' 123456')).toMatchObject({
          reason: 'locked',
          lockedNow: true,
        });
        expect(await accounts.verifyOtp('alice', codeAt(secret, fake.now()))).toMatchObject({
          ok: false,
          reason: 'locked',
          lockedNow: false,
        });
      });

      it('locks after 5 consecutive failures, refuses even a right code while locked, unlocks after 15 min', async () => {
        const wrong = wrongCode(secret, fake.now());
        for (let i = 1; i <= 4; i++) {
          expect(await accounts.verifyOtp('alice', wrong)).toEqual({
            ok: false,
            reason: 'invalid',
            failures: i,
          });
        }
        const lockedUntil = fake.now() + 15 * 60_000;
        expect(await accounts.verifyOtp('alice', wrong)).toEqual({
          ok: false,
          reason: 'locked',
          lockedUntil,
          lockedNow: true,
        });
        expect((await accounts.get('alice'))?.lockedUntil).toBe(lockedUntil);
        expect(await accounts.verifyOtp('alice', codeAt(secret, fake.now()))).toEqual({
          ok: false,
          reason: 'locked',
          lockedUntil,
          lockedNow: false,
        });
        fake.advance(15 * 60_000 - 1000);
        expect(await accounts.verifyOtp('alice', codeAt(secret, fake.now()))).toMatchObject({
          reason: 'locked',
        });
        fake.advance(1000);
        expect((await accounts.get('alice'))?.lockedUntil).toBeUndefined();
        expect(await accounts.verifyOtp('alice', codeAt(secret, fake.now()))).toMatchObject({ ok: true });
        // the lock's failures are forgotten: a fresh count of 5 starts
        const again = wrongCode(secret, fake.now());
        expect(await accounts.verifyOtp('alice', again)).toEqual({
          ok: false,
          reason: 'invalid',
          failures: 1,
        });
      });

      it('counts only consecutive failures: a success resets the count', async () => {
        const wrong = wrongCode(secret, fake.now());
        for (let i = 0; i < 4; i++) await accounts.verifyOtp('alice', wrong);
        expect(await accounts.verifyOtp('alice', codeAt(secret, fake.now()))).toMatchObject({ ok: true });
        for (let i = 1; i <= 4; i++) {
          expect(await accounts.verifyOtp('alice', wrong)).toEqual({
            ok: false,
            reason: 'invalid',
            failures: i,
          });
        }
      });

      it('locks each account on its own', async () => {
        const bob = secretOf((await accounts.create('bob')).otpauthUri);
        const wrong = wrongCode(secret, fake.now());
        for (let i = 0; i < 5; i++) await accounts.verifyOtp('alice', wrong);
        expect(await accounts.verifyOtp('bob', codeAt(bob, fake.now()))).toMatchObject({ ok: true });
      });

      it('accepts one code exactly once when two replicas verify it at the same time', async () => {
        const replica = await fx.replica();
        const code = codeAt(secret, fake.now());
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? accounts : replica).verifyOtp('alice', code)),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(1);
        expect(results.filter((r) => !r.ok && r.reason === 'replayed')).toHaveLength(4);
        expect(results.filter((r) => !r.ok && r.reason === 'locked')).toHaveLength(5);
      });

      it('answers unknown for an unknown account', async () => {
        expect(await accounts.verifyOtp('nobody', codeAt(secret, fake.now()))).toEqual({
          ok: false,
          reason: 'unknown',
        });
        expect(await accounts.verifyOtp('Not Valid', '123456')).toEqual({ ok: false, reason: 'unknown' });
      });
    });

    it('applies a configured failure limit and lock time', async () => {
      const custom = await make(fake, { maxOtpFailures: 2, lockoutSeconds: 60 });
      try {
        const secret = secretOf((await custom.accounts.create('dave')).otpauthUri);
        const wrong = wrongCode(secret, fake.now());
        await custom.accounts.verifyOtp('dave', wrong);
        expect(await custom.accounts.verifyOtp('dave', wrong)).toMatchObject({
          reason: 'locked',
          lockedUntil: fake.now() + 60_000,
        });
        fake.advance(60_000);
        expect(await custom.accounts.verifyOtp('dave', codeAt(secret, fake.now()))).toMatchObject({
          ok: true,
        });
      } finally {
        await custom.close();
      }
    });
  });
}
