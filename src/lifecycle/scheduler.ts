// The scheduler contract: what the broker tells the job system about tasks (BullMQ and in-process adapters).
import type { TaskRecord } from '../store/types.ts';

export interface TaskScheduler {
  readonly kind: 'memory' | 'bullmq';
  /** A task was opened: end it at its deadline. */
  taskOpened(task: TaskRecord): Promise<void>;
  /** A task has ended: revoke what is left of it now. */
  taskEnded(taskId: string): Promise<void>;
  close(): Promise<void>;
}
