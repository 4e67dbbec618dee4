// The Redis store's listing indexes kept in small buckets (src/store/redis/lua/bucket-index.lua, index-range,
// index-remove, due-tasks): whatever order members arrive in, from several connections at once, with splits,
// renames and emptied buckets, listings page newest first over every member exactly once, the buckets stay small
// (listpack-encoded) and well ordered, and the deadlines job reaches every overdue active task. Real Redis.
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RedisStore, redisKeys } from '../../src/store/redis/redis.store.ts';
import { compareKeys, credentialKey, taskKey } from '../../src/store/shared.ts';
import type { CredentialRecord, TaskInit } from '../../src/store/types.ts';
import { indexMembers } from '../helpers/bucket-index.ts';
import { FakeClock } from '../helpers/clock.ts';
import { closedAfterEach, testRedis, uniquePrefix } from '../helpers/redis.ts';

const opened = closedAfterEach();

const OWNER = 'spiffe://example.org/ci/github/acme/app/build';
const RETENTION = 600;

/** `n` stores over the same keys, each on a connection of its own, all on one clock. */
async function openStores(fake: FakeClock, name: string, n: number) {
  const prefix = uniquePrefix(name);
  const stores: RedisStore[] = [];
  for (let i = 0; i < n; i++) {
    const redis = await testRedis();
    opened.push({ redis, prefix });
    stores.push(new RedisStore({ redis, prefix, clock: fake.clock, retentionSeconds: RETENTION }));
  }
  return { redis: opened.find((o) => o.prefix === prefix)!.redis, stores, keys: redisKeys(prefix) };
}

function credential(issuedAt: number, id: string, task: string, ttl = 300): CredentialRecord {
  return {
    id,
    type: 'jwt',
    spiffeId: OWNER,
    task,
    attestor: 'github_actions',
    audience: ['https://api.example.org'],
    issuedAt,
    expiresAt: issuedAt + ttl,
    kid: 'a1b2c3d4e5f60718',
  };
}

/** A deterministic shuffle (a linear congruential generator), so that a failure replays. */
function shuffled<T>(items: T[], seed: number): T[] {
  const out = [...items];
  let x = seed;
  for (let i = out.length - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

/** Every bucket: at most 120 members, listpack-encoded (short members), named by a key <= its members, in order. */
async function expectWellFormed(redis: Redis, directory: string) {
  const names = await redis.zrange(directory, '0', '-1');
  let previous: string | undefined;
  for (const [i, name] of names.entries()) {
    const members = await redis.zrange(`${directory}:${name}`, '0', '-1');
    expect(members.length, name).toBeGreaterThan(0);
    expect(members.length, name).toBeLessThanOrEqual(120);
    expect(await redis.object('ENCODING', `${directory}:${name}`)).toBe('listpack');
    expect(compareKeys(name, members[0]!), name).toBeLessThanOrEqual(0);
    const next = names[i + 1];
    if (next !== undefined) expect(compareKeys(members[members.length - 1]!, next), name).toBeLessThan(0);
    if (previous !== undefined) expect(compareKeys(previous, members[0]!)).toBeLessThan(0);
    previous = members[members.length - 1];
  }
}

async function pageAll(store: RedisStore, limit: number): Promise<string[]> {
  const seen: string[] = [];
  let cursor: string | undefined;
  for (let pages = 0; ; pages++) {
    expect(pages).toBeLessThan(2000);
    const page = await store.listCredentials({}, { limit, cursor });
    seen.push(...page.items.map((v) => v.credential.id));
    if (page.next === undefined) return seen;
    cursor = page.next;
  }
}

describe('bucketed listing indexes', () => {
  it('list every credential once, newest first, across splits, renames and emptied buckets', async () => {
    const fake = new FakeClock();
    const { redis, stores, keys } = await openStores(fake, 'bucket-list', 4);
    const now = fake.seconds();
    // 700 credentials, two per task: bursts in the same second (random order within it), ascending runs, and
    // older ones (arriving below every bucket: the lowest is renamed), recorded from four connections at once
    const records = Array.from({ length: 700 }, (_, i) => {
      const at = i < 300 ? now : i < 500 ? now - 500 + i : now - 10_000 - i;
      return credential(at, `c-${String(i).padStart(4, '0')}-${(i * 7919) % 997}`, `t-${i % 350}`, 20_000);
    });
    const order = shuffled(records, 7);
    for (let i = 0; i < order.length; i += 40) {
      await Promise.all(
        order.slice(i, i + 40).map((c, j) =>
          stores[j % 4]!.recordIssuance(c, {
            id: c.task,
            owner: OWNER,
            origin: 'caller',
            deadline: now + 30_000,
          }),
        ),
      );
    }
    const expected = [...records]
      .sort((a, b) => compareKeys(credentialKey(b), credentialKey(a)))
      .map((c) => c.id);
    expect(await indexMembers(redis, keys.credentialListing)).toEqual(
      records.map((c) => credentialKey(c)).sort(compareKeys),
    );
    await expectWellFormed(redis, keys.credentialListing);
    await expectWellFormed(redis, keys.taskListing);
    for (const limit of [1, 7, 120, 1000])
      expect(await pageAll(stores[0]!, limit), `limit ${limit}`).toEqual(expected);

    // Redis drops the records of a third, among them every one of the oldest: the trim empties buckets, which
    // leave the directory, and what is left still pages exactly
    const dropped = new Set(
      records.filter((c, i) => i % 3 === 0 || c.issuedAt < now - 5000).map((c) => c.id),
    );
    for (const c of records) if (dropped.has(c.id)) await redis.del(keys.credential(c.task, c.id));
    const bucketsBefore = await redis.zcard(keys.credentialListing);
    for (let i = 0; i < 5; i++) await stores[1]!.trimRevocations(now);
    const left = expected.filter((id) => !dropped.has(id));
    expect(await pageAll(stores[2]!, 13)).toEqual(left);
    expect(await indexMembers(redis, keys.credentialListing)).toHaveLength(left.length);
    expect(await redis.zcard(keys.credentialListing)).toBeLessThan(bucketsBefore);
    await expectWellFormed(redis, keys.credentialListing);
  });

  it('list tasks newest first over buckets and the single zset of the brokers before them', async () => {
    const fake = new FakeClock();
    const { redis, stores, keys } = await openStores(fake, 'bucket-tasks', 2);
    const now = fake.seconds();
    const ids: [number, string][] = [];
    for (let i = 0; i < 300; i++) {
      const at = now - (i % 50);
      fake.set(at * 1000);
      const id = `task-${i}`;
      await stores[i % 2]!.recordIssuance(credential(at, `c${i}`, id), {
        id,
        owner: OWNER,
        origin: 'caller',
        deadline: now + 3600,
      });
      ids.push([at, id]);
    }
    // older brokers' tasks: in idx:tasks only
    for (let i = 0; i < 20; i++) {
      const id = `old-${i}`;
      await redis.hset(keys.task(id), {
        o: OWNER,
        g: 'caller',
        c: String(now - i),
        d: String(now + 3600),
        s: 'active',
      });
      await redis.zadd(keys.legacyTaskListing, 0, taskKey({ createdAt: now - i, id }));
      ids.push([now - i, id]);
    }
    fake.set(now * 1000);
    const expected = ids
      .map(([createdAt, id]) => taskKey({ createdAt, id }))
      .sort((a, b) => compareKeys(b, a))
      .map((key) => key.slice(11));
    for (const limit of [1, 9, 1000]) {
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; ; pages++) {
        expect(pages).toBeLessThan(400);
        const page = await stores[1]!.listTasks({}, { limit, cursor });
        seen.push(...page.items.map((t) => t.id));
        if (page.next === undefined) break;
        cursor = page.next;
      }
      expect(seen, `limit ${limit}`).toEqual(expected);
    }
    await expectWellFormed(redis, keys.taskListing);
  });

  it('the deadlines job reaches every overdue active task, wherever splits and renames moved its bucket', async () => {
    const fake = new FakeClock();
    const { redis, stores, keys } = await openStores(fake, 'bucket-due', 3);
    const base = fake.seconds();
    // tasks opened at scattered times (some before everything so far: renames), with scattered deadlines; a few
    // with ids too long for a listpack member (their bucket is encoded as a skiplist: still found)
    const tasks = shuffled(
      Array.from({ length: 500 }, (_, i) => ({
        id: i % 97 === 0 ? `long-${'x'.repeat(120)}-${i}` : `due-${i}`,
        createdAt: base - ((i * 37) % 900),
        deadline: base + 100 + ((i * 7919) % 2000),
      })),
      3,
    );
    for (let i = 0; i < tasks.length; i += 25) {
      await Promise.all(
        tasks.slice(i, i + 25).map((t, j) => {
          const store = stores[j % 3]!;
          const init: TaskInit = { id: t.id, owner: OWNER, origin: 'caller', deadline: t.deadline };
          // the store reads the clock as the call starts
          fake.set(t.createdAt * 1000);
          return store.recordIssuance(credential(t.createdAt, `c-${t.id}`, t.id, 50), init);
        }),
      );
    }
    fake.set(base * 1000);
    // every task really opened (the clock moved under concurrent calls: each call reads it once)
    for (const t of tasks) expect((await stores[0]!.getTask(t.id))?.deadline, t.id).toBe(t.deadline);
    // some end early, by hand of the lifecycle
    const endedEarly = new Set(tasks.filter((_, i) => i % 5 === 0).map((t) => t.id));
    for (const id of endedEarly)
      await stores[1]!.endTask(id, { status: 'completed', reason: 'task_done', at: base });

    for (const now of [base + 99, base + 600, base + 1400, base + 2200]) {
      const expected = tasks
        .filter((t) => t.deadline <= now && !endedEarly.has(t.id))
        .sort((a, b) => a.deadline - b.deadline || compareKeys(a.id, b.id))
        .map((t) => t.id);
      expect((await stores[2]!.pendingTasks(now, 1000)).overdue, `at ${now - base}`).toEqual(expected);
    }
    // a small limit: never more than asked, and the job drains them all, a few at a time
    const now = base + 2200;
    const drained = new Set<string>();
    for (let round = 0; round < 500; round++) {
      const { overdue } = await stores[round % 3]!.pendingTasks(now, 7);
      expect(overdue.length).toBeLessThanOrEqual(7);
      if (overdue.length === 0) {
        // only when none is left (a call passes over at most 7 buckets that were due by a stale score)
        expect((await stores[0]!.pendingTasks(now, 1000)).overdue).toEqual([]);
        break;
      }
      for (const id of overdue) {
        expect(drained.has(id), id).toBe(false);
        drained.add(id);
        await stores[0]!.endTask(id, { status: 'expired', reason: 'task_deadline', at: now });
      }
    }
    expect(drained.size).toBe(tasks.length - endedEarly.size);
    // nothing active is left, so no bucket is due any more
    expect(await stores[0]!.pendingTasks(now + 100_000, 1000)).toMatchObject({ overdue: [] });
    expect(await redis.zcard(keys.tasksDue)).toBe(0);
  });

  it("keeps each bucket due no later than its tasks' deadlines through splits and renames", async () => {
    const fake = new FakeClock();
    const base = fake.seconds();
    /** Opens tasks in this order (createdAt, deadline), then the overdue ones at `at`. */
    const scenario = async (name: string, tasks: [number, number][], at: number) => {
      const { stores } = await openStores(fake, name, 1);
      for (const [i, [createdAt, deadline]] of tasks.entries()) {
        fake.set(createdAt * 1000);
        const opened = await stores[0]!.recordIssuance(credential(createdAt, `c${i}`, `t${i}`, 10), {
          id: `t${i}`,
          owner: OWNER,
          origin: 'caller',
          deadline,
        });
        expect(opened.ok).toBe(true);
      }
      fake.set(base * 1000);
      return (await stores[0]!.pendingTasks(at, 1000)).overdue.sort();
    };
    const early = base + 100;
    const late = base + 5000;
    const ascending = (deadline: (i: number) => number) =>
      Array.from({ length: 121 }, (_, i): [number, number] => [base - 1000 + i, deadline(i)]);
    // the 121st, at the top, splits the bucket: its top 8 go to a new one, due no later than the old one
    expect(
      await scenario(
        'due-split',
        ascending((i) => (i >= 113 && i < 120 ? early : late)),
        early,
      ),
    ).toEqual(Array.from({ length: 7 }, (_, i) => `t${113 + i}`).sort());
    // the one that split it is due in the bucket it went to
    expect(
      await scenario(
        'due-split-top',
        ascending((i) => (i === 120 ? early : late)),
        early,
      ),
    ).toEqual(['t120']);
    // a task older than every bucket renames the lowest, which stays due
    const renamed: [number, number][] = Array.from({ length: 10 }, (_, i) => [base - 100 + i, early]);
    renamed.push([base - 5000, late]);
    expect(await scenario('due-rename', renamed, early)).toEqual(
      Array.from({ length: 10 }, (_, i) => `t${i}`).sort(),
    );
  });

  it('a bucket lost by hand (an operator, a partial restore) costs its members, never a loop or an error', async () => {
    const fake = new FakeClock();
    const { redis, stores, keys } = await openStores(fake, 'bucket-lost', 1);
    const store = stores[0]!;
    const now = fake.seconds();
    for (let i = 0; i < 300; i++)
      await store.recordIssuance(credential(now - 300 + i, `l-${i}`, `lt-${i}`), {
        id: `lt-${i}`,
        owner: OWNER,
        origin: 'caller',
        deadline: now + 3600,
      });
    const names = await redis.zrange(keys.credentialListing, '0', '-1');
    expect(names.length).toBeGreaterThan(2);
    const lost = await redis.zrange(`${keys.credentialListing}:${names[1]}`, '0', '-1');
    await redis.del(`${keys.credentialListing}:${names[1]}`);
    expect(await pageAll(store, 50)).toHaveLength(300 - lost.length);
    await store.trimRevocations(now);
    // a new member in the lost range goes into its (empty) bucket again
    const at = Number(lost[0]!.slice(0, 10));
    await store.recordIssuance(credential(at, 'm-again', 'again'), {
      id: 'again',
      owner: OWNER,
      origin: 'caller',
      deadline: now + 3600,
    });
    expect(await redis.zrange(`${keys.credentialListing}:${names[1]}`, '0', '-1')).toEqual([
      credentialKey({ issuedAt: at, id: 'm-again' }),
    ]);
    expect((await pageAll(store, 50)).filter((id) => id === 'm-again')).toEqual(['m-again']);
    expect(await pageAll(store, 50)).toHaveLength(301 - lost.length);
  });
});
