// Production lifecycle on BullMQ: the producer (scheduler) the broker uses, and the worker that runs the jobs.
import { type Job, Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { type RotationConfig, rotateDue } from '../keys/rotation.ts';
import type { TaskRecord } from '../store/types.ts';
import { endOverdue, fanOut, type JobDeps, sweep, taskDeadline } from './jobs.ts';
import type { TaskScheduler } from './scheduler.ts';

export const QUEUE_NAME = 'writ-lifecycle';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

export type LifecycleJobName = 'task-deadline' | 'task-end' | 'sweep' | 'deadlines' | 'rotate-keys';
export interface LifecycleJobData {
  task?: string;
}

/** BullMQ keys live under the broker's own prefix, so that brokers sharing a Redis stay apart. */
export function bullPrefix(redisPrefix: string): string {
  return `${redisPrefix}bull`;
}

// Job ids may not contain ':' (task ids may): encode them.
const jobId = (kind: 'end', task: string) => `${kind}-${Buffer.from(task).toString('base64url')}`;

export class BullScheduler implements TaskScheduler {
  readonly kind = 'bullmq' as const;
  readonly #queue: Queue<LifecycleJobData, unknown, LifecycleJobName>;
  readonly #attempts: number;

  /** `connection` is the broker's (fail-fast) client; it is shared, never closed here. */
  constructor(opts: { connection: Redis; prefix: string; clock: () => number; attempts: number }) {
    this.#queue = new Queue(QUEUE_NAME, { connection: opts.connection, prefix: bullPrefix(opts.prefix) });
    // Failures surface through the calls that fail (the sweeper covers a lost job).
    this.#queue.on('error', () => {});
    this.#attempts = opts.attempts;
  }

  #options(id: string) {
    return {
      jobId: id,
      attempts: this.#attempts,
      backoff: { type: 'exponential', delay: 500 },
      removeOnComplete: true,
      removeOnFail: { age: 7 * 86_400 },
    };
  }

  /**
   * Nothing to do: the issuance that opened the task put it in the store's deadline index, atomically, and the
   * worker's `deadlines` job ends it from there (every `lifecycle.deadlineIntervalMs`). A delayed job per task
   * cost ~1 KB of Redis per task and the heaviest script of an issuance. (`task-deadline` jobs queued by older
   * brokers still run.)
   */
  async taskOpened(_task: TaskRecord): Promise<void> {}

  async taskEnded(taskId: string): Promise<void> {
    await this.#queue.add('task-end', { task: taskId }, this.#options(jobId('end', taskId)));
  }

  async close(): Promise<void> {
    await this.#queue.close();
  }
}

export interface LifecycleWorker {
  close(): Promise<void>;
}

/**
 * Starts the worker: task deadlines, fan-out on task end, and the repeatable sweeper. `redisUrl` gives it
 * connections of its own (blocking reads need `maxRetriesPerRequest: null`).
 */
export async function startLifecycleWorker(
  deps: JobDeps,
  opts: {
    redisUrl: string;
    prefix: string;
    concurrency?: number;
    closeGraceMs?: number;
    /** How often the repeatable jobs are registered again (they are lost if Redis restarts empty); 10 s. */
    rescheduleMs?: number;
    /** Given: the worker also runs key rotation (a repeatable job every keys.rotation.checkInterval). */
    rotation?: RotationConfig | undefined;
  },
): Promise<LifecycleWorker> {
  const closeGraceMs = opts.closeGraceMs ?? 5_000;
  const { lifecycle } = deps.config;
  const prefix = bullPrefix(opts.prefix);
  const connection = { url: opts.redisUrl, maxRetriesPerRequest: null };
  const process = async (job: Job<LifecycleJobData, unknown, LifecycleJobName>) => {
    switch (job.name) {
      case 'task-deadline':
        return job.data.task ? taskDeadline(deps, job.data.task) : undefined;
      case 'task-end':
        return job.data.task ? fanOut(deps, job.data.task) : undefined;
      case 'sweep':
        return sweep(deps);
      case 'deadlines':
        return endOverdue(deps);
      case 'rotate-keys':
        return opts.rotation ? rotateDue({ ...deps, config: opts.rotation }) : undefined;
      default:
        deps.logger.warn({ job: job.name }, 'unknown lifecycle job ignored');
        return undefined;
    }
  };
  const worker = new Worker<LifecycleJobData, unknown, LifecycleJobName>(QUEUE_NAME, process, {
    connection,
    prefix,
    concurrency: opts.concurrency ?? 8,
    lockDuration: lifecycle.jobLockMs,
    stalledInterval: Math.max(250, Math.floor(lifecycle.jobLockMs / 2)),
    maxStalledCount: 5,
  });
  worker.on('failed', (job, err) =>
    deps.logger.warn(
      { job: job?.name, task: job?.data.task, attempt: job?.attemptsMade, err },
      'lifecycle job failed',
    ),
  );
  worker.on('error', (err) => deps.logger.warn({ err: { message: err.message } }, 'lifecycle worker error'));

  const queue = new Queue<LifecycleJobData, unknown, LifecycleJobName>(QUEUE_NAME, {
    connection: { url: opts.redisUrl },
    prefix,
  });
  queue.on('error', (err) => deps.logger.warn({ err: { message: err.message } }, 'lifecycle queue error'));
  const schedules: Array<[LifecycleJobName, number]> = [
    ['sweep', lifecycle.sweepIntervalMs],
    ['deadlines', lifecycle.deadlineIntervalMs],
  ];
  if (opts.rotation) schedules.push(['rotate-keys', opts.rotation.keys.rotation.checkInterval * 1000]);
  const ensureSchedules = async () => {
    for (const [name, every] of schedules) {
      await queue.upsertJobScheduler(
        name,
        { every },
        { name, data: {}, opts: { removeOnComplete: true, removeOnFail: { count: 100 } } },
      );
    }
  };
  await ensureSchedules();
  // Repeatable jobs live in Redis: a Redis restarted empty under a running worker would lose them, and tasks
  // would no longer be ended at their deadline. Upserting is idempotent; it is redone every so often.
  const reschedule = setInterval(() => {
    ensureSchedules().catch((err: unknown) =>
      deps.logger.warn({ err }, 'could not re-register the repeatable lifecycle jobs; retrying'),
    );
  }, opts.rescheduleMs ?? 10_000);
  reschedule.unref();
  await worker.waitUntilReady();
  deps.logger.info({ queue: QUEUE_NAME, prefix }, 'lifecycle worker started');
  return {
    async close() {
      clearInterval(reschedule);
      // A worker whose blocking connection is stuck (Redis restarted under it) may never finish a graceful
      // close; after the grace period its connections are cut. Jobs are idempotent and retried.
      const graceful = worker.close();
      const finished = await Promise.race([graceful.then(() => true), sleep(closeGraceMs).then(() => false)]);
      if (!finished) {
        // Seen when Redis restarted empty under a running worker: BullMQ's close never settles. Shutdown
        // must not hang on it; whatever the worker held is retried from Redis by the next worker.
        deps.logger.warn('lifecycle worker did not close in time; abandoning its connections');
        await Promise.race([worker.disconnect().catch(() => undefined), sleep(1_000)]);
      }
      await Promise.race([queue.close().catch(() => undefined), sleep(closeGraceMs)]);
    },
  };
}
