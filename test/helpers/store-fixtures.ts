// Records and helpers the store contract tests share (RedisStore over a real Redis).
import type { RedisStore } from '../../src/store/redis/redis.store.ts';
import { credentialStatus } from '../../src/store/status.ts';
import type { CredentialRecord, TaskInit } from '../../src/store/types.ts';
import type { FakeClock } from './clock.ts';

export const OWNER = 'spiffe://example.org/ci/github/acme/app/build';
/** Seconds a record is kept after it expired. */
export const RETENTION = 600;

export function credential(
  now: number,
  id: string,
  task: string,
  over: Partial<CredentialRecord> = {},
): CredentialRecord {
  return {
    id,
    type: 'jwt',
    spiffeId: OWNER,
    task,
    attestor: 'github_actions',
    audience: ['https://api.example.org'],
    issuedAt: now,
    expiresAt: now + 300,
    kid: 'a1b2c3d4e5f60718',
    ...over,
  };
}

export function taskInit(now: number, id: string, over: Partial<TaskInit> = {}): TaskInit {
  return { id, owner: OWNER, origin: 'caller', deadline: now + 3600, ...over };
}

/** What introspection decides from the store (src/lifecycle/introspect.ts), minus the signature. */
export async function liveFor(store: RedisStore, fake: FakeClock, id: string, task: string, sub = OWNER) {
  const view = await store.getCredential(id, task);
  if (view === null) return 'unknown';
  if (view.credential.spiffeId !== sub || view.credential.task !== task) return 'mismatch';
  return credentialStatus(view, fake.seconds());
}

/** Fans a task out batch after batch until done; throws after `rounds` batches. */
export async function fanOutAll(store: RedisStore, task: string, batch: number, rounds = 1000) {
  let revoked = 0;
  for (let i = 0; i < rounds; i++) {
    const r = await store.fanOutTask(task, batch);
    revoked += r.revoked;
    if (r.done) return revoked;
  }
  throw new Error('fan-out did not finish');
}
