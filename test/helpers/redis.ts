// Redis for tests: the URL the global setup published, per-test key prefixes, and cleanup by prefix.
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterEach, inject } from 'vitest';

declare module 'vitest' {
  export interface ProvidedContext {
    /** The Redis every test may use: REDIS_URL, or a private redis-server the global setup started. */
    redisUrl: string;
  }
}

export async function testRedisUrl(): Promise<string> {
  return process.env.REDIS_URL || inject('redisUrl');
}

/** A key prefix no other test uses, e.g. `test:entries:3f9a0c1b2d4e:`. */
export function uniquePrefix(name: string): string {
  const safe = name.replace(/[^A-Za-z0-9_.-]+/g, '-').slice(0, 40);
  return `test:${safe}:${randomBytes(6).toString('hex')}:`;
}

/** A client for the test Redis; quit it when done. */
export async function testRedis(): Promise<Redis> {
  const redis = new Redis(await testRedisUrl(), { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  return redis;
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  const match = `${prefix.replace(/[*?[\]\\]/g, '\\$&')}*`;
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 1000);
    if (keys.length > 0) await redis.unlink(...keys);
    cursor = next;
  } while (cursor !== '0');
}

/**
 * The connections a test file opens, each with the key prefix it writes under: after each test, every prefix's
 * keys are deleted (through a connection still up) and every connection is closed. Call once, at module level.
 */
export function closedAfterEach(): { redis: Redis; prefix: string }[] {
  const opened: { redis: Redis; prefix: string }[] = [];
  afterEach(async () => {
    const used = opened.splice(0);
    const cleaned = new Set<string>();
    for (const { redis, prefix } of used) {
      if (cleaned.has(prefix) || redis.status !== 'ready') continue;
      await deleteKeys(redis, prefix);
      cleaned.add(prefix);
    }
    for (const { redis } of used) redis.disconnect();
  });
  return opened;
}
