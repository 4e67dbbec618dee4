// Lifecycle jobs under hostile timing: a job that arrives for a task in a state it did not expect must return,
// never spin.
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../../src/config/schema.ts';
import { fanOut, type JobDeps } from '../../../src/lifecycle/jobs.ts';
import { createLogger } from '../../../src/observability/logger.ts';
import { MemoryStore } from '../../../src/store/memory/memory.store.ts';
import { FakeClock } from '../../helpers/clock.ts';

describe('fan-out job', () => {
  it('returns for a task that is past its deadline but was never ended, instead of looping forever', async () => {
    // Regression: at eb8915a jobs.fanOut() checked the *derived* status (getTask says `expired` once the deadline
    // passed) while the store's fanOutTask() looks at the *stored* one (`active` until a deadline job ends it)
    // and answers {revoked: 0, done: false} for ever: a stale `task-end` job (BullMQ retry, a worker back from
    // an outage) for a reopened caller-named task past its deadline spun without end (with the memory store and
    // fanoutPauseMs 0, without ever yielding to the event loop). a18bd81 returns early for a task not ended.
    const fake = new FakeClock();
    const store = new MemoryStore({ clock: fake.clock });
    const now = fake.seconds();
    const owner = 'spiffe://example.org/ci/nightly';
    const recorded = await store.recordIssuance(
      {
        id: 'c1',
        type: 'jwt',
        spiffeId: owner,
        task: 'nightly',
        attestor: 'join_token',
        audience: ['a'],
        issuedAt: now,
        expiresAt: now + 10,
        kid: 'k',
      },
      { id: 'nightly', owner, origin: 'caller', deadline: now + 10 },
    );
    expect(recorded.ok).toBe(true);
    fake.advance(20_000); // past the deadline; no deadline job has ended it yet
    let steps = 0;
    const step = store.fanOutTask.bind(store);
    store.fanOutTask = (id, batchSize) => {
      steps++;
      return step(id, batchSize);
    };
    const base = configSchema.parse({});
    const deps: JobDeps = {
      store,
      clock: fake.clock,
      logger: createLogger('silent'),
      // A pause, so that a spinning loop still lets this test observe it.
      config: { credentials: base.credentials, lifecycle: { ...base.lifecycle, fanoutPauseMs: 5 } },
    };
    const job = fanOut(deps, 'nightly').then(() => 'returned' as const);
    const outcome = await Promise.race([
      job,
      new Promise<'spinning'>((resolve) => setTimeout(() => resolve('spinning'), 1_000)),
    ]);
    // End the task so that a spinning loop can finish, whatever the outcome.
    await store.endTask('nightly', { status: 'expired', reason: 'task_deadline', at: fake.seconds() });
    await job;
    expect(outcome).toBe('returned');
    expect(steps).toBeLessThan(5);
  });
});
