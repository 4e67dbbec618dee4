// Runs the CredentialStore contract against the Redis adapter, plus its data model and failure behaviour.
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { WritError } from '../../src/errors.ts';
import {
  credentialIndexBucket,
  RedisStore,
  redisClientOptions,
  redisKeys,
} from '../../src/store/redis/redis.store.ts';
import type { CredentialRecord, CredentialStore, TaskInit } from '../../src/store/types.ts';
import { indexMembers } from '../helpers/bucket-index.ts';
import { FakeClock } from '../helpers/clock.ts';
import { deleteKeys, testRedis, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { freePort, type RedisServer, startRedisServer } from '../helpers/redis-server.ts';
import { CONTRACT_RETENTION_SECONDS, credentialStoreContract } from './credential-store.contract.ts';

const opened: { redis: Redis; prefix: string | undefined }[] = [];
const servers: RedisServer[] = [];

afterEach(async () => {
  const used = opened.splice(0);
  for (const { redis, prefix } of used) {
    if (prefix !== undefined && redis.status === 'ready') await deleteKeys(redis, prefix);
  }
  for (const redis of new Set(used.map((u) => u.redis))) redis.disconnect();
  for (const server of servers.splice(0)) await server.stop();
});

async function openStore(fake: FakeClock, name: string, retentionSeconds = CONTRACT_RETENTION_SECONDS) {
  const redis = await testRedis();
  const prefix = uniquePrefix(name);
  opened.push({ redis, prefix });
  const store = new RedisStore({ redis, prefix, clock: fake.clock, retentionSeconds });
  return { redis, prefix, store, keys: redisKeys(prefix) };
}

const contractPrefixes = new WeakMap<CredentialStore, string>();

credentialStoreContract(
  'redis',
  async (fake) => {
    const { store, prefix } = await openStore(fake, 'contract');
    contractPrefixes.set(store, prefix);
    return store;
  },
  // a restarted process: a new connection and a new store over the same keys
  async (store, fake) => {
    const redis = await testRedis();
    const prefix = contractPrefixes.get(store)!;
    opened.push({ redis, prefix });
    return new RedisStore({ redis, prefix, clock: fake.clock, retentionSeconds: CONTRACT_RETENTION_SECONDS });
  },
);

function credential(
  now: number,
  id: string,
  task: string,
  overrides: Partial<CredentialRecord> = {},
): CredentialRecord {
  return {
    id,
    type: 'jwt',
    spiffeId: 'spiffe://example.org/ci/github/acme/app/build',
    task,
    attestor: 'github_actions',
    audience: ['https://api.example.org', 'sts.amazonaws.com'],
    issuedAt: now,
    expiresAt: now + 300,
    kid: 'a1b2c3d4e5f60718',
    ...overrides,
  };
}

function taskInit(now: number, id: string, overrides: Partial<TaskInit> = {}): TaskInit {
  return {
    id,
    owner: 'spiffe://example.org/ci/github/acme/app/build',
    origin: 'attestor',
    deadline: now + 3600,
    ...overrides,
  };
}

/** The Redis Cluster hash slot of a key: CRC16 (XMODEM) of its hash tag, mod 16384. */
function keySlot(key: string): number {
  const open = key.indexOf('{');
  const close = open === -1 ? -1 : key.indexOf('}', open + 1);
  const tagged = close > open + 1 ? key.slice(open + 1, close) : key;
  let crc = 0;
  for (const byte of Buffer.from(tagged)) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++)
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc % 16384;
}

async function expectUnavailable(promise: Promise<unknown>): Promise<WritError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(WritError);
  const writError = error as WritError;
  expect(writError.code).toBe('ERR_STORE_UNAVAILABLE');
  // the client's own message stays in the cause, never in what the client is told
  expect(writError.message).toBe('ERR_STORE_UNAVAILABLE');
  expect(writError.toJSON()).toEqual({
    error: 'ERR_STORE_UNAVAILABLE',
    error_description: 'the credential store is unavailable; nothing was issued',
  });
  expect(writError.cause).toBeInstanceOf(Error);
  return writError;
}

/** Every method of the store, each called once. */
function everyMethod(store: CredentialStore, now: number): [string, () => Promise<unknown>][] {
  return [
    ['createEntry', () => store.createEntry({ spiffeId: 'spiffe://example.org/a', selectors: ['x:y:z'] })],
    ['getEntry', () => store.getEntry('e')],
    ['listEntries', () => store.listEntries()],
    ['updateEntry', () => store.updateEntry('e', { spiffeId: 'spiffe://example.org/a', selectors: [] })],
    ['deleteEntry', () => store.deleteEntry('e')],
    [
      'putJoinToken',
      () =>
        store.putJoinToken('h', { spiffeId: 'spiffe://example.org/a', createdAt: now, expiresAt: now + 60 }),
    ],
    ['consumeJoinToken', () => store.consumeJoinToken('h')],
    ['recordIssuance', () => store.recordIssuance(credential(now, 'c1', 't1'), taskInit(now, 't1'))],
    ['getCredential', () => store.getCredential('c1')],
    ['getCredential with task', () => store.getCredential('c1', 't1')],
    ['getTask', () => store.getTask('t1')],
    ['endTask', () => store.endTask('t1', { status: 'completed', reason: 'done', at: now })],
    ['fanOutTask', () => store.fanOutTask('t1', 10)],
    ['revokeCredential', () => store.revokeCredential('c1', 'admin', now)],
    ['revokeCredential with task', () => store.revokeCredential('c1', 'admin', now, 't1')],
    ['listCredentials', () => store.listCredentials({}, { limit: 10 })],
    ['listCredentials by task', () => store.listCredentials({ task: 't1' }, { limit: 10 })],
    ['listTasks', () => store.listTasks({}, { limit: 10 })],
    ['countTaskCredentials', () => store.countTaskCredentials('t1')],
    ['readRevocations', () => store.readRevocations(undefined, 10)],
    ['waitForRevocations', () => store.waitForRevocations('$', 100)],
    ['lastRevocationId', () => store.lastRevocationId()],
    ['trimRevocations', () => store.trimRevocations(now)],
    ['pendingTasks', () => store.pendingTasks(now, 10)],
    ['putKeyMaterialIfAbsent', () => store.putKeyMaterialIfAbsent('k', 'v')],
    ['getKeyMaterial', () => store.getKeyMaterial('k')],
    ['nextSequence', () => store.nextSequence('k')],
    ['ping', () => store.ping()],
  ];
}

describe('RedisStore', () => {
  describe('data model', () => {
    it('keeps every key of a task in one hash slot, with the documented names', async () => {
      const fake = new FakeClock();
      const { redis, prefix, store, keys } = await openStore(fake, 'model');
      const now = fake.seconds();
      await store.recordIssuance(credential(now, 'c1', 'run-1'), taskInit(now, 'run-1'));
      expect(keys.task('run-1')).toBe(`${prefix}{t:run-1}:task`);
      const found = [];
      let cursor = '0';
      do {
        const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`);
        found.push(...batch);
        cursor = next;
      } while (cursor !== '0');
      expect(found.sort()).toEqual(
        [
          `${prefix}ci:${credentialIndexBucket('c1')}`,
          // the listing indexes: a directory of buckets each, named by their lowest member
          `${prefix}ix:creds`,
          `${prefix}ix:creds:${String(now).padStart(10, '0')}:c1`,
          `${prefix}ix:tasks`,
          `${prefix}ix:tasks:${String(now).padStart(10, '0')}|run-1`,
          `${prefix}tasks:due`,
          `${prefix}{t:run-1}:task`,
        ].sort(),
      );
      expect(await indexMembers(redis, keys.credentialListing)).toEqual([
        `${String(now).padStart(10, '0')}:c1`,
      ]);
      expect(
        await redis.object('ENCODING', `${keys.credentialListing}:${String(now).padStart(10, '0')}:c1`),
      ).toBe('listpack');
      // the id index: a field of a small hash; the credential's SPIFFE ID is the task owner's, not stored twice
      expect(keys.credentialIndex('c1')).toMatch(new RegExp(`^${prefix}ci:[0-9a-f]{3}$`));
      expect(await redis.hgetall(keys.credentialIndex('c1'))).toEqual({ c1: 'run-1' });
      // a task's only credential is kept in the task hash, record and all (its SPIFFE ID is the task owner's, not
      // stored twice); the task's zset and the credential's own hash are made when a second one joins
      expect(await redis.hgetall(keys.task('run-1'))).toEqual({
        o: credential(now, 'c1', 'run-1').spiffeId,
        g: 'attestor',
        c: String(now),
        d: String(now + 3600),
        s: 'active',
        k: 'c1',
        x: String(now + 300),
        y: 'jwt',
        a: 'github_actions',
        u: JSON.stringify(['https://api.example.org', 'sts.amazonaws.com']),
        i: String(now),
        j: 'a1b2c3d4e5f60718',
      });
      expect(await redis.exists(keys.taskCredentials('run-1'), keys.credential('run-1', 'c1'))).toBe(0);
      await store.recordIssuance(
        credential(now, 'c2', 'run-1', { expiresAt: now + 60 }),
        taskInit(now, 'run-1'),
      );
      // the first moved out: its own hash (the credential hash's names), the task hash back to the task's fields
      expect(await redis.hgetall(keys.credential('run-1', 'c1'))).toEqual({
        y: 'jwt',
        a: 'github_actions',
        u: JSON.stringify(['https://api.example.org', 'sts.amazonaws.com']),
        i: String(now),
        e: String(now + 300),
        k: 'a1b2c3d4e5f60718',
      });
      expect(Object.keys(await redis.hgetall(keys.task('run-1'))).sort()).toEqual(['c', 'd', 'g', 'o', 's']);
      expect(await redis.zrange(keys.taskCredentials('run-1'), '0', '-1', 'WITHSCORES')).toEqual([
        'c2',
        String(now + 60),
        'c1',
        String(now + 300),
      ]);
      expect(await indexMembers(redis, keys.taskListing)).toEqual([`${String(now).padStart(10, '0')}|run-1`]);
      // the task listing's bucket is due at the earliest deadline of its active tasks
      expect(await redis.zrange(keys.tasksDue, '0', '-1', 'WITHSCORES')).toEqual([
        `${String(now).padStart(10, '0')}|run-1`,
        String(now + 3600),
      ]);
      // ending the task: its event, and the fan-out queue; the due bucket is made exact by the next read of it
      await store.endTask('run-1', { status: 'completed', reason: 'task_done', at: now });
      expect(await redis.zrange(keys.tasksEnding, '0', '-1', 'WITHSCORES')).toEqual(['run-1', String(now)]);
      expect((await store.pendingTasks(now + 3600, 10)).overdue).toEqual([]);
      expect(await redis.zcard(keys.tasksDue)).toBe(0);
      const [[, fields]] = (await redis.xrange(keys.revocations, '-', '+')) as [[string, string[]]];
      expect(fields).toEqual([
        'k',
        't',
        't',
        'run-1',
        'x',
        String(now + 300),
        'r',
        'task_done',
        'v',
        String(now),
      ]);
      expect(await store.fanOutTask('run-1', 10)).toEqual({ revoked: 2, done: true });
      expect(await redis.hget(keys.task('run-1'), 'f')).toBe('1');
      expect(await redis.zrange(keys.tasksEnding, '0', '-1')).toEqual([]);
      const slots = [keys.task('run-1'), keys.taskCredentials('run-1'), keys.credential('run-1', 'c1')].map(
        keySlot,
      );
      expect(new Set(slots).size).toBe(1);
      expect(keySlot('123456789')).toBe(0x31c3 % 16384); // the CRC16 check value: keySlot itself is right
    });

    it('expires the credential at expiry + retention and the task at deadline + retention, never shortening', async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'ttl', 600);
      const now = fake.seconds();
      await store.recordIssuance(
        credential(now, 'c1', 'run-1'),
        taskInit(now, 'run-1', { deadline: now + 1800 }),
      );
      await store.recordIssuance(
        credential(now, 'c2', 'run-1', { expiresAt: now + 60 }),
        taskInit(now, 'run-1'),
      );
      const expireTime = (key: string) => redis.call('EXPIRETIME', key);
      expect(await expireTime(keys.credential('run-1', 'c1'))).toBe(now + 300 + 600);
      expect(await expireTime(keys.credential('run-1', 'c2'))).toBe(now + 60 + 600);
      // the id index bucket is shared by many credentials: no TTL (its fields go with the listing entries)
      expect(await expireTime(keys.credentialIndex('c1'))).toBe(-1);
      expect(await expireTime(keys.task('run-1'))).toBe(now + 1800 + 600);
      expect(await expireTime(keys.taskCredentials('run-1'))).toBe(now + 1800 + 600);
      // an expiry set further out (e.g. by a lifecycle job) is kept
      await redis.expireat(keys.task('run-1'), now + 86_400);
      await store.recordIssuance(credential(now, 'c3', 'run-1'), taskInit(now, 'run-1'));
      expect(await expireTime(keys.task('run-1'))).toBe(now + 86_400);
      expect(await expireTime(keys.taskCredentials('run-1'))).toBe(now + 1800 + 600);
    });

    it('never sets a key expiry in the past, even when the injected clock is', async () => {
      const fake = new FakeClock(Date.UTC(2001, 0, 1));
      const { redis, store, keys } = await openStore(fake, 'past', 120);
      const now = fake.seconds();
      const result = await store.recordIssuance(credential(now, 'c1', 'run-1'), taskInit(now, 'run-1'));
      expect(result.ok).toBe(true);
      const realNow = Math.floor(Date.now() / 1000);
      expect(await redis.call('EXPIRETIME', keys.task('run-1'))).toBeGreaterThanOrEqual(realNow + 119);
      expect((await store.getCredential('c1'))?.credential.id).toBe('c1');
      // moved to its own hash when a second credential joins: that key's expiry is not in the past either
      await store.recordIssuance(credential(now, 'c2', 'run-1'), taskInit(now, 'run-1'));
      for (const key of [keys.credential('run-1', 'c1'), keys.credential('run-1', 'c2')]) {
        expect(await redis.call('EXPIRETIME', key)).toBeGreaterThanOrEqual(realNow + 119);
      }
    });

    it("stores a joining identity's own SPIFFE ID, and reads the owner's for the others", async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'spiffe-elided');
      const now = fake.seconds();
      const other = 'spiffe://example.org/ci/github/acme/app/test';
      await store.recordIssuance(credential(now, 'c1', 'run-1'), taskInit(now, 'run-1'));
      // an attestor task is shared by the identities of the same run
      const joined = await store.recordIssuance(
        credential(now, 'c2', 'run-1', { spiffeId: other }),
        taskInit(now, 'run-1', { owner: other }),
      );
      expect(joined.ok).toBe(true);
      expect(await redis.hget(keys.credential('run-1', 'c1'), 's')).toBeNull();
      expect(await redis.hget(keys.credential('run-1', 'c2'), 's')).toBe(other);
      expect((await store.getCredential('c1'))?.credential.spiffeId).toBe(taskInit(now, 'x').owner);
      expect((await store.getCredential('c2'))?.credential.spiffeId).toBe(other);
      const listed = await store.listCredentials({}, { limit: 10 });
      expect(listed.items.map((v) => [v.credential.id, v.credential.spiffeId])).toEqual([
        ['c2', other],
        ['c1', taskInit(now, 'x').owner],
      ]);
      const revoked = await store.revokeCredential('c2', 'compromised', now);
      expect(revoked?.view.credential).toMatchObject({ spiffeId: other, revokedReason: 'compromised' });
      // A credential hash without its SPIFFE ID whose task hash is gone (deleted by hand: TTLs never do it
      // first) reads as gone, never as another identity's.
      await redis.del(keys.task('run-1'));
      expect(await store.getCredential('c1')).toBeNull();
      expect((await store.getCredential('c2'))?.credential.spiffeId).toBe(other);
    });

    it('reads credentials recorded by brokers before the compact layout (cidx keys, SPIFFE ID stored)', async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'legacy-layout');
      const now = fake.seconds();
      await store.recordIssuance(credential(now, 'c1', 'run-1'), taskInit(now, 'run-1'));
      // what an older broker wrote for c0: its own cidx key with a TTL, and every field in the hash
      const old = credential(now, 'c0', 'run-1', {
        spiffeId: 'spiffe://example.org/ci/github/acme/app/build',
      });
      await redis.hset(keys.credential('run-1', 'c0'), {
        y: old.type,
        s: old.spiffeId,
        a: old.attestor,
        u: JSON.stringify(old.audience),
        i: String(old.issuedAt),
        e: String(old.expiresAt),
        k: old.kid,
      });
      await redis.zadd(keys.taskCredentials('run-1'), old.expiresAt, 'c0');
      await redis.set(keys.legacyCredentialIndex('c0'), 'run-1', 'EX', 3600);
      await redis.zadd(keys.legacyCredentialListing, 0, `${String(now).padStart(10, '0')}|c0|run-1`);
      expect(keys.legacyCredentialIndex('c0')).toMatch(/cidx:c0$/);
      expect((await store.getCredential('c0'))?.credential).toEqual(old);
      expect((await store.revokeCredential('c0', 'compromised', now))?.revoked).toBe(true);
      expect(
        (await store.listCredentials({}, { limit: 10 })).items.map((v) => v.credential.id).sort(),
      ).toEqual(['c0', 'c1']);
      // a cursor made of an earlier listing key still resumes: the current keys of that second sort after it
      const earlierCursor = Buffer.from(`${String(now).padStart(10, '0')}|c0|run-1`).toString('base64url');
      expect(
        (await store.listCredentials({}, { limit: 10, cursor: earlierCursor })).items.map(
          (v) => v.credential.id,
        ),
      ).toEqual(['c1']);
      // the sweeper's trim forgets an earlier key whose record is gone, without an id index entry to drop
      await redis.del(keys.credential('run-1', 'c0'));
      await store.trimRevocations(now);
      expect(await indexMembers(redis, keys.credentialListing)).toEqual([
        `${String(now).padStart(10, '0')}:c1`,
      ]);
      expect(await redis.exists(keys.legacyCredentialListing)).toBe(0);
      await redis.hset(keys.credential('run-1', 'c0'), {
        y: old.type,
        s: old.spiffeId,
        a: old.attestor,
        u: JSON.stringify(old.audience),
        i: String(old.issuedAt),
        e: String(old.expiresAt),
        k: old.kid,
        v: String(now),
        w: 'compromised',
      });
      // the fan-out of its task reaches it like any other
      await store.endTask('run-1', { status: 'revoked', reason: 'task_revoked', at: now });
      expect(await store.fanOutTask('run-1', 10)).toEqual({ revoked: 1, done: true });
      expect((await store.getCredential('c1'))?.credential.revokedReason).toBe('task_revoked');
      expect((await store.getCredential('c0'))?.credential.revokedReason).toBe('compromised');
    });

    it('drops id index fields with the listing entries of credentials Redis has dropped', async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'index-trim');
      const now = fake.seconds();
      const ids = Array.from({ length: 30 }, (_, i) => `cred-${i}`);
      for (const id of ids) await store.recordIssuance(credential(now, id, 'run-1'), taskInit(now, 'run-1'));
      const held = async () => {
        let n = 0;
        for (const id of ids) if ((await redis.hget(keys.credentialIndex(id), id)) !== null) n++;
        return n;
      };
      expect(await held()).toBe(30);
      // Redis drops ten records (their TTL): the sweeper's trim forgets their index fields and listing entries
      for (const id of ids.slice(0, 10)) await redis.del(keys.credential('run-1', id));
      await store.trimRevocations(now);
      expect(await held()).toBe(20);
      expect(await indexMembers(redis, keys.credentialListing)).toHaveLength(20);
      for (const id of ids.slice(0, 10)) expect(await store.getCredential(id)).toBeNull();
      // a listing page that meets dropped records forgets them too
      for (const id of ids.slice(10, 15)) await redis.del(keys.credential('run-1', id));
      const page = await store.listCredentials({}, { limit: 100 });
      expect(page.items).toHaveLength(15);
      expect(await held()).toBe(15);
      expect(await indexMembers(redis, keys.credentialListing)).toHaveLength(15);
      // the buckets are small hashes in their compact encoding
      expect(await redis.object('ENCODING', keys.credentialIndex(ids[20]!))).toBe('listpack');
      expect((await store.getCredential(ids[20]!))?.credential.task).toBe('run-1');
    });

    it("keeps a task's only credential in the task hash: fan-out, end event, count, listing and trimming", async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'inline-credential', 600);
      const now = fake.seconds();
      // one credential: fan-out in batches of one still visits it once
      await store.recordIssuance(credential(now, 'a1', 'one'), taskInit(now, 'one'));
      expect(await store.countTaskCredentials('one')).toBe(1);
      expect(
        (await store.listCredentials({ task: 'one' }, { limit: 10 })).items.map((v) => v.credential.id),
      ).toEqual(['a1']);
      const ended = await store.endTask('one', { status: 'completed', reason: 'task_done', at: now });
      expect(ended?.ended).toBe(true);
      expect(await store.fanOutTask('one', 1)).toEqual({ revoked: 1, done: true });
      expect(await store.fanOutTask('one', 1)).toEqual({ revoked: 0, done: true });
      const feed = await store.readRevocations(undefined, 10);
      expect(feed.map((e) => [e.kind, e.credential ?? null, e.expiresAt])).toEqual([
        ['task', null, now + 300], // the end event names the last expiry: the inline credential's
        ['credential', 'a1', now + 300],
      ]);

      // three credentials, the first moved to the zset when the second came: fan-out resumes across batches
      for (const [id, exp] of [
        ['b1', 500],
        ['b2', 100],
        ['b3', 200],
      ] as const) {
        await store.recordIssuance(
          credential(now, id, 'three', { expiresAt: now + exp }),
          taskInit(now, 'three'),
        );
      }
      expect(await redis.hget(keys.task('three'), 'k')).toBeNull();
      expect(await store.countTaskCredentials('three')).toBe(3);
      await store.endTask('three', { status: 'revoked', reason: 'task_revoked', at: now });
      expect(await store.fanOutTask('three', 2)).toEqual({ revoked: 2, done: false });
      expect(await store.fanOutTask('three', 2)).toEqual({ revoked: 1, done: true });
      for (const id of ['b1', 'b2', 'b3'])
        expect((await store.getCredential(id))?.credential.revokedReason).toBe('task_revoked');

      // both at once (an older broker adds to the zset without moving the first): every credential is visited
      await store.recordIssuance(credential(now, 'm1', 'mixed'), taskInit(now, 'mixed'));
      await store.recordIssuance(credential(now, 'm2', 'mixed'), taskInit(now, 'mixed'));
      await redis.zrem(keys.taskCredentials('mixed'), 'm1');
      await redis.hset(keys.task('mixed'), 'k', 'm1', 'x', String(now + 300));
      expect(await store.countTaskCredentials('mixed')).toBe(2);
      await store.endTask('mixed', { status: 'completed', reason: 'task_done', at: now });
      expect(await store.fanOutTask('mixed', 1)).toEqual({ revoked: 1, done: false });
      expect(await store.fanOutTask('mixed', 1)).toEqual({ revoked: 1, done: true });

      // an inline credential past expiry + retention is trimmed like a zset member; the next one is inline
      await store.recordIssuance(
        credential(now, 't1', 'long', { expiresAt: now + 60 }),
        taskInit(now, 'long'),
      );
      fake.advance((60 + 600) * 1000);
      expect(await store.countTaskCredentials('long')).toBe(0);
      const later = fake.seconds();
      await store.recordIssuance(credential(later, 't2', 'long'), taskInit(later, 'long'));
      expect(await redis.hmget(keys.task('long'), 'k', 'x')).toEqual(['t2', String(later + 300)]);
      expect(await redis.exists(keys.taskCredentials('long'))).toBe(0);
      expect(await store.countTaskCredentials('long')).toBe(1);
      // a retried issuance of the recorded credential changes nothing
      await store.recordIssuance(credential(later, 't2', 'long'), taskInit(later, 'long'));
      expect(await redis.exists(keys.taskCredentials('long'))).toBe(0);
    });

    it('stays under 1 KB of Redis memory per credential in a busy task, indexes and queues included', async () => {
      const fake = new FakeClock();
      const now = fake.seconds();
      const usage = async (redis: Redis, prefix: string) => {
        let total = 0;
        let cursor = '0';
        do {
          const [next, batch] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
          for (const key of batch) total += Number(await redis.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'));
          cursor = next;
        } while (cursor !== '0');
        return total;
      };
      const jti = (i: number) => `${i.toString(16).padStart(8, '0')}5f0e4b1c9a7d2e3f4a5b6c7d8e9f`;
      const taskId = (i: number) => `github:acme/app:run:${9876543210 + i}:attempt:1`;

      // a busy task: the per-credential share of everything, global indexes and queues included
      const busy = await openStore(fake, 'memory-busy');
      for (let i = 0; i < 50; i++)
        await busy.store.recordIssuance(credential(now, jti(i), taskId(0)), taskInit(now, taskId(0)));
      const perCredential = (await usage(busy.redis, busy.prefix)) / 50;
      expect(perCredential).toBeLessThan(768);

      // one-credential tasks: the first counts every key; the next 200 measure what each costs once the global
      // indexes hold enough members to use their large encoding, as in production
      const single = await openStore(fake, 'memory-single');
      await single.store.recordIssuance(credential(now, jti(0), taskId(0)), taskInit(now, taskId(0)));
      const first = await usage(single.redis, single.prefix);
      for (let i = 1; i <= 200; i++)
        await single.store.recordIssuance(credential(now, jti(i), taskId(i)), taskInit(now, taskId(i)));
      const perTask = ((await usage(single.redis, single.prefix)) - first) / 200;
      // measured with Redis 7.0: ~598 B per credential (50 in a task), ~1.09 KB per one-credential task with its
      // record in the task hash (~1.23 KB before that, ~794 B and ~1.45 KB before the compact layout); the audit
      // record is not in this count
      expect(perTask).toBeLessThan(1150);
    });
  });

  describe('registration entries kept in process', () => {
    it('serves them from memory while the version holds, and re-reads at once after any write anywhere', async () => {
      const fake = new FakeClock();
      const { redis, prefix, store, keys } = await openStore(fake, 'entry-cache');
      const otherRedis = await testRedis();
      opened.push({ redis: otherRedis, prefix });
      const other = new RedisStore({ redis: otherRedis, prefix, clock: fake.clock });
      const a = await store.createEntry({ spiffeId: 'spiffe://example.org/a', selectors: ['k:v:a'] });
      expect(await store.listEntries()).toEqual([a]);
      const version = await redis.get(keys.entriesVersion);
      expect(version).toMatch(/^[0-9a-f-]{36}$/);
      // A change that bypasses the scripts is not seen while the version holds: the cache is in use.
      await redis.hdel(keys.entries, a.id);
      expect(await store.listEntries()).toEqual([a]);
      await redis.hset(keys.entries, a.id, JSON.stringify(a));
      // Writes through any store move the version; every replica re-reads on its next call.
      fake.advance(1_000); // entries list in creation order
      const b = await other.createEntry({ spiffeId: 'spiffe://example.org/b', selectors: ['k:v:b'] });
      expect(await store.listEntries()).toEqual([a, b]);
      const b2 = await other.updateEntry(b.id, { spiffeId: 'spiffe://example.org/b', selectors: ['k:v:c'] });
      expect(await store.listEntries()).toEqual([a, b2]);
      expect(await other.deleteEntry(a.id)).toBe(true);
      expect(await store.listEntries()).toEqual([b2]);
      // A delete of nothing changes nothing, version included.
      const before = await redis.get(keys.entriesVersion);
      expect(await other.deleteEntry(a.id)).toBe(false);
      expect(await redis.get(keys.entriesVersion)).toBe(before);
      // Callers get their own array of frozen entries: none can change what another reads.
      const listed = await store.listEntries();
      listed.pop();
      expect(() => {
        (listed as { spiffeId: string }[]).push({ spiffeId: 'x' });
      }).not.toThrow();
      const [entry] = await store.listEntries();
      expect(Object.isFrozen(entry)).toBe(true);
      expect(Object.isFrozen(entry!.selectors)).toBe(true);
      expect(await store.listEntries()).toEqual([b2]);
    });

    it('does not cache entries that have no version (written by hand or by an older broker)', async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'entry-noversion');
      const entry = {
        id: 'e1',
        spiffeId: 'spiffe://example.org/a',
        selectors: ['k:v:a'],
        createdAt: 1,
        updatedAt: 1,
      };
      await redis.hset(keys.entries, 'e1', JSON.stringify(entry));
      expect(await store.listEntries()).toEqual([entry]);
      await redis.hdel(keys.entries, 'e1');
      expect(await store.listEntries()).toEqual([]);
    });
  });

  describe('connection ownership', () => {
    it('close() stops the store but leaves the caller’s connection open', async () => {
      const fake = new FakeClock();
      const { redis, store } = await openStore(fake, 'close');
      await store.ping();
      await store.close();
      expect(await redis.ping()).toBe('PONG');
      expect(redis.status).toBe('ready');
    });

    it('two stores with different prefixes share one connection without seeing each other', async () => {
      const fake = new FakeClock();
      const redis = await testRedis();
      const [a, b] = [uniquePrefix('share-a'), uniquePrefix('share-b')];
      opened.push({ redis, prefix: a }, { redis, prefix: b });
      const storeA = new RedisStore({ redis, prefix: a, clock: fake.clock });
      const storeB = new RedisStore({ redis, prefix: b, clock: fake.clock });
      await storeA.putKeyMaterialIfAbsent('k', 'from-a');
      expect(await storeB.putKeyMaterialIfAbsent('k', 'from-b')).toBe('from-b');
      const now = fake.seconds();
      await storeA.recordIssuance(credential(now, 'c1', 't1'), taskInit(now, 't1'));
      expect(await storeB.getCredential('c1')).toBeNull();
    });
  });

  describe('global indexes and queues', () => {
    it('drops listing entries whose records Redis has dropped, lazily as a page meets them', async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'lazy-trim');
      const now = fake.seconds();
      for (const [id, task] of [
        ['c1', 't1'],
        ['c2', 't2'],
        ['c3', 't3'],
      ] as const)
        await store.recordIssuance(credential(now, id, task), taskInit(now, task));
      // Redis drops t2's keys (their TTL passed)
      await redis.del(keys.credential('t2', 'c2'), keys.task('t2'), keys.taskCredentials('t2'));
      const page = await store.listCredentials({}, { limit: 10 });
      expect(page.items.map((v) => v.credential.id)).toEqual(['c3', 'c1']);
      expect(await indexMembers(redis, keys.credentialListing)).toHaveLength(2);
      const tasks = await store.listTasks({}, { limit: 10 });
      expect(tasks.items.map((t) => t.id).sort()).toEqual(['t1', 't3']);
      expect(await indexMembers(redis, keys.taskListing)).toHaveLength(2);
    });

    it('trims stale listing entries, oldest first, when the feed is trimmed', async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'trim-index');
      const now = fake.seconds();
      for (let i = 0; i < 450; i++) {
        const c = credential(now, `c${i}`, `t${i}`, { issuedAt: now - 1000 + i });
        await store.recordIssuance(c, taskInit(now, `t${i}`));
      }
      // the 400 oldest are gone
      const gone = Array.from({ length: 400 }, (_, i) => [
        keys.credential(`t${i}`, `c${i}`),
        keys.task(`t${i}`),
      ]);
      await redis.del(...gone.flat());
      await store.trimRevocations(now);
      expect(await indexMembers(redis, keys.credentialListing)).toHaveLength(50);
      expect(await indexMembers(redis, keys.taskListing)).toHaveLength(50);
      // 450 of each went into buckets of at most 120 (listpack-encoded); emptied buckets left the directory
      expect(await redis.zcard(keys.credentialListing)).toBeLessThanOrEqual(2);
    });

    it('forgets queued tasks that Redis has dropped', async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'queues');
      const now = fake.seconds();
      for (const task of ['a', 'b', 'c', 'd'])
        await store.recordIssuance(
          credential(now, `${task}1`, task, { expiresAt: now + 10 }),
          taskInit(now, task, { deadline: now + 10 }),
        );
      await store.endTask('c', { status: 'completed', reason: 'task_done', at: now });
      await store.endTask('d', { status: 'completed', reason: 'task_done', at: now });
      await redis.del(keys.task('a'), keys.task('c'));
      expect(await store.pendingTasks(now + 10, 10)).toEqual({ ending: ['d'], overdue: ['b'] });
      expect(await redis.zrange(keys.tasksEnding, '0', '-1')).toEqual(['d']);
      // ending or fanning out a task that is gone also removes it from the queues
      await redis.del(keys.task('b'), keys.task('d'));
      expect(await store.endTask('b', { status: 'expired', reason: 'deadline', at: now })).toBeNull();
      expect(await store.fanOutTask('d', 10)).toEqual({ revoked: 0, done: true });
      expect(await store.pendingTasks(now + 10, 10)).toEqual({ ending: [], overdue: [] });
      expect(await redis.zcard(keys.tasksDue)).toBe(0);
      expect(await redis.zcard(keys.tasksEnding)).toBe(0);
    });
  });

  describe('blocking feed reads', () => {
    it('waits longer than the client’s own command timeout, on a connection of its own', async () => {
      const fake = new FakeClock();
      const redis = new Redis(await testRedisUrl(), { lazyConnect: true, commandTimeout: 200 });
      await redis.connect();
      const prefix = uniquePrefix('blocking');
      opened.push({ redis, prefix });
      const store = new RedisStore({ redis, prefix, clock: fake.clock });
      const started = Date.now();
      expect(await store.waitForRevocations('$', 600)).toEqual([]);
      expect(Date.now() - started).toBeGreaterThanOrEqual(550);
      await store.close();
      expect(await redis.ping()).toBe('PONG');
    });

    it('fails a wait in progress with ERR_STORE_UNAVAILABLE when the store is closed', async () => {
      const fake = new FakeClock();
      const { redis, store } = await openStore(fake, 'close-wait');
      const waiting = store.waitForRevocations('$', 5000);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await store.close();
      await expectUnavailable(waiting);
      expect(await redis.ping()).toBe('PONG');
    });
  });

  describe('stored data is not trusted', () => {
    it('refuses a malformed stored entry with server_error, not a half-typed object', async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'malformed');
      await redis.hset(keys.entries, 'e1', JSON.stringify({ id: 'e1', spiffeId: 42, selectors: 'x' }));
      await redis.hset(keys.entries, 'e2', '{not json');
      for (const read of [store.getEntry('e1'), store.getEntry('e2'), store.listEntries()]) {
        const error = await read.then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(WritError);
        expect((error as WritError).code).toBe('server_error');
      }
    });

    it('refuses a malformed join token and a malformed credential record', async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'malformed');
      await redis.set(
        keys.joinToken('h'),
        JSON.stringify({ spiffeId: 'spiffe://example.org/a', expiresAt: 'soon' }),
      );
      await expect(store.consumeJoinToken('h')).rejects.toMatchObject({ code: 'server_error' });
      await redis.hset(keys.credential('t1', 'c1'), { y: 'jwt', s: 'spiffe://example.org/a', e: 'never' });
      await expect(store.getCredential('c1', 't1')).rejects.toMatchObject({ code: 'server_error' });
    });

    it('refuses a malformed feed event and a malformed listing entry', async () => {
      const fake = new FakeClock();
      const { redis, store, keys } = await openStore(fake, 'malformed');
      await redis.xadd(keys.revocations, '*', 'k', 'c', 't', 't1', 'x', 'soon');
      await expect(store.readRevocations(undefined, 10)).rejects.toMatchObject({ code: 'server_error' });
      await redis.zadd(keys.legacyCredentialListing, 0, 'not a listing key');
      await expect(store.listCredentials({}, { limit: 10 })).rejects.toMatchObject({ code: 'server_error' });
    });
  });

  describe('when Redis is unreachable', () => {
    it('fails every method with ERR_STORE_UNAVAILABLE at once, with a fail-fast client', async () => {
      const port = await freePort(); // nothing listens there
      const redis = new Redis({
        port,
        host: '127.0.0.1',
        lazyConnect: true,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        retryStrategy: () => null,
      });
      redis.on('error', () => {});
      opened.push({ redis, prefix: undefined });
      const fake = new FakeClock();
      const store = new RedisStore({ redis, prefix: uniquePrefix('down'), clock: fake.clock });
      const started = Date.now();
      await expectUnavailable(
        store.recordIssuance(credential(fake.seconds(), 'c1', 't1'), taskInit(fake.seconds(), 't1')),
      );
      expect(Date.now() - started).toBeLessThan(2000);
      for (const [name, call] of everyMethod(store, fake.seconds())) {
        const error = await expectUnavailable(call());
        expect(error, name).toBeInstanceOf(WritError);
      }
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('fails within commandTimeoutMs even when the client queues commands while offline (default options)', async () => {
      const port = await freePort();
      const redis = new Redis({ port, host: '127.0.0.1', lazyConnect: true });
      redis.on('error', () => {});
      opened.push({ redis, prefix: undefined });
      const fake = new FakeClock();
      const store = new RedisStore({
        redis,
        prefix: uniquePrefix('queued'),
        clock: fake.clock,
        commandTimeoutMs: 300,
      });
      const started = Date.now();
      await expectUnavailable(
        store.recordIssuance(credential(fake.seconds(), 'c1', 't1'), taskInit(fake.seconds(), 't1')),
      );
      const elapsed = Date.now() - started;
      expect(elapsed).toBeGreaterThanOrEqual(250);
      expect(elapsed).toBeLessThan(1500);
    });

    it('fails while the server is down and recovers, with its data, once it is back (AOF, same port)', async () => {
      const server = await startRedisServer({ appendonly: true });
      servers.push(server);
      const redis = new Redis(server.url, {
        ...redisClientOptions,
        lazyConnect: true,
        retryStrategy: () => 50,
      });
      redis.on('error', () => {});
      opened.push({ redis, prefix: undefined });
      await redis.connect();
      const fake = new FakeClock();
      const store = new RedisStore({ redis, clock: fake.clock });
      const now = fake.seconds();
      expect((await store.recordIssuance(credential(now, 'c1', 't1'), taskInit(now, 't1'))).ok).toBe(true);

      server.kill();
      await expectUnavailable(store.getCredential('c1'));
      await expectUnavailable(store.recordIssuance(credential(now, 'c2', 't1'), taskInit(now, 't1')));

      const restarted = await startRedisServer({ appendonly: true, dir: server.dir, port: server.port });
      servers.push(restarted);
      const deadline = Date.now() + 10_000;
      while (redis.status !== 'ready' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      await store.ping();
      expect((await store.getCredential('c1'))?.credential.id).toBe('c1');
      expect(await store.getCredential('c2')).toBeNull();
    });
  });
});

describe('string reads of one turn share one MGET', () => {
  it("an issuance's entries version and rate-limit marks are one command, each caller getting its own values", async () => {
    const fake = new FakeClock();
    const { store, redis } = await openStore(fake, 'mget-batch');
    await store.markOnce('rl_block', 'a:static_key:203.0.113.7', fake.seconds() + 60);
    const sent: string[][] = [];
    const mget = redis.mget.bind(redis);
    const get = redis.get.bind(redis);
    redis.mget = ((...args: string[]) => {
      sent.push(['mget', ...args]);
      return mget(...args);
    }) as typeof redis.mget;
    redis.get = ((key: string) => {
      sent.push(['get', key]);
      return get(key);
    }) as typeof redis.get;
    try {
      const [entries, marks] = await Promise.all([
        store.listEntries(),
        store.heldMarks('rl_block', ['a:static_key:203.0.113.7', 'g:static_key']),
      ]);
      expect(entries).toEqual([]);
      expect(marks).toEqual([true, false]);
      expect(sent).toHaveLength(1);
      expect(sent[0]?.[0]).toBe('mget');
      expect(sent[0]).toHaveLength(4); // the version key and both marks
      // Reads of a later turn go in a command of their own.
      sent.length = 0;
      await store.heldMarks('rl_block', ['g:static_key']);
      await store.heldMarks('rl_block', ['a:static_key:203.0.113.7']);
      expect(sent.map((c) => c[0])).toEqual(['mget', 'mget']);
    } finally {
      redis.mget = mget;
      redis.get = get;
    }
  });

  it('fails every caller of a batch when the batch fails, and none of another', async () => {
    const fake = new FakeClock();
    const { store } = await openStore(fake, 'mget-batch-fail');
    await store.close();
    const outcomes = await Promise.allSettled([store.listEntries(), store.heldMarks('rl_block', ['x'])]);
    for (const o of outcomes) {
      expect(o.status).toBe('rejected');
      expect((o as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    }
  });
});
