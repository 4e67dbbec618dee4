// A task's only credential kept whole in its task hash (src/store/redis: record-issuance, fan-out, revoke-credential
// and the sweeper's trim): revoked, ended, fanned out and announced exactly once, moved out with its revocation
// when a second credential joins, dropped at expiry + retention and never another's; and what the brokers before it
// wrote (the record in its own hash, k and x in the task hash: the fixture is that commit's script) still works.
// Real Redis.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RedisStore, redisKeys } from '../../src/store/redis/redis.store.ts';
import { credentialKey, taskKey } from '../../src/store/shared.ts';
import type { CredentialRecord, TaskInit } from '../../src/store/types.ts';
import { listingSize } from '../helpers/bucket-index.ts';
import { FakeClock } from '../helpers/clock.ts';
import { closedAfterEach, testRedis, uniquePrefix } from '../helpers/redis.ts';
import { credential, fanOutAll, liveFor, RETENTION, taskInit } from '../helpers/store-fixtures.ts';

const opened = closedAfterEach();

const HEAD_RECORD_ISSUANCE = readFileSync(
  new URL('./fixtures/record-issuance-7.head.lua', import.meta.url),
  'utf8',
);

async function openStore(fake: FakeClock, name: string) {
  const redis = await testRedis();
  const prefix = uniquePrefix(name);
  opened.push({ redis, prefix });
  const store = new RedisStore({ redis, prefix, clock: fake.clock, retentionSeconds: RETENTION });
  const keys = redisKeys(prefix);
  /** Records as the broker before the inline record did: its script, with the arguments it passed. */
  const headRecord = async (c: CredentialRecord, t: TaskInit) => {
    const now = fake.seconds();
    const fields = ['y', c.type, 'a', c.attestor, 'u', JSON.stringify(c.audience), 'i', String(c.issuedAt)];
    fields.push('e', String(c.expiresAt), 'k', c.kid);
    if (c.legacy !== undefined) fields.push('l', c.legacy ? '1' : '0');
    const [code] = (await redis.eval(
      HEAD_RECORD_ISSUANCE,
      7,
      keys.task(t.id),
      keys.taskCredentials(t.id),
      keys.credential(t.id, c.id),
      keys.credentialIndex(c.id),
      keys.legacyCredentialListing,
      keys.legacyTaskListing,
      keys.legacyTaskDeadlines,
      now,
      RETENTION,
      t.owner,
      t.origin,
      t.deadline,
      c.id,
      c.expiresAt,
      t.id,
      credentialKey(c),
      taskKey({ createdAt: now, id: t.id }),
      c.spiffeId,
      ...fields,
    )) as [number];
    expect(code).toBe(1);
  };
  return { redis, store, keys, headRecord };
}

async function credentialEvents(store: RedisStore) {
  return (await store.readRevocations(undefined, 1000))
    .filter((e) => e.kind === 'credential')
    .map((e) => (e.kind === 'credential' ? `${e.credential}:${e.reason}` : ''));
}

describe("a task's only credential, kept in the task hash", () => {
  it('reads exactly as a credential with a hash of its own, every field included', async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStore(fake, 'inline-same');
    const now = fake.seconds();
    const other = 'spiffe://example.org/ci/github/acme/app/test';
    const full = { legacy: true, spiffeId: other, audience: ['a', 'b'], type: 'x509' as const };
    await store.recordIssuance(credential(now, 'in', 'solo', full), taskInit(now, 'solo'));
    // the same credential in a task of two: the first moves to a hash of its own
    await store.recordIssuance(credential(now, 'out', 'pair', full), taskInit(now, 'pair'));
    await store.recordIssuance(credential(now, 'second', 'pair'), taskInit(now, 'pair'));
    expect(await redis.exists(keys.credential('solo', 'in'))).toBe(0);
    expect(await redis.hget(keys.task('solo'), 'n')).toBe(other);
    expect(await redis.hget(keys.credential('pair', 'out'), 's')).toBe(other);
    const inline = await store.getCredential('in');
    const own = await store.getCredential('out');
    expect(inline?.credential).toEqual({ ...credential(now, 'in', 'solo', full) });
    expect({ ...own?.credential, id: 'in', task: 'solo' }).toEqual(inline?.credential);
    expect(await liveFor(store, fake, 'in', 'solo', other)).toBe('active');
    expect(await liveFor(store, fake, 'in', 'solo')).toBe('mismatch');
    // listings, by task and overall, and the count
    expect((await store.listCredentials({ task: 'solo' }, { limit: 10 })).items).toEqual([inline]);
    expect(
      (await store.listCredentials({ spiffeId: other }, { limit: 10 })).items.map((v) => v.credential.id),
    ).toEqual(expect.arrayContaining(['in', 'out']));
    expect(await store.countTaskCredentials('solo')).toBe(1);
  });

  it('is revoked and announced once; its revocation moves with it when a second credential joins', async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStore(fake, 'inline-revoke');
    const now = fake.seconds();
    await store.recordIssuance(credential(now, 'c1', 'run'), taskInit(now, 'run'));
    expect((await store.revokeCredential('c1', 'compromised', now))?.revoked).toBe(true);
    expect((await store.revokeCredential('c1', 'again', now))?.revoked).toBe(false);
    expect(await redis.hmget(keys.task('run'), 'v', 'w')).toEqual([String(now), 'compromised']);
    // a retry of its issuance changes nothing: the revocation stays
    await store.recordIssuance(credential(now, 'c1', 'run'), taskInit(now, 'run'));
    expect(await liveFor(store, fake, 'c1', 'run')).toBe('revoked');
    await store.recordIssuance(credential(now, 'c2', 'run'), taskInit(now, 'run'));
    expect(await redis.hmget(keys.credential('run', 'c1'), 'v', 'w')).toEqual([String(now), 'compromised']);
    expect(await redis.call('EXPIRETIME', keys.credential('run', 'c1'))).toBeGreaterThan(0);
    // nor does a retry after the move
    await store.recordIssuance(credential(now, 'c1', 'run'), taskInit(now, 'run'));
    expect(await liveFor(store, fake, 'c1', 'run')).toBe('revoked');
    expect((await store.getCredential('c1'))?.credential.revokedReason).toBe('compromised');
    // the task's end reaches only the one still live
    await store.endTask('run', { status: 'revoked', reason: 'task_revoked', at: now });
    expect(await fanOutAll(store, 'run', 1)).toBe(1);
    expect(await fanOutAll(store, 'run', 1)).toBe(0);
    expect(await credentialEvents(store)).toEqual(['c1:compromised', 'c2:task_revoked']);
  });

  it("is reached once by its task's end, whatever the batch, and a retried fan-out announces nothing more", async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStore(fake, 'inline-fanout');
    const now = fake.seconds();
    await store.recordIssuance(credential(now, 'f1', 'ends'), taskInit(now, 'ends'));
    expect((await store.endTask('ends', { status: 'completed', reason: 'task_done', at: now }))?.ended).toBe(
      true,
    );
    expect(await liveFor(store, fake, 'f1', 'ends')).toBe('revoked');
    expect(await store.fanOutTask('ends', 1)).toEqual({ revoked: 1, done: true });
    expect(await store.fanOutTask('ends', 1)).toEqual({ revoked: 0, done: true });
    expect(await redis.hmget(keys.task('ends'), 'v', 'w', 'f')).toEqual([String(now), 'task_done', '1']);
    expect(await credentialEvents(store)).toEqual(['f1:task_done']);
    // an expired one is not announced
    await store.recordIssuance(credential(now, 'f2', 'late', { expiresAt: now + 5 }), taskInit(now, 'late'));
    fake.advance(5_000);
    expect(await liveFor(store, fake, 'f2', 'late')).toBe('expired');
    await store.endTask('late', { status: 'completed', reason: 'task_done', at: fake.seconds() });
    expect(await store.fanOutTask('late', 10)).toEqual({ revoked: 0, done: true });
    expect((await store.getCredential('f2'))?.credential.revokedAt).toBeUndefined();
    expect(await credentialEvents(store)).toEqual(['f1:task_done']);
  });

  it("is dropped by the sweeper's trim at expiry + retention, with its index entries, never before, never another's", async () => {
    const fake = new FakeClock();
    const { store, redis, keys } = await openStore(fake, 'inline-trim');
    const now = fake.seconds();
    await store.recordIssuance(
      credential(now, 'old', 'reused', { expiresAt: now + 60 }),
      taskInit(now, 'reused'),
    );
    await store.recordIssuance(
      credential(now, 'keep', 'other', { expiresAt: now + 900 }),
      taskInit(now, 'other'),
    );
    fake.advance((60 + RETENTION - 1) * 1000);
    await store.trimRevocations(fake.seconds());
    expect(await redis.hget(keys.task('reused'), 'y')).toBe('jwt');
    expect(await listingSize(redis, keys.credentialListing, keys.legacyCredentialListing)).toBe(2);
    fake.advance(1000);
    // read as gone at once; the trim drops its fields, its listing entry and its id index field
    expect(await store.getCredential('old')).toBeNull();
    await store.trimRevocations(fake.seconds());
    expect(Object.keys(await redis.hgetall(keys.task('reused'))).sort()).toEqual(['c', 'd', 'g', 'o', 's']);
    expect(await redis.hget(keys.credentialIndex('old'), 'old')).toBeNull();
    expect(await listingSize(redis, keys.credentialListing, keys.legacyCredentialListing)).toBe(1);
    expect((await store.getCredential('keep'))?.credential.id).toBe('keep');
    expect((await store.getTask('reused'))?.id).toBe('reused');

    // a stale listing entry never drops the credential the task holds now
    const later = fake.seconds();
    await store.recordIssuance(
      credential(later, 'a', 'again', { expiresAt: later + 60 }),
      taskInit(later, 'again'),
    );
    fake.advance((60 + RETENTION) * 1000);
    const then = fake.seconds();
    // the next issuance into the task drops the expired record itself and keeps the new one in the hash
    await store.recordIssuance(credential(then, 'b', 'again'), taskInit(then, 'again'));
    expect(await redis.hmget(keys.task('again'), 'k', 'y')).toEqual(['b', 'jwt']);
    await store.trimRevocations(then);
    expect(await redis.hmget(keys.task('again'), 'k', 'y')).toEqual(['b', 'jwt']);
    expect((await store.getCredential('b'))?.credential.id).toBe('b');
    expect(await store.getCredential('a')).toBeNull();
    expect(await redis.hget(keys.credentialIndex('a'), 'a')).toBeNull();
  });
});

describe('what the brokers before the inline record wrote', () => {
  it('reads, lists, counts and revokes their one-credential task, its record in a hash of its own', async () => {
    const fake = new FakeClock();
    const { store, redis, keys, headRecord } = await openStore(fake, 'head-read');
    const now = fake.seconds();
    const c = credential(now, 'h1', 'old', { legacy: true });
    await headRecord(c, taskInit(now, 'old'));
    expect(await redis.hmget(keys.task('old'), 'k', 'x', 'y')).toEqual(['h1', String(now + 300), null]);
    expect(await redis.exists(keys.credential('old', 'h1'))).toBe(1);
    expect((await store.getCredential('h1'))?.credential).toEqual(c);
    expect(await liveFor(store, fake, 'h1', 'old')).toBe('active');
    expect((await store.listCredentials({}, { limit: 10 })).items.map((v) => v.credential)).toEqual([c]);
    expect(
      (await store.listCredentials({ task: 'old' }, { limit: 10 })).items.map((v) => v.credential.id),
    ).toEqual(['h1']);
    expect((await store.listTasks({}, { limit: 10 })).items.map((t) => t.id)).toEqual(['old']);
    expect(await store.countTaskCredentials('old')).toBe(1);
    // a retried issuance of it through this broker changes nothing
    await store.recordIssuance(c, taskInit(now, 'old'));
    expect(await redis.hget(keys.task('old'), 'y')).toBeNull();
    expect((await store.revokeCredential('h1', 'compromised', now))?.revoked).toBe(true);
    expect(await liveFor(store, fake, 'h1', 'old')).toBe('revoked');
    expect(await redis.hget(keys.credential('old', 'h1'), 'w')).toBe('compromised');
    expect(await credentialEvents(store)).toEqual(['h1:compromised']);
  });

  it('ends and fans out their one-credential task, and moves it when this broker adds a second', async () => {
    const fake = new FakeClock();
    const { store, redis, keys, headRecord } = await openStore(fake, 'head-fanout');
    const now = fake.seconds();
    await headRecord(credential(now, 'e1', 'ended'), taskInit(now, 'ended'));
    await store.endTask('ended', { status: 'revoked', reason: 'task_revoked', at: now });
    expect(await liveFor(store, fake, 'e1', 'ended')).toBe('revoked');
    expect(await fanOutAll(store, 'ended', 1)).toBe(1);
    expect((await store.getCredential('e1'))?.credential.revokedReason).toBe('task_revoked');

    await headRecord(credential(now, 'j1', 'joined', { expiresAt: now + 200 }), taskInit(now, 'joined'));
    await store.recordIssuance(credential(now, 'j2', 'joined'), taskInit(now, 'joined'));
    expect(await redis.hmget(keys.task('joined'), 'k', 'x')).toEqual([null, null]);
    expect(await redis.zrange(keys.taskCredentials('joined'), '0', '-1')).toEqual(['j1', 'j2']);
    expect(await redis.hget(keys.credential('joined', 'j1'), 'e')).toBe(String(now + 200));
    expect(
      (await store.listCredentials({ task: 'joined' }, { limit: 10 })).items
        .map((v) => v.credential.id)
        .sort(),
    ).toEqual(['j1', 'j2']);
    await store.endTask('joined', { status: 'completed', reason: 'task_done', at: now });
    expect(await fanOutAll(store, 'joined', 1)).toBe(2);
    expect(await credentialEvents(store)).toEqual(['e1:task_revoked', 'j1:task_done', 'j2:task_done']);
  });

  it('lists their tasks among the new ones, and the deadlines job ends them (their single-zset indexes)', async () => {
    const fake = new FakeClock();
    const { store, redis, keys, headRecord } = await openStore(fake, 'head-indexes');
    const now = fake.seconds();
    await headRecord(credential(now, 'o1', 'old-1'), taskInit(now, 'old-1', { deadline: now + 1000 }));
    fake.advance(1000);
    await store.recordIssuance(
      credential(now + 1, 'n1', 'new-1'),
      taskInit(now + 1, 'new-1', { deadline: now + 900 }),
    );
    fake.advance(1000);
    await headRecord(
      credential(now + 2, 'o2', 'old-2'),
      taskInit(now + 2, 'old-2', { deadline: now + 2000 }),
    );
    expect(await redis.zcard(keys.legacyTaskListing)).toBe(2);
    expect((await store.listTasks({}, { limit: 10 })).items.map((t) => t.id)).toEqual([
      'old-2',
      'new-1',
      'old-1',
    ]);
    const first = await store.listTasks({}, { limit: 1 });
    expect((await store.listTasks({}, { limit: 10, cursor: first.next })).items.map((t) => t.id)).toEqual([
      'new-1',
      'old-1',
    ]);
    expect((await store.listCredentials({}, { limit: 10 })).items.map((v) => v.credential.id)).toEqual([
      'o2',
      'n1',
      'o1',
    ]);
    // overdue by deadline across both indexes; an ended one leaves the old deadlines zset
    expect((await store.pendingTasks(now + 1000, 10)).overdue).toEqual(['new-1', 'old-1']);
    await store.endTask('old-1', { status: 'expired', reason: 'task_deadline', at: now + 1000 });
    expect(await redis.zrange(keys.legacyTaskDeadlines, '0', '-1')).toEqual(['old-2']);
    expect((await store.pendingTasks(now + 5000, 10)).overdue).toEqual(['new-1', 'old-2']);
  });

  it("keeps their live one-credential tasks through the sweeper's trim and drops those Redis dropped", async () => {
    const fake = new FakeClock();
    const { store, redis, keys, headRecord } = await openStore(fake, 'head-trim');
    const now = fake.seconds();
    await headRecord(credential(now, 'live', 't-live'), taskInit(now, 't-live'));
    await headRecord(credential(now, 'gone', 't-gone'), taskInit(now, 't-gone'));
    await redis.del(keys.credential('t-gone', 'gone')); // its TTL passed
    await store.trimRevocations(now);
    expect(await listingSize(redis, keys.credentialListing, keys.legacyCredentialListing)).toBe(1);
    expect(await redis.hget(keys.credentialIndex('gone'), 'gone')).toBeNull();
    expect((await store.getCredential('live'))?.credential.id).toBe('live');
    expect(await store.getCredential('gone')).toBeNull();
    // the task hash, which outlives it, keeps k and x as the older broker left them (no record to drop)
    expect(await redis.hmget(keys.task('t-gone'), 'k', 'y')).toEqual(['gone', null]);
  });
});
