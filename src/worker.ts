// Entry point of `npm run worker` / `writ worker`: the lifecycle worker alone (production mode only).
import { pathToFileURL } from 'node:url';
import { ConfigError, loadConfig } from './config/loader.ts';
import { startLifecycleWorker } from './lifecycle/bullmq.ts';
import { createLogger } from './observability/logger.ts';
import { createRedis } from './server.ts';
import { RedisStore } from './store/redis/redis.store.ts';
import { systemClock } from './store/types.ts';

export async function runWorker(env: NodeJS.ProcessEnv = process.env): Promise<() => Promise<void>> {
  const { config } = loadConfig(env);
  if (!config.redis.url)
    throw new ConfigError(['redis.url: the worker needs REDIS_URL (dev mode runs jobs in-process)']);
  const logger = createLogger(config.logLevel).child({ role: 'worker' });
  const redis = createRedis(config.redis.url, config.redis.commandTimeoutMs);
  redis.on('error', (err: Error) => logger.warn({ err: { message: err.message } }, 'redis connection error'));
  await redis.connect();
  const store = new RedisStore({
    redis,
    prefix: config.redis.prefix,
    clock: systemClock,
    retentionSeconds: config.credentials.retention,
    commandTimeoutMs: config.redis.commandTimeoutMs,
  });
  const worker = await startLifecycleWorker(
    { store, clock: systemClock, logger, config },
    { redisUrl: config.redis.url, prefix: config.redis.prefix, rotation: config },
  );
  return async () => {
    await worker.close();
    await store.close();
    redis.disconnect();
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runWorker().then(
    (close) => {
      let stopping = false;
      const stop = () => {
        if (stopping) return;
        stopping = true;
        close().then(
          () => process.exit(0),
          () => process.exit(1),
        );
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    },
    (e: unknown) => {
      process.stderr.write(`writ worker: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
