// Vitest global setup: makes a Redis available to every test (REDIS_URL, else a private redis-server).
import { Redis } from 'ioredis';
import type { TestProject } from 'vitest/node';
import { startRedisServer } from './redis-server.ts';

const HOW_TO_FIX = 'the tests need Redis: install redis-server (on PATH) or set REDIS_URL=redis://host:port';

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const external = process.env.REDIS_URL;
  if (external) {
    await assertAnswers(external);
    project.provide('redisUrl', external);
    return async () => {};
  }
  let server: Awaited<ReturnType<typeof startRedisServer>>;
  try {
    server = await startRedisServer();
  } catch (cause) {
    throw new Error(`${HOW_TO_FIX} (starting redis-server failed: ${String(cause)})`, { cause });
  }
  project.provide('redisUrl', server.url);
  return () => server.stop();
}

async function assertAnswers(url: string): Promise<void> {
  const redis = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    connectTimeout: 3000,
  });
  redis.on('error', () => {}); // reported below
  try {
    await redis.connect();
    await redis.ping();
  } catch (cause) {
    throw new Error(`REDIS_URL does not answer PING; ${HOW_TO_FIX}`, { cause });
  } finally {
    redis.disconnect();
  }
}
