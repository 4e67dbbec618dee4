// Task ids: what characters they may hold (no braces, so a task id is safe inside a Redis hash tag).
import { randomUUID } from 'node:crypto';
import { z } from 'zod';

export const TASK_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,199}$/;

export const taskIdSchema = z
  .string()
  .regex(
    TASK_ID_PATTERN,
    'a task id is 1-200 characters of A-Z a-z 0-9 . _ : / @ + = - starting with a letter or digit',
  );

export function isTaskId(value: unknown): value is string {
  return typeof value === 'string' && TASK_ID_PATTERN.test(value);
}

export function generateTaskId(): string {
  return `task-${randomUUID()}`;
}

/**
 * Task namespaces. A task a workload names for itself has no ':' and belongs to the SPIFFE ID that opened
 * it. Ids with ':' are platform tasks (`github:acme/api/42/1`): only an attestor (for its own namespace) or
 * an admin (binding a join token) can name one, so a workload cannot squat a task another identity will
 * be put into.
 */
export const callerTaskIdSchema = taskIdSchema.refine(
  (t) => !t.includes(':'),
  "a task you name may not contain ':' (reserved for platform tasks such as github:...)",
);

export const PLATFORM_TASK_PATTERN = /^[a-z0-9_]{1,32}:/;

export const platformTaskIdSchema = taskIdSchema.regex(
  PLATFORM_TASK_PATTERN,
  'a task bound by an admin is a platform task: <namespace>:<name>, e.g. release:42',
);
