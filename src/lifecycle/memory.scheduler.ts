// Dev-mode scheduler: in-process timers behind the TaskScheduler contract, with the same jobs and sweeper.

import type { TaskRecord } from '../store/types.ts';
import { fanOut, type JobDeps, sweep, taskDeadline } from './jobs.ts';
import type { TaskScheduler } from './scheduler.ts';

// setTimeout cannot wait longer than 2^31-1 ms; longer deadlines are left to the sweeper.
const MAX_TIMER_MS = 2 ** 31 - 1;

export class MemoryScheduler implements TaskScheduler {
  readonly kind = 'memory' as const;
  readonly #deps: JobDeps;
  readonly #timers = new Map<string, NodeJS.Timeout>();
  readonly #sweeper: NodeJS.Timeout;
  #running = new Set<Promise<unknown>>();
  #closed = false;

  constructor(deps: JobDeps) {
    this.#deps = deps;
    this.#sweeper = setInterval(
      () => this.#run('sweep', () => sweep(deps)),
      deps.config.lifecycle.sweepIntervalMs,
    );
    this.#sweeper.unref();
  }

  #run(job: string, fn: () => Promise<unknown>): void {
    if (this.#closed) return;
    const p = fn()
      .catch((err: unknown) =>
        this.#deps.logger.error({ err, job }, 'lifecycle job failed; the sweeper retries'),
      )
      .finally(() => this.#running.delete(p));
    this.#running.add(p);
  }

  async taskOpened(task: TaskRecord): Promise<void> {
    if (this.#closed || this.#timers.has(task.id)) return;
    const delay = task.deadline * 1000 - this.#deps.clock();
    if (delay > MAX_TIMER_MS) return;
    const timer = setTimeout(
      () => {
        this.#timers.delete(task.id);
        this.#run('task-deadline', () => taskDeadline(this.#deps, task.id));
      },
      Math.max(0, delay),
    );
    timer.unref();
    this.#timers.set(task.id, timer);
  }

  async taskEnded(taskId: string): Promise<void> {
    const timer = this.#timers.get(taskId);
    if (timer) clearTimeout(timer);
    this.#timers.delete(taskId);
    this.#run('task-end', () => fanOut(this.#deps, taskId));
  }

  /** Waits for running jobs (tests use it to observe a finished fan-out). */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#sweeper);
    for (const timer of this.#timers.values()) clearTimeout(timer);
    this.#timers.clear();
    await this.idle();
  }
}
