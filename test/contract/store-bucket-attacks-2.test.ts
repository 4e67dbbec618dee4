// The Redis store's inline record and bucketed indexes, attacked (src/store/redis: record-issuance, bucket-index,
// index-range, index-remove, due-tasks, and the listings and trim that read them): races between a listing or the
// sweeper's trim and the second issuance into a one-credential task, the deadlines job's reach, revocation racing a
// second issuance, members of odd bytes, the due directory's lower bound under random splits, renames and removals,
// and the buckets' compact encoding for the task ids platforms make. Real Redis.
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { endOverdue } from '../../src/lifecycle/jobs.ts';
import { Lifecycle } from '../../src/lifecycle/lifecycle.service.ts';
import { MemoryScheduler } from '../../src/lifecycle/memory.scheduler.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { RedisStore, redisKeys } from '../../src/store/redis/redis.store.ts';
import { compareKeys, credentialKey } from '../../src/store/shared.ts';
import { credentialStatus } from '../../src/store/status.ts';
import { indexMembers } from '../helpers/bucket-index.ts';
import { FakeClock } from '../helpers/clock.ts';
import { closedAfterEach, testRedis, uniquePrefix } from '../helpers/redis.ts';
import { startRedisServer } from '../helpers/redis-server.ts';
import { credential, OWNER, RETENTION, taskInit } from '../helpers/store-fixtures.ts';

const opened = closedAfterEach();

const config = configSchema.parse({ lifecycle: { sweepIntervalMs: 3_600_000 } });
const logger = createLogger('silent');

type Between = (command: string, args: string[]) => Promise<void>;

/**
 * The client, except that each pipeline's commands go one at a time, `between` running after each. Redis does not
 * run a pipeline as a unit: it reads a long one in chunks and serves other clients in between (a listing page or a
 * trim batch is hundreds of commands), so this only fixes where another client's command lands.
 */
function interleaved(redis: Redis, between: Between): Redis {
  return new Proxy(redis, {
    get(target, property) {
      if (property === 'pipeline') {
        return (commands: [string, ...string[]][]) => ({
          exec: async () => {
            const replies: [Error | null, unknown][] = [];
            for (const command of commands) {
              const reply = await target.pipeline([command]).exec();
              replies.push(reply![0]!);
              await between(command[0], command.slice(1));
            }
            return replies;
          },
        });
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Stores over the same keys: `plain` on a connection of its own, `raced` whose pipelines let `between` in. */
async function openStores(fake: FakeClock, name: string, between: Between = async () => {}) {
  const prefix = uniquePrefix(name);
  const redis = await testRedis();
  const other = await testRedis();
  opened.push({ redis, prefix }, { redis: other, prefix });
  const options = { prefix, clock: fake.clock, retentionSeconds: RETENTION };
  return {
    redis,
    keys: redisKeys(prefix),
    plain: new RedisStore({ redis, ...options }),
    raced: new RedisStore({ redis: interleaved(other, (c, a) => between(c, a)), ...options }),
  };
}

/** Runs `action` once, right after the first command `when` accepts. */
function onceAfter(when: (command: string, args: string[]) => boolean, action: () => Promise<unknown>) {
  const state = { fired: false };
  const between: Between = async (command, args) => {
    if (state.fired || !when(command, args)) return;
    state.fired = true;
    await action();
  };
  return { state, between };
}

async function allListed(store: RedisStore): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 1000; pages++) {
    const page = await store.listCredentials({}, { limit: 7, cursor });
    ids.push(...page.items.map((v) => v.credential.id));
    if (page.next === undefined) return ids;
    cursor = page.next;
  }
  throw new Error('listing did not end');
}

/** A deterministic generator (a linear congruential one), so that a failure replays. */
function random(seed: number) {
  let x = seed;
  return (n: number) => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % n;
  };
}

describe('a one-credential task whose second credential arrives during a read', () => {
  it('stays listed, findable by id and revocable when a listing page (a bulk revocation) reads it meanwhile', async () => {
    const fake = new FakeClock();
    const now = fake.seconds();
    let writer: RedisStore | undefined;
    const { state, between } = onceAfter(
      (command, args) => command === 'hgetall' && args[0]!.endsWith(':cred:first'),
      () => writer!.recordIssuance(credential(now, 'second', 'run'), taskInit(now, 'run')),
    );
    const { plain, raced } = await openStores(fake, 'race-listing', between);
    writer = plain;
    for (let i = 0; i < 5; i++)
      await plain.recordIssuance(credential(now, `other-${i}`, `t-${i}`), taskInit(now, `t-${i}`));
    await plain.recordIssuance(credential(now, 'first', 'run'), taskInit(now, 'run'));

    // an admin's bulk revocation of the SPIFFE ID (a compromised workload), while that workload is issued a second
    // credential into its task
    const lifecycle = new Lifecycle({
      store: raced,
      scheduler: new MemoryScheduler({ store: raced, clock: fake.clock, logger, config }),
      clock: fake.clock,
      logger,
    });
    const bulk = await lifecycle.bulkRevoke({ spiffeId: OWNER }, 'compromised', 'admin');
    await lifecycle.scheduler.close();
    expect(state.fired).toBe(true);

    const view = await plain.getCredential('first', 'run');
    expect({
      revokedByTheBulkRevocation: view === null ? 'gone' : credentialStatus(view, now),
      findableById: (await plain.getCredential('first'))?.credential.id ?? null,
      listed: (await allListed(plain)).includes('first'),
      bulkCount: bulk.revoked,
    }).toEqual({ revokedByTheBulkRevocation: 'revoked', findableById: 'first', listed: true, bulkCount: 6 });
  });

  it("stays listed, findable by id and revocable when the sweeper's trim checks it meanwhile", async () => {
    const fake = new FakeClock();
    const now = fake.seconds();
    let writer: RedisStore | undefined;
    const { state, between } = onceAfter(
      (command, args) => command === 'exists' && args[0]!.endsWith(':cred:first'),
      () => writer!.recordIssuance(credential(now, 'second', 'run'), taskInit(now, 'run')),
    );
    const { plain, raced } = await openStores(fake, 'race-trim', between);
    writer = plain;
    await plain.recordIssuance(credential(now, 'first', 'run'), taskInit(now, 'run'));
    await raced.trimRevocations(now - 100_000);
    expect(state.fired).toBe(true);
    expect({
      findableById: (await plain.getCredential('first'))?.credential.id ?? null,
      listed: (await allListed(plain)).sort(),
      revokedById: (await plain.revokeCredential('first', 'compromised', now))?.revoked ?? 'not found',
    }).toEqual({ findableById: 'first', listed: ['first', 'second'], revokedById: true });
  });
});

describe('the deadlines job', () => {
  it('ends every overdue task up to its limit in one run, when deadlines are scattered over many buckets', async () => {
    const fake = new FakeClock();
    const base = fake.seconds();
    const { plain, redis, keys } = await openStores(fake, 'due-reach');
    // tasks of two entries (task deadlines of 10 minutes and of a day) opened one after the other: every bucket
    // of the task listing holds a few short ones among long ones
    const short: string[] = [];
    for (let i = 0; i < 3000; i += 100) {
      await Promise.all(
        Array.from({ length: 100 }, (_, j) => {
          const n = i + j;
          const id = `t-${String(n).padStart(5, '0')}`;
          const deadline = n % 97 === 0 ? base + 600 : base + 86_400;
          if (deadline === base + 600) short.push(id);
          return plain.recordIssuance(
            credential(base, `c-${n}`, id, { expiresAt: base + 60 }),
            taskInit(base, id, { deadline }),
          );
        }),
      );
    }
    expect(await redis.zcard(keys.taskListing)).toBeGreaterThan(20);
    fake.advance(601_000);
    // one run of the job (limit 500, as the worker calls it): the memory store, and the single deadlines zset
    // before the buckets, ended all 31 at once
    const ended = await endOverdue({ store: plain, clock: fake.clock, logger, config });
    expect({ ended, of: short.length }).toEqual({ ended: short.length, of: short.length });
  });
});

describe('revocation racing a second issuance into the same task', () => {
  it('is announced once and never reads active again, in either order, and the task end reaches only the rest', async () => {
    const fake = new FakeClock();
    const now = fake.seconds();
    const { plain, raced } = await openStores(fake, 'race-revoke');
    for (let round = 0; round < 40; round++) {
      const task = `r-${round}`;
      await plain.recordIssuance(credential(now, `${task}-a`, task), taskInit(now, task));
      const [revoked] = await Promise.all([
        raced.revokeCredential(`${task}-a`, 'compromised', now),
        plain.recordIssuance(credential(now, `${task}-b`, task), taskInit(now, task)),
        // and a retry of the first one's issuance
        plain.recordIssuance(credential(now, `${task}-a`, task), taskInit(now, task)),
      ]);
      expect(revoked?.revoked, task).toBe(true);
      for (const store of [plain, raced]) {
        const view = await store.getCredential(`${task}-a`);
        expect(view && credentialStatus(view, now), task).toBe('revoked');
      }
      expect(await plain.countTaskCredentials(task)).toBe(2);
      await plain.endTask(task, { status: 'revoked', reason: 'task_revoked', at: now });
      while (!(await raced.fanOutTask(task, 1)).done);
      expect((await plain.fanOutTask(task, 1)).revoked).toBe(0);
    }
    const events = (await plain.readRevocations(undefined, 1000))
      .filter((e) => e.kind === 'credential')
      .map((e) => (e.kind === 'credential' ? `${e.credential}:${e.reason}` : ''));
    expect(events).toEqual(
      Array.from({ length: 40 }, (_, r) => [`r-${r}-a:compromised`, `r-${r}-b:task_revoked`]).flat(),
    );
  });
});

describe('members of odd bytes', () => {
  it('list in byte order, each once, whatever connection wrote them, across splits', async () => {
    const fake = new FakeClock();
    const now = fake.seconds();
    const { plain, raced, redis, keys } = await openStores(fake, 'odd-bytes');
    // one second, so that the ids alone order them: high bytes (UTF-8, and an unpaired-looking Latin-1 range), the
    // separators of the listing keys, the lex range markers, long ones
    const odd = [
      'é',
      'ÿ',
      '\u{10FFFF}',
      ':',
      '::',
      '[',
      '(',
      '+',
      '-',
      '~',
      ' ',
      '\u0001',
      'z'.repeat(180),
      'Z',
      '0',
    ];
    const ids = Array.from(
      { length: 400 },
      (_, i) => `${odd[i % odd.length]}${i}${odd[(i * 7) % odd.length]}`,
    );
    const order = [...ids];
    const next = random(11);
    for (let i = order.length - 1; i > 0; i--) {
      const j = next(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (let i = 0; i < order.length; i += 20)
      await Promise.all(
        order.slice(i, i + 20).map((id, j) => {
          const task = `task:${j % 3}:${id.length}`;
          return (j % 2 === 0 ? plain : raced).recordIssuance(credential(now, id, task), taskInit(now, task));
        }),
      );
    const expected = [...ids].sort((a, b) =>
      compareKeys(credentialKey({ issuedAt: now, id: b }), credentialKey({ issuedAt: now, id: a })),
    );
    expect(await allListed(raced)).toEqual(expected);
    expect(await indexMembers(redis, keys.credentialListing)).toEqual(
      [...ids].map((id) => credentialKey({ issuedAt: now, id })).sort(compareKeys),
    );
  });
});

describe('the due directory', () => {
  it("keeps every active task's bucket due no later than its deadline through random opens, ends and trims", async () => {
    const fake = new FakeClock();
    const base = fake.seconds();
    const { plain, raced, redis, keys } = await openStores(fake, 'due-model');
    const next = random(5);
    const live = new Map<string, number>();
    for (let step = 0; step < 1500; step++) {
      const at = base - 5000 + next(5000);
      const roll = next(10);
      if (roll < 7 || live.size === 0) {
        const id = `m-${step}`;
        const deadline = at + 100 + next(20_000);
        fake.set(at * 1000);
        const store = step % 2 === 0 ? plain : raced;
        if (
          (
            await store.recordIssuance(
              credential(at, `c-${step}`, id, { expiresAt: at + 50 }),
              taskInit(at, id, { deadline }),
            )
          ).ok
        )
          live.set(id, deadline);
      } else if (roll < 9) {
        const id = [...live.keys()][next(live.size)]!;
        await plain.endTask(id, { status: 'completed', reason: 'task_done', at: base });
        live.delete(id);
      } else {
        // Redis drops a task (its deadline + retention passed): the trim empties buckets
        const id = [...live.keys()][next(live.size)]!;
        await redis.del(keys.task(id), keys.taskCredentials(id));
        live.delete(id);
        fake.set(base * 1000);
        await raced.trimRevocations(base - 100_000);
      }
      if (step % 300 === 299) {
        fake.set(base * 1000);
        await plain.pendingTasks(base - 5000 + next(5000), 50);
      }
    }
    fake.set(base * 1000);
    // each live task: the bucket the directory sends its listing member to holds it, and is due by its deadline
    const names = await redis.zrange(keys.taskListing, '0', '-1');
    const due = new Map<string, number>();
    const flat = await redis.zrange(keys.tasksDue, '0', '-1', 'WITHSCORES');
    for (let i = 0; i < flat.length; i += 2) due.set(flat[i]!, Number(flat[i + 1]));
    for (const name of names) {
      for (const member of await redis.zrange(`${keys.taskListing}:${name}`, '0', '-1')) {
        const id = member.slice(11);
        const deadline = live.get(id);
        if (deadline === undefined) continue;
        expect(due.get(name), `${id} in ${name}`).toBeLessThanOrEqual(deadline);
        live.delete(id);
      }
    }
    expect([...live.keys()]).toEqual([]);
    // and the job finds exactly the overdue ones
    const at = base + 10_000;
    const overdue = (await plain.pendingTasks(at, 1000)).overdue.sort();
    const expected: string[] = [];
    for (const name of names)
      for (const member of await redis.zrange(`${keys.taskListing}:${name}`, '0', '-1')) {
        const [status, deadline] = await redis.hmget(keys.task(member.slice(11)), 's', 'd');
        if (status === 'active' && Number(deadline) <= at) expected.push(member.slice(11));
      }
    expect(overdue).toEqual(expected.sort());
  });
});

describe('memory of the task listing', () => {
  // Task ids over ~53 bytes (a GitHub run of a long repository name: GitHub allows 39-character owners and
  // 100-character repositories) make listing members longer than Redis's default 64-byte limit for compact zsets;
  // docs/operations.md advises raising it for such deployments. This checks that advice on a private Redis.
  it('keeps the buckets compact for long attestor task ids with zset-max-listpack-value 128', async () => {
    const server = await startRedisServer({ args: ['--zset-max-listpack-value', '128'] });
    const redis = new Redis(server.url);
    try {
      const fake = new FakeClock();
      const now = fake.seconds();
      const prefix = uniquePrefix('long-task-ids');
      const keys = redisKeys(prefix);
      const store = new RedisStore({ redis, prefix, clock: fake.clock, retentionSeconds: RETENTION });
      // 61 characters
      const task = 'github:kubernetes-sigs/cluster-api-provider-aws/12345678901/1';
      await store.recordIssuance(credential(now, 'g1', task), taskInit(now, task, { origin: 'attestor' }));
      for (let i = 0; i < 50; i++)
        await store.recordIssuance(credential(now, `s${i}`, `task-${i}`), taskInit(now, `task-${i}`));
      const [name] = await redis.zrange(keys.taskListing, '0', '-1');
      expect(await redis.zcard(`${keys.taskListing}:${name}`)).toBe(51);
      expect(await redis.object('ENCODING', `${keys.taskListing}:${name}`)).toBe('listpack');
    } finally {
      redis.disconnect();
      await server.stop();
    }
  });
});
