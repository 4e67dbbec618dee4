// The scheduler contract: every TaskScheduler (in-process and BullMQ) ends tasks at their deadline, fans out
// ended tasks, and its sweeper reconciles what a lost job left behind.
import { afterEach, describe, expect, it } from 'vitest';
import type { TaskScheduler } from '../../src/lifecycle/scheduler.ts';
import { type CredentialRecord, type CredentialStore, seconds, systemClock } from '../../src/store/types.ts';
import { waitFor } from '../helpers/wait.ts';

export interface SchedulerUnderTest {
  store: CredentialStore;
  scheduler: TaskScheduler;
  close(): Promise<void>;
}

const OWNER = 'spiffe://example.org/sched';

function credential(id: string, task: string, expiresAt: number): CredentialRecord {
  const now = seconds(systemClock);
  return {
    id,
    type: 'jwt',
    spiffeId: OWNER,
    task,
    attestor: 'join_token',
    audience: ['a'],
    issuedAt: now,
    expiresAt,
    kid: 'k',
  };
}

async function openTask(store: CredentialStore, task: string, deadlineIn: number, count: number) {
  const now = seconds(systemClock);
  const deadline = now + deadlineIn;
  let record = null;
  for (let i = 0; i < count; i++) {
    const r = await store.recordIssuance(credential(`${task}-c${i}`, task, deadline), {
      id: task,
      owner: OWNER,
      origin: 'caller',
      deadline,
    });
    expect(r.ok).toBe(true);
    if (r.ok) record = r.task;
  }
  return record!;
}

async function allRevoked(store: CredentialStore, task: string, count: number): Promise<boolean> {
  for (let i = 0; i < count; i++) {
    const view = await store.getCredential(`${task}-c${i}`, task);
    if (view?.credential.revokedAt === undefined) return false;
  }
  return true;
}

async function credentialEvents(store: CredentialStore, task: string) {
  return (await store.readRevocations(undefined, 1000)).filter(
    (e) => e.task === task && e.kind === 'credential',
  );
}

export function schedulerContract(name: string, make: () => Promise<SchedulerUnderTest>): void {
  describe(`TaskScheduler contract: ${name}`, () => {
    let sut: SchedulerUnderTest | undefined;
    afterEach(async () => {
      await sut?.close();
      sut = undefined;
    });

    it('ends a task at its deadline', async () => {
      sut = await make();
      const { store, scheduler } = sut;
      const task = await openTask(store, `dl-${Date.now()}`, 1, 3);
      await scheduler.taskOpened(task);
      const ended = await waitFor(
        async () => {
          const t = await store.getTask(task.id);
          return t?.endedAt !== undefined ? t : undefined;
        },
        { timeoutMs: 6_000, what: 'the deadline job' },
      );
      expect(ended).toMatchObject({ status: 'expired', endReason: 'task_deadline' });
    });

    it('fans out a task that ended, once per credential even when told twice', async () => {
      sut = await make();
      const { store, scheduler } = sut;
      const task = await openTask(store, `end-${Date.now()}`, 3600, 7);
      const result = await store.endTask(task.id, {
        status: 'completed',
        reason: 'task_completed',
        at: seconds(systemClock),
      });
      expect(result?.ended).toBe(true);
      await scheduler.taskEnded(task.id);
      await scheduler.taskEnded(task.id);
      await waitFor(() => allRevoked(store, task.id, 7), { timeoutMs: 6_000, what: 'the fan-out' });
      await waitFor(
        async () => !(await store.pendingTasks(seconds(systemClock), 100)).ending.includes(task.id),
        {
          what: 'the task to leave the fan-out queue',
        },
      );
      const events = await credentialEvents(store, task.id);
      expect(events).toHaveLength(7);
      expect(new Set(events.map((e) => e.credential)).size).toBe(7);
    });

    it('finishes the fan-out of an ended task whose job was lost (sweeper)', async () => {
      sut = await make();
      const { store } = sut;
      const task = await openTask(store, `lost-${Date.now()}`, 3600, 4);
      await store.endTask(task.id, { status: 'revoked', reason: 'admin', at: seconds(systemClock) });
      await waitFor(() => allRevoked(store, task.id, 4), { timeoutMs: 6_000, what: 'the sweeper fan-out' });
    });

    it('ends an overdue task whose deadline job was lost (sweeper)', async () => {
      sut = await make();
      const { store } = sut;
      const task = await openTask(store, `overdue-${Date.now()}`, 1, 2);
      await waitFor(
        async () => {
          const t = await store.getTask(task.id);
          return t?.endedAt !== undefined ? t : undefined;
        },
        { timeoutMs: 8_000, what: 'the sweeper to end the overdue task' },
      );
      // Its credentials expired with the deadline: the fan-out skips them, and the task leaves the queue.
      await waitFor(
        async () => !(await store.pendingTasks(seconds(systemClock), 100)).ending.includes(task.id),
        {
          what: 'the task to leave the fan-out queue',
        },
      );
    });
  });
}
