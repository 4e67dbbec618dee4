// Runs the scheduler contract against the in-process scheduler and against BullMQ with a real worker.
import { Redis } from 'ioredis';
import { configSchema } from '../../src/config/schema.ts';
import { BullScheduler, startLifecycleWorker } from '../../src/lifecycle/bullmq.ts';
import { MemoryScheduler } from '../../src/lifecycle/memory.scheduler.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { MemoryStore } from '../../src/store/memory/memory.store.ts';
import { RedisStore } from '../../src/store/redis/redis.store.ts';
import { systemClock } from '../../src/store/types.ts';
import { deleteKeys, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { schedulerContract } from './scheduler.contract.ts';

const config = configSchema.parse({ lifecycle: { sweepIntervalMs: 300, jobLockMs: 1_000 } });
const logger = createLogger('silent');

schedulerContract('memory', async () => {
  const store = new MemoryStore({ clock: systemClock });
  const scheduler = new MemoryScheduler({ store, clock: systemClock, logger, config });
  return { store, scheduler, close: () => scheduler.close() };
});

schedulerContract('bullmq', async () => {
  const url = await testRedisUrl();
  const prefix = uniquePrefix('sched');
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const store = new RedisStore({ redis, prefix, clock: systemClock });
  const scheduler = new BullScheduler({ connection: redis, prefix, clock: systemClock, attempts: 5 });
  const worker = await startLifecycleWorker(
    { store, clock: systemClock, logger, config },
    { redisUrl: url, prefix },
  );
  return {
    store,
    scheduler,
    async close() {
      await worker.close();
      await scheduler.close();
      await store.close();
      await deleteKeys(redis, prefix);
      redis.disconnect();
    },
  };
});
