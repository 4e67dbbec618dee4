// Attacks on the read-only rate-limit check (heldMarks, one MGET) with two replicas on one real Redis: the check
// must write nothing, a block set on one replica holds on the other until its window ends and not a second
// longer, and keys do not get confused across attestors, addresses and limits.
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import type { Deps } from '../../src/deps.ts';
import { RateLimiter } from '../../src/http/rate-limit.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { RedisStore } from '../../src/store/redis/redis.store.ts';
import { FakeClock } from '../helpers/clock.ts';
import { deleteKeys, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

const WINDOW = 60;
const clients: Redis[] = [];
const prefixes: string[] = [];
afterAll(async () => {
  for (const p of prefixes) await deleteKeys(clients[0]!, p);
  for (const c of clients) c.disconnect();
});

async function replicas(n: number) {
  const url = await testRedisUrl();
  const prefix = uniquePrefix('rl-attacks');
  prefixes.push(prefix);
  // Start a little after a window boundary so that each test controls where it crosses one.
  const fake = new FakeClock((Math.floor(Date.now() / 1000 / WINDOW) + 1) * WINDOW * 1000 + 1000);
  const config = configSchema.parse({
    logLevel: 'silent',
    rateLimit: {
      enabled: true,
      windowSeconds: WINDOW,
      attestationFailuresPerAddress: 3,
      attestationFailuresPerAttestor: 10,
      adminAuthFailuresPerAddress: 3,
    },
  });
  const limiters: RateLimiter[] = [];
  for (let i = 0; i < n; i++) {
    const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, enableAutoPipelining: true });
    clients.push(redis);
    await redis.connect();
    const store = new RedisStore({ redis, prefix, clock: fake.clock, retentionSeconds: 60 });
    const deps = {
      store,
      clock: fake.clock,
      config,
      logger: createLogger('silent'),
      metrics: {},
    } as unknown as Deps;
    limiters.push(new RateLimiter(deps));
  }
  const countKeys = async () => {
    let n = 0;
    let cursor = '0';
    do {
      const [next, keys] = await clients[0]!.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      n += keys.length;
      cursor = next;
    } while (cursor !== '0');
    return n;
  };
  return { limiters, fake, countKeys };
}

describe('read-only rate-limit check across replicas', () => {
  it('checking writes nothing, however often and for whatever key', async () => {
    const { limiters, countKeys } = await replicas(1);
    const l = limiters[0]!;
    for (let i = 0; i < 50; i++) {
      expect(await l.attestationBlocked('join_token', `10.0.0.${i}`)).toBeUndefined();
      expect(await l.adminBlocked(`2001:db8::${i}`)).toBeUndefined();
    }
    expect(await countKeys()).toBe(0);
  });

  it('a block reached on A holds on B until the end of its window, then lifts on both', async () => {
    const { limiters, fake } = await replicas(2);
    const [a, b] = limiters as [RateLimiter, RateLimiter];
    for (let i = 0; i < 3; i++) await a.attestationFailed('join_token', '10.1.1.1');
    const onB = await b.attestationBlocked('join_token', '10.1.1.1');
    expect(onB).toMatchObject({ limit: 'attestation_address' });
    // The last second of the window: still blocked everywhere.
    const windowEnd = (Math.floor(fake.seconds() / WINDOW) + 1) * WINDOW;
    fake.set((windowEnd - 1) * 1000);
    expect(await a.attestationBlocked('join_token', '10.1.1.1')).toMatchObject({ retryAfter: 1 });
    expect(await b.attestationBlocked('join_token', '10.1.1.1')).toMatchObject({ retryAfter: 1 });
    fake.set(windowEnd * 1000);
    expect(await a.attestationBlocked('join_token', '10.1.1.1')).toBeUndefined();
    expect(await b.attestationBlocked('join_token', '10.1.1.1')).toBeUndefined();
    // A new window counts from zero, and blocks again at the limit (from either replica's failures).
    await a.attestationFailed('join_token', '10.1.1.1');
    await b.attestationFailed('join_token', '10.1.1.1');
    expect(await a.attestationBlocked('join_token', '10.1.1.1')).toBeUndefined();
    await b.attestationFailed('join_token', '10.1.1.1');
    expect(await a.attestationBlocked('join_token', '10.1.1.1')).toMatchObject({
      limit: 'attestation_address',
    });
  });

  it('failures of one address cannot be laundered through another form of it; others stay free', async () => {
    const { limiters } = await replicas(2);
    const [a, b] = limiters as [RateLimiter, RateLimiter];
    // The same /64 under several spellings, and IPv4 through its IPv4-mapped form.
    await a.attestationFailed('join_token', '2001:db8:1:2::1');
    await b.attestationFailed('join_token', '2001:DB8:0001:0002:ffff::9');
    await a.attestationFailed('join_token', '2001:db8:1:2:0:0:0:42');
    expect(await b.attestationBlocked('join_token', '2001:db8:1:2::abcd')).toMatchObject({
      limit: 'attestation_address',
    });
    expect(await b.attestationBlocked('join_token', '2001:db8:1:3::1')).toBeUndefined();
    await a.attestationFailed('join_token', '::ffff:192.0.2.7');
    await a.attestationFailed('join_token', '192.0.2.7');
    await b.attestationFailed('join_token', '::FFFF:192.0.2.7');
    expect(await a.attestationBlocked('join_token', '192.0.2.7')).toMatchObject({
      limit: 'attestation_address',
    });
    // Another attestor, and the admin limit, are separate budgets.
    expect(await a.attestationBlocked('x509pop', '192.0.2.7')).toBeUndefined();
    expect(await a.adminBlocked('192.0.2.7')).toBeUndefined();
  });

  it('the per-attestor block holds for every address once reached from many', async () => {
    const { limiters } = await replicas(2);
    const [a, b] = limiters as [RateLimiter, RateLimiter];
    for (let i = 0; i < 10; i++) await (i % 2 ? a : b).attestationFailed('join_token', `198.51.100.${i}`);
    expect(await a.attestationBlocked('join_token', '203.0.113.1')).toMatchObject({
      limit: 'attestation_attestor',
    });
    expect(await b.attestationBlocked('join_token', '203.0.113.2')).toMatchObject({
      limit: 'attestation_attestor',
    });
  });
});
