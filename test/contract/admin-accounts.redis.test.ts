// Runs the AdminAccounts contract against the Redis adapter, plus its data layout and failure behaviour.
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { adminKeys, RedisAdminAccounts } from '../../src/admin/redis.accounts.ts';
import { WritError } from '../../src/errors.ts';
import { FakeClock } from '../helpers/clock.ts';
import { closedAfterEach, testRedis, uniquePrefix } from '../helpers/redis.ts';
import { adminAccountsContract, codeAt, secretOf } from './admin-accounts.contract.ts';

const opened = closedAfterEach();

async function open(name: string) {
  const redis = await testRedis();
  const prefix = uniquePrefix(name);
  opened.push({ redis, prefix });
  return { redis, prefix, keys: adminKeys(prefix) };
}

adminAccountsContract('redis', async (fake, options) => {
  const { redis, prefix } = await open('admin-contract');
  const clients: Redis[] = [];
  return {
    accounts: new RedisAdminAccounts({ redis, prefix, clock: fake.clock, ...options }),
    // another replica: its own connection and instance over the same keys
    replica: async () => {
      const other = await testRedis();
      clients.push(other);
      return new RedisAdminAccounts({ redis: other, prefix, clock: fake.clock, ...options });
    },
    close: async () => {
      for (const client of clients) client.disconnect();
    },
  };
});

/** Every key under the prefix with everything it holds, as text. */
async function dump(redis: Redis, prefix: string): Promise<Record<string, string>> {
  const keys = await redis.keys(`${prefix}*`);
  const out: Record<string, string> = {};
  for (const key of keys) {
    const type = await redis.type(key);
    if (type === 'string') out[key] = (await redis.get(key)) ?? '';
    else if (type === 'hash') out[key] = JSON.stringify(await redis.hgetall(key));
    else if (type === 'set') out[key] = JSON.stringify(await redis.smembers(key));
    else out[key] = `unexpected ${type}`;
  }
  return out;
}

describe('RedisAdminAccounts', () => {
  it('stores the token only as its SHA-256: no token and no writ_admin_ anywhere in Redis', async () => {
    const { redis, prefix, keys } = await open('admin-layout');
    const fake = new FakeClock(1_700_000_025_000);
    const accounts = new RedisAdminAccounts({ redis, prefix, clock: fake.clock });
    const alice = await accounts.create('alice');
    await accounts.verifyOtp('alice', codeAt(secretOf(alice.otpauthUri), fake.now()));
    await accounts.disable('alice');
    const stored = await dump(redis, prefix);
    const text = JSON.stringify(stored);
    expect(text).not.toContain(alice.token);
    expect(text).not.toContain(alice.token.slice('writ_admin_'.length));
    expect(text.toLowerCase()).not.toContain('writ_admin_');

    const { createHash } = await import('node:crypto');
    const hash = createHash('sha256').update(alice.token).digest('hex');
    expect(Object.keys(stored).sort()).toEqual([keys.account('alice'), keys.names, keys.token(hash)].sort());
    expect(keys.account('alice')).toBe(`${prefix}{admin}:acct:alice`);
    expect(await redis.hgetall(keys.account('alice'))).toEqual({
      c: String(fake.now()),
      h: hash,
      s: secretOf(alice.otpauthUri),
      l: String(Math.floor(fake.now() / 30_000)),
      f: '0',
      u: '0',
      d: String(fake.now()),
    });
    expect(await redis.get(keys.token(hash))).toBe('alice');
    expect(await redis.smembers(keys.names)).toEqual(['alice']);
  });

  it('fails closed with ERR_STORE_UNAVAILABLE when Redis does not answer', async () => {
    const down = await testRedis();
    down.disconnect();
    const accounts = new RedisAdminAccounts({
      redis: down,
      prefix: uniquePrefix('admin-down'),
      commandTimeoutMs: 200,
    });
    for (const call of [
      () => accounts.create('alice'),
      () => accounts.authenticate(`writ_admin_${'a'.repeat(43)}`),
      () => accounts.verifyOtp('alice', '123456'),
      () => accounts.list(),
    ]) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WritError);
      expect((error as WritError).code).toBe('ERR_STORE_UNAVAILABLE');
    }
  });

  it('treats a malformed stored account as server_error, not as an account', async () => {
    const { redis, prefix, keys } = await open('admin-malformed');
    const accounts = new RedisAdminAccounts({ redis, prefix });
    const alice = await accounts.create('alice');
    await redis.hset(keys.account('alice'), 'f', 'many');
    await expect(accounts.get('alice')).rejects.toMatchObject({ code: 'server_error' });
    await expect(accounts.authenticate(alice.token)).rejects.toMatchObject({ code: 'server_error' });
  });
});
