// Task and credential lifecycle operations the HTTP layer calls: complete, revoke, bulk revoke.
import type { Logger } from 'pino';
import type { AuditLog } from '../audit/audit-log.ts';
import { WritError } from '../errors.ts';
import {
  type Clock,
  type CredentialFilter,
  type CredentialStore,
  type CredentialView,
  seconds,
  type TaskEndStatus,
  type TaskRecord,
} from '../store/types.ts';
import { REASON_COMPLETED } from './jobs.ts';
import type { TaskScheduler } from './scheduler.ts';

export const REASON_ADMIN = 'admin';
export const REASON_HOLDER = 'holder';
export const REASON_PATTERN = /^[a-z][a-z0-9_]{0,63}$/;

export type BulkSelector =
  | { task: string }
  | { spiffeId: string }
  | { spiffeIdPrefix: string }
  | { attestor: string };

export class Lifecycle {
  readonly #store: CredentialStore;
  readonly #scheduler: TaskScheduler;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #audit: AuditLog | undefined;

  constructor(opts: {
    store: CredentialStore;
    scheduler: TaskScheduler;
    clock: Clock;
    logger: Logger;
    audit?: AuditLog;
  }) {
    this.#store = opts.store;
    this.#scheduler = opts.scheduler;
    this.#clock = opts.clock;
    this.#logger = opts.logger;
    this.#audit = opts.audit;
  }

  get scheduler(): TaskScheduler {
    return this.#scheduler;
  }

  /**
   * Ends a task at most once. Every credential of it reads inactive from this moment (the task's status is
   * checked on every read); the fan-out that marks each credential and feeds relying parties follows.
   */
  async endTask(task: string, status: TaskEndStatus, reason: string, actor = 'system'): Promise<TaskRecord> {
    const result = await this.#store.endTask(task, { status, reason, at: seconds(this.#clock) });
    if (!result) throw new WritError('ERR_NOT_FOUND', 'no such task');
    if (!result.ended) throw new WritError('ERR_TASK_ENDED');
    this.#logger.info({ task, status, reason }, 'task ended');
    await this.#audit?.append({
      type: 'task.ended',
      actor,
      subject: `task:${task}`,
      details: { status, reason },
    });
    try {
      await this.#scheduler.taskEnded(task);
    } catch (err) {
      // The task has ended and reads inactive; the sweeper finishes the fan-out the job would have done.
      this.#logger.warn({ err, task }, 'could not enqueue the fan-out; the sweeper will do it');
    }
    return result.task;
  }

  completeTask(task: string, actor = 'system'): Promise<TaskRecord> {
    return this.endTask(task, 'completed', REASON_COMPLETED, actor);
  }

  async revokeCredential(
    id: string,
    reason: string,
    task?: string,
    actor = 'system',
  ): Promise<{ revoked: boolean; view: CredentialView }> {
    const result = await this.#store.revokeCredential(id, reason, seconds(this.#clock), task);
    if (!result) throw new WritError('ERR_NOT_FOUND', 'no such credential');
    if (result.revoked) {
      this.#logger.info({ id, task: result.view.credential.task, reason }, 'credential revoked');
      await this.#audit?.append({
        type: 'credential.revoked',
        actor,
        subject: `credential:${id}`,
        details: { task: result.view.credential.task, reason },
      });
    }
    return result;
  }

  /** Revokes every live credential the selector names; by task, the task itself ends. */
  async bulkRevoke(
    selector: BulkSelector,
    reason: string,
    actor = 'system',
  ): Promise<{ revoked: number; tasks: number }> {
    if ('task' in selector) {
      const task = await this.#store.getTask(selector.task);
      if (!task) throw new WritError('ERR_NOT_FOUND', 'no such task');
      const count = await this.#store.countTaskCredentials(selector.task);
      await this.endTask(selector.task, 'revoked', reason, actor);
      return { revoked: count, tasks: 1 };
    }
    const filter: CredentialFilter = { ...selector, status: 'active' };
    let revoked = 0;
    let cursor: string | undefined;
    do {
      const page = await this.#store.listCredentials(filter, { cursor, limit: 500 });
      for (const view of page.items) {
        const r = await this.#store.revokeCredential(
          view.credential.id,
          reason,
          seconds(this.#clock),
          view.credential.task,
        );
        if (r?.revoked) revoked += 1;
      }
      cursor = page.next;
    } while (cursor);
    this.#logger.info({ selector, reason, revoked }, 'bulk revocation');
    await this.#audit?.append({
      type: 'credential.bulk_revoked',
      actor,
      subject: Object.entries(selector)
        .map(([k, v]) => `${k}:${v}`)
        .join(','),
      details: { reason, revoked },
    });
    return { revoked, tasks: 0 };
  }
}
