// Attacks on the compact Redis store layout (src/store/redis/redis.store.ts and its scripts): the credential id
// index in 4,096 `ci:<3 hex>` hashes, the SPIFFE ID left out when it is the task owner's, `idx:creds` members
// `<issuedAt>:<id>`, and a task's only credential kept as fields k, x of the task hash. Revocation and task end
// must reach every credential (inline, moved, joined concurrently, written by an older broker), introspection
// must never read a revoked, ended or expired credential as active, and listings must neither loop nor skip.
// Real Redis, several connections for real concurrency.
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { RedisStore, redisKeys } from '../../src/store/redis/redis.store.ts';
import { credentialKey } from '../../src/store/shared.ts';
import type { CredentialRecord } from '../../src/store/types.ts';
import { listingSize } from '../helpers/bucket-index.ts';
import { FakeClock } from '../helpers/clock.ts';
import { closedAfterEach, testRedis, uniquePrefix } from '../helpers/redis.ts';
import { credential, fanOutAll, liveFor, OWNER, RETENTION, taskInit } from '../helpers/store-fixtures.ts';

const opened = closedAfterEach();

/** `n` stores over the same keys, each on a connection of its own (scripts then really interleave). */
async function openStores(fake: FakeClock, name: string, n = 1) {
  const prefix = uniquePrefix(name);
  const stores: RedisStore[] = [];
  let redis: Redis | undefined;
  for (let i = 0; i < n; i++) {
    const r = await testRedis();
    opened.push({ redis: r, prefix });
    redis ??= r;
    stores.push(new RedisStore({ redis: r, prefix, clock: fake.clock, retentionSeconds: RETENTION }));
  }
  return { redis: redis!, prefix, stores, store: stores[0]!, keys: redisKeys(prefix) };
}

/** The fields an older broker (before the compact layout) wrote for a credential. */
function oldCredentialHash(c: CredentialRecord): Record<string, string> {
  return {
    y: c.type,
    s: c.spiffeId,
    a: c.attestor,
    u: JSON.stringify(c.audience),
    i: String(c.issuedAt),
    e: String(c.expiresAt),
    k: c.kid,
  };
}

describe('compact store layout under attack', () => {
  it("a task's only (inline) credential is revoked by id, by its task's end and fan-out, and reads expired", async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStores(fake, 'layout-inline');
    const now = fake.seconds();
    await store.recordIssuance(credential(now, 'i1', 'solo'), taskInit(now, 'solo'));
    expect(await redis.hget(keys.task('solo'), 'k')).toBe('i1');
    expect(await liveFor(store, fake, 'i1', 'solo')).toBe('active');
    // by id alone (the admin path): found through the bucket index
    const revoked = await store.revokeCredential('i1', 'compromised', now);
    expect(revoked?.revoked).toBe(true);
    expect(await liveFor(store, fake, 'i1', 'solo')).toBe('revoked');

    // ended before its fan-out ran: already revoked through its task; the fan-out then marks and announces it
    await store.recordIssuance(credential(now, 'i2', 'solo2'), taskInit(now, 'solo2'));
    await store.endTask('solo2', { status: 'revoked', reason: 'task_revoked', at: now });
    expect(await liveFor(store, fake, 'i2', 'solo2')).toBe('revoked');
    expect(await fanOutAll(store, 'solo2', 1)).toBe(1);
    expect((await store.getCredential('i2'))?.credential.revokedReason).toBe('task_revoked');
    const feed = await store.readRevocations(undefined, 100);
    expect(feed.filter((e) => e.kind === 'credential').map((e) => e.credential)).toEqual(['i1', 'i2']);
    // the task event outlives the inline credential: relying parties keep it until that expiry at least
    const taskEvent = feed.find((e) => e.kind === 'task' && e.task === 'solo2');
    expect(taskEvent?.expiresAt).toBeGreaterThanOrEqual(now + 300);

    // expiry: never active after exp, with or without the inline fields
    await store.recordIssuance(
      credential(now, 'i3', 'solo3', { expiresAt: now + 5 }),
      taskInit(now, 'solo3'),
    );
    fake.advance(5_000);
    expect(await liveFor(store, fake, 'i3', 'solo3')).toBe('expired');
    expect(await store.revokeCredential('i3', 'compromised', fake.seconds())).toMatchObject({
      revoked: false,
    });
  });

  it('a second credential racing the task end (separate connections) is either refused or reached by the fan-out', async () => {
    const fake = new FakeClock();
    const { stores } = await openStores(fake, 'layout-race', 3);
    const [a, b, c] = stores as [RedisStore, RedisStore, RedisStore];
    const now = fake.seconds();
    const tasks = Array.from({ length: 40 }, (_, i) => `race-${i}`);
    for (const t of tasks) {
      await a.recordIssuance(credential(now, `${t}-first`, t, { expiresAt: now + 120 }), taskInit(now, t));
    }
    // per task: a second (and third) credential, longer lived, against the end of the task, all at once
    const outcomes = await Promise.all(
      tasks.map(async (t, i) => {
        const second = credential(now, `${t}-second`, t, { expiresAt: now + 900 });
        const third = credential(now, `${t}-third`, t, { expiresAt: now + 600 });
        const end = () => c.endTask(t, { status: 'revoked', reason: 'task_revoked', at: now });
        // both orders of starting; the scripts then run in whatever order Redis receives them
        const issue = (c: CredentialRecord, store: RedisStore) => store.recordIssuance(c, taskInit(now, t));
        let r2: { ok: boolean };
        let r3: { ok: boolean };
        if (i % 2 === 0) [r2, , r3] = await Promise.all([issue(second, b), end(), issue(third, a)]);
        else [r3, , r2] = await Promise.all([issue(third, a), end(), issue(second, b)]);
        return {
          t,
          recorded: [`${t}-first`, ...(r2.ok ? [`${t}-second`] : []), ...(r3.ok ? [`${t}-third`] : [])],
        };
      }),
    );
    const feed = await a.readRevocations(undefined, 10_000);
    for (const { t, recorded } of outcomes) {
      // every credential the store accepted reads revoked at once (its task ended), and the fan-out marks each
      for (const id of recorded) expect(await liveFor(a, fake, id, t), id).toBe('revoked');
      expect(await fanOutAll(c, t, 1)).toBe(recorded.length);
      for (const id of recorded)
        expect((await a.getCredential(id, t))?.credential.revokedReason, id).toBe('task_revoked');
      expect(await a.countTaskCredentials(t)).toBe(recorded.length);
      // the task event is kept until the last accepted credential expires
      const maxExp = Math.max(
        ...recorded.map((id) => now + (id.endsWith('second') ? 900 : id.endsWith('third') ? 600 : 120)),
      );
      expect(feed.find((e) => e.kind === 'task' && e.task === t)?.expiresAt, t).toBe(maxExp);
      // nothing joins an ended task afterwards
      expect((await b.recordIssuance(credential(now, `${t}-late`, t), taskInit(now, t))).ok).toBe(false);
    }
  });

  it('many credentials joining one task at once from several connections all land, none left inline', async () => {
    const fake = new FakeClock();
    const { stores, redis, keys } = await openStores(fake, 'layout-join', 4);
    const now = fake.seconds();
    const ids = Array.from({ length: 60 }, (_, i) => `j-${i}`);
    const results = await Promise.all(
      ids.map((id, i) =>
        stores[i % stores.length]!.recordIssuance(
          credential(now, id, 'busy', { expiresAt: now + 100 + i }),
          taskInit(now, 'busy'),
        ),
      ),
    );
    expect(results.every((r) => r.ok)).toBe(true);
    expect(await redis.hmget(keys.task('busy'), 'k', 'x')).toEqual([null, null]);
    expect((await redis.zrange(keys.taskCredentials('busy'), '0', '-1')).sort()).toEqual([...ids].sort());
    const listed = await stores[0]!.listCredentials({ task: 'busy' }, { limit: 100 });
    expect(listed.items.map((v) => v.credential.id).sort()).toEqual([...ids].sort());
    await stores[1]!.endTask('busy', { status: 'completed', reason: 'task_done', at: now });
    expect(await fanOutAll(stores[2]!, 'busy', 7)).toBe(60);
  });

  it('finds a credential only under its own task, whatever task, id or bucket neighbour is asked', async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStores(fake, 'layout-cross');
    const now = fake.seconds();
    const other = 'spiffe://example.org/ci/github/evil/app/build';
    await store.recordIssuance(credential(now, 'victim', 'task-a'), taskInit(now, 'task-a'));
    await store.recordIssuance(
      credential(now, 'x1', 'task-b', { spiffeId: other }),
      taskInit(now, 'task-b', { owner: other }),
    );
    // a token naming another task, or an id of another task, finds nothing and revokes nothing
    expect(await store.getCredential('victim', 'task-b')).toBeNull();
    expect(await store.revokeCredential('victim', 'compromised', now, 'task-b')).toBeNull();
    expect(await liveFor(store, fake, 'victim', 'task-a')).toBe('active');
    // an id that shares the victim's bucket is another field: the lookup is by the full id
    const bucket = keys.credentialIndex('victim');
    let twin = '';
    for (let i = 0; twin === ''; i++) if (keys.credentialIndex(`t${i}`) === bucket) twin = `t${i}`;
    expect(await store.getCredential(twin)).toBeNull();
    await store.recordIssuance(
      credential(now, twin, 'task-b', { spiffeId: other }),
      taskInit(now, 'task-b', { owner: other }),
    );
    expect(await redis.hgetall(bucket)).toMatchObject({ victim: 'task-a', [twin]: 'task-b' });
    expect((await store.getCredential('victim'))?.credential).toMatchObject({
      task: 'task-a',
      spiffeId: OWNER,
    });
    expect((await store.getCredential(twin))?.credential).toMatchObject({ task: 'task-b', spiffeId: other });
    // ids shaped like keys, hash tags or listing separators are just missing credentials
    for (const id of ['', '{t:task-a}:cred:victim', 'victim}', '0000000000:victim', 'a|b|c', 'ci:000', '*'])
      expect(await store.getCredential(id), id).toBeNull();
    // a caller-chosen task id that looks like a key of another task opens a task of its own
    const tricky = 'task-a}:cred:victim';
    await store.recordIssuance(
      credential(now, 'x2', tricky, { spiffeId: other }),
      taskInit(now, tricky, { owner: other }),
    );
    expect((await store.getCredential('victim'))?.credential.task).toBe('task-a');
    expect((await store.getCredential('x2'))?.credential.task).toBe(tricky);
    expect(await liveFor(store, fake, 'victim', 'task-a')).toBe('active');
  });

  it('an owner-less credential whose task hash is gone never reads active, even under a task opened anew', async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStores(fake, 'layout-orphan');
    const now = fake.seconds();
    await store.recordIssuance(credential(now, 'o1', 'reused'), taskInit(now, 'reused'));
    await store.endTask('reused', { status: 'revoked', reason: 'task_revoked', at: now });
    // the task hash is lost (deleted by hand, or evicted) before its fan-out marked the credential
    await redis.del(keys.task('reused'));
    expect(await store.getCredential('o1')).toBeNull();
    expect(await store.revokeCredential('o1', 'compromised', now)).toBeNull();
    // the same task id, opened again by another workload (a caller-chosen id): the old token does not come
    // back to life for its holder, and the new owner's credentials are its own
    const mallory = 'spiffe://example.org/ci/github/evil/app/build';
    const opened = await store.recordIssuance(
      credential(now, 'm1', 'reused', { spiffeId: mallory }),
      taskInit(now, 'reused', { owner: mallory }),
    );
    expect(opened.ok).toBe(true);
    expect(await liveFor(store, fake, 'o1', 'reused', OWNER)).not.toBe('active');
    expect(await liveFor(store, fake, 'm1', 'reused', mallory)).toBe('active');
  });

  it('pages over old and new listing keys (same second, other seconds, both cursor forms) without loop or skip', async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStores(fake, 'layout-cursor');
    const t0 = fake.seconds();
    const ids: string[] = [];
    // older brokers' records: old listing members, cidx keys, SPIFFE ID stored, zset membership
    for (const [i, at] of [t0 - 2, t0 - 1, t0 - 1, t0].entries()) {
      const c = credential(at, `old-${i}`, 'legacy');
      await redis.hset(keys.task('legacy'), {
        o: OWNER,
        g: 'caller',
        c: String(t0 - 5),
        d: String(t0 + 3600),
        s: 'active',
      });
      await redis.hset(keys.credential('legacy', c.id), oldCredentialHash(c));
      await redis.zadd(keys.taskCredentials('legacy'), c.expiresAt, c.id);
      await redis.set(keys.legacyCredentialIndex(c.id), 'legacy', 'EX', 3600);
      await redis.zadd(keys.legacyCredentialListing, 0, `${String(at).padStart(10, '0')}|${c.id}|legacy`);
      ids.push(c.id);
    }
    // this broker's, in the same seconds and in the old task too
    for (const [i, at] of [t0 - 1, t0, t0, t0 + 1].entries()) {
      fake.set(at * 1000);
      const task = i % 2 === 0 ? 'legacy' : `fresh-${i}`;
      await store.recordIssuance(credential(at, `new-${i}`, task), taskInit(at, task));
      ids.push(`new-${i}`);
    }
    for (const limit of [1, 2, 3, 100]) {
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; ; pages++) {
        expect(pages).toBeLessThan(50);
        const page = await store.listCredentials({}, { limit, cursor });
        seen.push(...page.items.map((v) => v.credential.id));
        if (page.next === undefined) break;
        cursor = page.next;
      }
      expect(seen.sort(), `limit ${limit}`).toEqual([...ids].sort());
    }
    // the old task lists its old and new credentials alike (its zset), and its end reaches all of them
    const legacyIds = ids.filter((id) => id.startsWith('old-') || id === 'new-0' || id === 'new-2');
    for (const limit of [1, 2, 100]) {
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let pages = 0; ; pages++) {
        expect(pages).toBeLessThan(50);
        const page = await store.listCredentials({ task: 'legacy' }, { limit, cursor });
        seen.push(...page.items.map((v) => v.credential.id));
        if (page.next === undefined) break;
        cursor = page.next;
      }
      expect(seen.sort()).toEqual([...legacyIds].sort());
    }
    expect(await redis.hget(keys.task('legacy'), 'k')).toBeNull(); // the zset existed: nothing inline
    await store.endTask('legacy', { status: 'completed', reason: 'task_done', at: fake.seconds() });
    expect(await fanOutAll(store, 'legacy', 2)).toBe(legacyIds.length);
    // cursors an attacker makes up are listing keys like any other: pages, never errors or loops
    const craft = (key: string) => Buffer.from(key).toString('base64url');
    for (const key of ['9999999999:zzz', '0000000000|a|b', credentialKey({ issuedAt: t0, id: 'new-1' })]) {
      await expect(store.listCredentials({}, { limit: 2, cursor: craft(key) })).resolves.toBeDefined();
    }
    for (const key of ['9999999999:a|b', '123:abc', '9999999999|a'])
      await expect(store.listCredentials({}, { limit: 2, cursor: craft(key) }), key).rejects.toMatchObject({
        code: 'invalid_request',
      });
  });

  it("the sweeper's trim keeps every live credential findable, inline, zset, old and new alike", async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStores(fake, 'layout-trim-live');
    const now = fake.seconds();
    await store.recordIssuance(credential(now, 'live-inline', 'ti'), taskInit(now, 'ti'));
    await store.recordIssuance(credential(now, 'live-z1', 'tz'), taskInit(now, 'tz'));
    await store.recordIssuance(credential(now, 'live-z2', 'tz'), taskInit(now, 'tz'));
    const old = credential(now, 'live-old', 'tz');
    await redis.hset(keys.credential('tz', old.id), oldCredentialHash(old));
    await redis.zadd(keys.taskCredentials('tz'), old.expiresAt, old.id);
    await redis.set(keys.legacyCredentialIndex(old.id), 'tz', 'EX', 3600);
    await redis.zadd(keys.legacyCredentialListing, 0, `${String(now).padStart(10, '0')}|${old.id}|tz`);
    // a revoked one stays findable (and revoked) until Redis drops it
    await store.revokeCredential('live-z2', 'compromised', now);
    for (let i = 0; i < 3; i++) await store.trimRevocations(now + 10_000);
    for (const id of ['live-inline', 'live-z1', 'live-z2', 'live-old'])
      expect((await store.getCredential(id))?.credential.id, id).toBe(id);
    expect(await listingSize(redis, keys.credentialListing, keys.legacyCredentialListing)).toBe(4);
    expect((await store.getCredential('live-z2'))?.credential.revokedReason).toBe('compromised');
    // an old-form member whose credential Redis dropped goes, and takes no live index field with it
    await redis.del(keys.credential('tz', 'live-old'));
    await store.trimRevocations(now);
    expect(await listingSize(redis, keys.credentialListing, keys.legacyCredentialListing)).toBe(3);
    for (const id of ['live-inline', 'live-z1', 'live-z2'])
      expect(await redis.hget(keys.credentialIndex(id), id), id).not.toBeNull();
  });

  it('continues a fan-out an older worker started on an old-layout task (cursor into the zset)', async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStores(fake, 'layout-resume');
    const now = fake.seconds();
    await redis.hset(keys.task('half'), {
      o: OWNER,
      g: 'caller',
      c: String(now),
      d: String(now + 3600),
      s: 'active',
    });
    const olds = Array.from({ length: 5 }, (_, i) =>
      credential(now, `h-${i}`, 'half', { expiresAt: now + 100 + i }),
    );
    for (const c of olds) {
      await redis.hset(keys.credential('half', c.id), oldCredentialHash(c));
      await redis.zadd(keys.taskCredentials('half'), c.expiresAt, c.id);
    }
    await store.endTask('half', { status: 'revoked', reason: 'task_revoked', at: now });
    // an older worker marked the first two and stopped (cursor p = 2)
    for (const c of olds.slice(0, 2))
      await redis.hset(keys.credential('half', c.id), { v: String(now), w: 'task_revoked' });
    await redis.hset(keys.task('half'), 'p', '2');
    expect(await fanOutAll(store, 'half', 2)).toBe(3);
    for (const c of olds) expect((await store.getCredential(c.id, 'half'))?.credential.revokedAt).toBe(now);
  });
  it("the sweeper's trim reaches dropped credentials behind a run of live ones (id index fields have no TTL)", async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStores(fake, 'layout-trim-behind');
    const now = fake.seconds();
    // 2,300 long-lived credentials issued first (the oldest listing entries), then 50 short-lived ones
    const live = Array.from({ length: 2300 }, (_, i) => `live-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < live.length; i += 100) {
      await Promise.all(
        live
          .slice(i, i + 100)
          .map((id) =>
            store.recordIssuance(credential(now - 60, id, `lt-${id}`), taskInit(now - 60, `lt-${id}`)),
          ),
      );
    }
    const dropped = Array.from({ length: 50 }, (_, i) => `gone-${i}`);
    for (const id of dropped)
      await store.recordIssuance(credential(now, id, 'short'), taskInit(now, 'short'));
    // Redis drops the short-lived ones (their TTL; here by hand)
    for (const id of dropped) await redis.del(keys.credential('short', id));
    const held = async () => {
      let n = 0;
      for (const id of dropped) if ((await redis.hget(keys.credentialIndex(id), id)) !== null) n++;
      return n;
    };
    expect(await held()).toBe(50);
    // each sweep is bounded, but successive sweeps get past the live ones to the dropped ones
    for (let sweep = 0; sweep < 3 && (await held()) > 0; sweep++) await store.trimRevocations(now);
    expect(await held()).toBe(0);
    expect(await listingSize(redis, keys.credentialListing, keys.legacyCredentialListing)).toBe(2300);
    for (const id of [live[0]!, live[2299]!]) expect((await store.getCredential(id))?.credential.id).toBe(id);
  });

  it('one trim works off a backlog of dropped credentials larger than its base budget (sustained issuance)', async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStores(fake, 'layout-trim-backlog');
    const now = fake.seconds();
    // 3,000 dropped credentials, more than the 10 base batches of 200, then 10 live ones
    const dropped = Array.from({ length: 3000 }, (_, i) => `bg-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < dropped.length; i += 200) {
      await Promise.all(
        dropped
          .slice(i, i + 200)
          .map((id) => store.recordIssuance(credential(now - 60, id, 'bulk'), taskInit(now - 60, 'bulk'))),
      );
    }
    const live = Array.from({ length: 10 }, (_, i) => `keep-${i}`);
    for (const id of live)
      await store.recordIssuance(credential(now, id, `k-${id}`), taskInit(now, `k-${id}`));
    for (let i = 0; i < dropped.length; i += 500)
      await redis.del(...dropped.slice(i, i + 500).map((id) => keys.credential('bulk', id)));
    await store.trimRevocations(now);
    expect(await listingSize(redis, keys.credentialListing, keys.legacyCredentialListing)).toBe(live.length);
    let held = 0;
    for (const id of dropped.slice(0, 3000).filter((_, i) => i % 50 === 0)) {
      if ((await redis.hget(keys.credentialIndex(id), id)) !== null) held++;
    }
    expect(held).toBe(0);
    for (const id of live) expect((await store.getCredential(id))?.credential.id).toBe(id);
  });
});
