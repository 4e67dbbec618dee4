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
