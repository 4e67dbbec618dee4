// Runs the AuditLog contract against the Redis adapter, plus its data layout, trimming and failure behaviour.
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-log.ts';
import { auditKeys, RedisAuditLog } from '../../src/audit/redis.audit.ts';
import { WritError } from '../../src/errors.ts';
import { FakeClock } from '../helpers/clock.ts';
import { deleteKeys, testRedis, uniquePrefix } from '../helpers/redis.ts';
import { auditLogContract } from './audit-log.contract.ts';

const opened: { redis: Redis; prefix: string }[] = [];

afterEach(async () => {
  for (const { redis, prefix } of opened.splice(0)) {
    if (redis.status === 'ready') await deleteKeys(redis, prefix);
    redis.disconnect();
  }
});

async function open(name: string) {
  const redis = await testRedis();
  const prefix = uniquePrefix(name);
  opened.push({ redis, prefix });
  return { redis, prefix, keys: auditKeys(prefix) };
}

/** Rewrites the stream as an attacker with write access could: every entry re-added, one of them changed. */
async function rewrite(redis: Redis, stream: string, seq: number, change: (fields: string[]) => string[]) {
  const entries = await redis.xrange(stream, '-', '+');
  await redis.del(stream);
  for (const [id, fields] of entries) {
    await redis.xadd(stream, id, ...(id === `${seq}-0` ? change(fields) : fields));
  }
}

function setFields(fields: string[], change: Partial<AuditRecord>): string[] {
  const out = [...fields];
  for (const [name, value] of Object.entries(change)) {
    const encoded = typeof value === 'object' ? JSON.stringify(value) : String(value);
    const i = out.findIndex((f, j) => j % 2 === 0 && f === name);
    if (i >= 0) out[i + 1] = encoded;
    else out.push(name, encoded);
  }
  return out;
}

auditLogContract('redis', async (fake) => {
  const { redis, prefix, keys } = await open('audit-contract');
  const clients = [redis];
  return {
    log: new RedisAuditLog({ redis, prefix, clock: fake.clock }),
    // another replica: its own connection and instance over the same keys
    replica: async () => {
      const other = await testRedis();
      clients.push(other);
      return new RedisAuditLog({ redis: other, prefix, clock: fake.clock });
    },
    tamper: {
      alter: (seq, change) => rewrite(redis, keys.stream, seq, (fields) => setFields(fields, change)),
      remove: async (seq) => {
        await redis.xdel(keys.stream, `${seq}-0`);
      },
    },
    close: async () => {
      for (const client of clients.slice(1)) client.disconnect();
    },
  };
});

describe('RedisAuditLog', () => {
  it('keeps records in a stream with ids <seq>-0, readable fields, and the head in its own key', async () => {
    const { redis, prefix, keys } = await open('audit-layout');
    const log = new RedisAuditLog({ redis, prefix, clock: new FakeClock(1_700_000_000_000).clock });
    const record = await log.append({
      type: 'credential.revoked',
      actor: 'admin:alice',
      subject: 'jti-1',
      policies: ['p1'],
      details: { reason: 'compromised', count: 2 },
    });
    expect(keys).toEqual({ stream: `${prefix}audit`, head: `${prefix}audit:head` });
    expect(await redis.xrange(keys.stream, '-', '+')).toEqual([
      [
        '1-0',
        [
          'seq',
          '1',
          'time',
          '1700000000000',
          'type',
          'credential.revoked',
          'actor',
          'admin:alice',
          'subject',
          'jti-1',
          'policies',
          '["p1"]',
          'details',
          '{"reason":"compromised","count":2}',
          'prev',
          '0'.repeat(64),
          'hash',
          record.hash,
        ],
      ],
    ]);
    expect(await redis.hgetall(keys.head)).toEqual({ seq: '1', hash: record.hash });
    expect(await redis.pttl(keys.stream)).toBe(-1); // never expires
  });

  it('refuses to restart the chain when the head was deleted, and verify reports it', async () => {
    const { redis, prefix, keys } = await open('audit-head');
    const log = new RedisAuditLog({ redis, prefix });
    for (let i = 0; i < 3; i++) await log.append({ type: 'task.ended', actor: 'system:worker' });
    await redis.del(keys.head);
    const fresh = new RedisAuditLog({ redis, prefix });
    await expect(fresh.append({ type: 'task.ended', actor: 'system:worker' })).rejects.toMatchObject({
      code: 'server_error',
    });
    expect(await fresh.verify()).toMatchObject({ valid: false, brokenAt: 1 });
    expect(await redis.xlen(keys.stream)).toBe(3);
  });

  it('detects a record whose stored fields no longer parse, and an entry re-added with a foreign id', async () => {
    const { redis, prefix, keys } = await open('audit-malformed');
    const log = new RedisAuditLog({ redis, prefix });
    for (let i = 0; i < 4; i++)
      await log.append({ type: 'task.ended', actor: 'system:worker', details: { i } });
    await rewrite(redis, keys.stream, 3, (fields) => setFields(fields, { details: 'not json{' as never }));
    expect(await log.verify()).toEqual({
      valid: false,
      checked: 2,
      brokenAt: 3,
      reason: 'the record is malformed',
    });
    await expect(log.page({ limit: 10 })).rejects.toMatchObject({ code: 'server_error' });

    const entries = await redis.xrange(keys.stream, '-', '+');
    await redis.del(keys.stream);
    for (const [id, fields] of entries) await redis.xadd(keys.stream, id === '2-0' ? '2-5' : id, ...fields);
    expect(await log.verify({ to: 2 })).toMatchObject({ valid: false, brokenAt: 2 });
  });

  it('trims to maxLen when configured and verifies from the oldest record kept', async () => {
    const { redis, prefix, keys } = await open('audit-maxlen');
    const log = new RedisAuditLog({ redis, prefix, maxLen: 5 });
    for (let i = 0; i < 12; i++) await log.append({ type: 'task.ended', actor: 'system:worker' });
    expect(await redis.xlen(keys.stream)).toBe(5);
    expect(await log.verify()).toEqual({ valid: true, checked: 5 });
    // untrimmed, the same stream would be missing its first records
    expect(await new RedisAuditLog({ redis, prefix }).verify()).toMatchObject({ valid: false, brokenAt: 1 });
  });

  it('fails closed with ERR_STORE_UNAVAILABLE when Redis does not answer', async () => {
    const { redis, prefix } = await open('audit-down');
    const log = new RedisAuditLog({ redis, prefix, commandTimeoutMs: 200 });
    await log.append({ type: 'task.ended', actor: 'system:worker' });
    const down = await testRedis();
    down.disconnect();
    const offline = new RedisAuditLog({ redis: down, prefix, commandTimeoutMs: 200 });
    for (const call of [
      () => offline.append({ type: 'task.ended', actor: 'system:worker' }),
      () => offline.page({ limit: 1 }),
      () => offline.verify(),
    ]) {
      const error = await call().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(WritError);
      expect((error as WritError).code).toBe('ERR_STORE_UNAVAILABLE');
    }
  });

  it('retries on a moved head and gives up with ERR_STORE_UNAVAILABLE after maxAppendAttempts', async () => {
    const { redis, prefix } = await open('audit-race');
    const a = new RedisAuditLog({ redis, prefix, maxAppendAttempts: 1 });
    const b = new RedisAuditLog({ redis, prefix });
    await a.append({ type: 'task.ended', actor: 'system:worker' }); // a caches head 1
    await b.append({ type: 'task.ended', actor: 'system:worker' }); // the head moves to 2
    const error = await a.append({ type: 'task.ended', actor: 'system:worker' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(WritError);
    expect((error as WritError).code).toBe('ERR_STORE_UNAVAILABLE');
    // nothing was written by the lost attempt; the next append re-reads the head and lands
    expect((await a.append({ type: 'task.ended', actor: 'system:worker' })).seq).toBe(3);
    // with attempts to spare, a stale head costs one retry, not an error
    const c = new RedisAuditLog({ redis, prefix });
    await c.append({ type: 'task.ended', actor: 'system:worker' });
    await b.append({ type: 'task.ended', actor: 'system:worker' });
    expect((await c.append({ type: 'task.ended', actor: 'system:worker' })).seq).toBe(6);
    expect(await b.verify()).toEqual({ valid: true, checked: 6 });
  });
});
