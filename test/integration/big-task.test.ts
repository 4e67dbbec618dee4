// A task with 10,000 credentials: all read inactive the moment the task ends, before any fan-out.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { credentialStatus } from '../../src/store/status.ts';
import { seconds } from '../../src/store/types.ts';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { introspectActive, issueSvid } from '../helpers/workload.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/batch/worker`;
const N = 10_000;

describe('a task with 10,000 credentials', () => {
  let b: TestBroker;
  beforeAll(async () => {
    // No worker: nothing fans out, so whatever reads inactive does so because the task ended.
    b = await startTestBroker({ store: 'redis', config: { trustDomain: TD, lifecycle: { worker: false } } });
  });
  afterAll(async () => {
    await b?.close();
  });

  it('reads every credential inactive at once when the task ends', async () => {
    const task = 'big-task';
    const own = await issueSvid(b, ID, { task, audience: [b.url] });
    const sample = [await issueSvid(b, ID, { task }), await issueSvid(b, ID, { task })];
    const { store, clock } = b.broker.deps;
    const now = seconds(clock);
    const ids: string[] = [];
    for (let start = 0; start < N; start += 500) {
      await Promise.all(
        Array.from({ length: 500 }, (_, i) => {
          const id = `bulk-${start + i}`;
          ids.push(id);
          return store.recordIssuance(
            {
              id,
              type: 'jwt',
              spiffeId: ID,
              task,
              attestor: 'join_token',
              audience: ['https://api.example'],
              issuedAt: now,
              expiresAt: own.expiresAt,
              kid: 'k',
            },
            { id: task, owner: ID, origin: 'caller', deadline: now + 3600 },
          );
        }),
      );
    }
    expect(await store.countTaskCredentials(task)).toBe(N + 3);

    const done = await b.request('POST', `/v1/tasks/${task}/complete`, {
      headers: { authorization: `Bearer ${own.token}` },
    });
    expect(done.status).toBe(202);

    for (const s of sample) expect(await introspectActive(b, s.token)).toBe(false);
    const at = seconds(clock);
    let inactive = 0;
    let marked = 0;
    for (let start = 0; start < N; start += 1000) {
      const views = await Promise.all(
        ids.slice(start, start + 1000).map((id) => store.getCredential(id, task)),
      );
      for (const view of views) {
        expect(view).not.toBeNull();
        if (credentialStatus(view!, at) === 'revoked') inactive += 1;
        if (view!.credential.revokedAt !== undefined) marked += 1;
      }
    }
    expect(inactive).toBe(N);
    // Proof that this is the task's end at work, not a finished fan-out.
    expect(marked).toBe(0);
    const feed = await store.readRevocations(undefined, 100);
    expect(feed.filter((e) => e.task === task).map((e) => e.kind)).toEqual(['task']);
  });
});
