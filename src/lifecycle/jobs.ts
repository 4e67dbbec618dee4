// The lifecycle jobs themselves, shared by the BullMQ worker and the in-process dev scheduler.
import type { Logger } from 'pino';
import type { WritConfig } from '../config/schema.ts';
import { type Clock, type CredentialStore, seconds } from '../store/types.ts';

export interface JobDeps {
  store: CredentialStore;
  clock: Clock;
  logger: Logger;
  config: Pick<WritConfig, 'lifecycle' | 'credentials'>;
}

export const REASON_DEADLINE = 'task_deadline';
/** No credential lives longer than this (the config schema's cap on credentials.maxTtl). */
export const HARD_MAX_TTL = 86_400;
// Room for clock differences between brokers, workers and Redis.
const FEED_TRIM_MARGIN = 3_600;
export const REASON_COMPLETED = 'task_completed';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Revokes every credential of an ended task, batch by batch; safe to run twice or resume after a crash. */
export async function fanOut(deps: JobDeps, task: string): Promise<number> {
  const { fanoutBatchSize, fanoutPauseMs } = deps.config.lifecycle;
  // The store reports a task that has not ended as never done: only an ended task has anything to fan out
  // (a task past its deadline but not yet ended reads 'expired' without endedAt: taskDeadline ends it).
  const record = await deps.store.getTask(task);
  if (record && record.endedAt === undefined) return 0;
  let revoked = 0;
  for (;;) {
    const step = await deps.store.fanOutTask(task, fanoutBatchSize);
    revoked += step.revoked;
    if (step.done) break;
    if (fanoutPauseMs > 0) await sleep(fanoutPauseMs);
  }
  if (revoked > 0) deps.logger.info({ task, revoked }, 'task fan-out finished');
  return revoked;
}

/** The deadline job: ends the task if it is still active and due, then fans out. */
export async function taskDeadline(
  deps: JobDeps,
  task: string,
): Promise<'ended' | 'not_due' | 'gone' | 'already_ended'> {
  const record = await deps.store.getTask(task);
  if (!record) return 'gone';
  const now = seconds(deps.clock);
  if (record.status === 'active') {
    // Jobs may fire a moment early; the sweeper picks up a task that is not due yet.
    return 'not_due';
  }
  // Past its deadline but not yet ended in the store (the status 'expired' is derived): end it now.
  const result =
    record.endedAt === undefined
      ? await deps.store.endTask(task, { status: 'expired', reason: REASON_DEADLINE, at: now })
      : null;
  await fanOut(deps, task);
  if (result?.ended) {
    deps.logger.info({ task }, 'task deadline passed: task ended');
    return 'ended';
  }
  return 'already_ended';
}

/**
 * Ends the active tasks whose deadline has passed, from the store's deadline index (every task is in it from
 * the issuance that opened it), a few at a time, and fans them out. The BullMQ worker runs it every
 * `lifecycle.deadlineIntervalMs`: no job per task.
 */
export async function endOverdue(deps: JobDeps, limit = 500, concurrency = 8): Promise<number> {
  const { overdue } = await deps.store.pendingTasks(seconds(deps.clock), limit);
  let next = 0;
  const lane = async () => {
    while (next < overdue.length) await taskDeadline(deps, overdue[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, overdue.length) }, lane));
  return overdue.length;
}

/** Reconciles what lost jobs left behind, and trims the revocation feed. */
export async function sweep(deps: JobDeps, limit = 500): Promise<{ overdue: number; ending: number }> {
  const now = seconds(deps.clock);
  const pending = await deps.store.pendingTasks(now, limit);
  for (const task of pending.overdue) await taskDeadline(deps, task);
  for (const task of pending.ending) await fanOut(deps, task);
  // A feed event matters only until the credential it names expires. Trim by the schema's hard cap, not the
  // configured maxTtl: lowering maxTtl must not drop revocations of credentials minted under the old cap.
  await deps.store.trimRevocations(now - HARD_MAX_TTL - FEED_TRIM_MARGIN);
  if (pending.overdue.length + pending.ending.length > 0) {
    deps.logger.info(
      { overdue: pending.overdue.length, ending: pending.ending.length },
      'sweeper reconciled tasks',
    );
  }
  return { overdue: pending.overdue.length, ending: pending.ending.length };
}
