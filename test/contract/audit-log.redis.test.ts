// Runs the AuditLog contract against the Redis adapter, plus its data layout, trimming and failure behaviour.
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../src/audit/audit-log.ts';
import { auditEntryFields, auditKeys, decodeAuditEntry, RedisAuditLog } from '../../src/audit/redis.audit.ts';
import { WritError } from '../../src/errors.ts';
import { FakeClock } from '../helpers/clock.ts';
import { closedAfterEach, testRedis, uniquePrefix } from '../helpers/redis.ts';
import { auditLogContract } from './audit-log.contract.ts';

const opened = closedAfterEach();

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

/**
 * Changes the record a compact entry holds and writes it back in the compact encoding, as an attacker who
 * knows the format would (a stored hash does not exist there: `hash` in the change is ignored).
 */
function alterCompact(id: string, fields: string[], change: Partial<AuditRecord>): string[] {
  const record = decodeAuditEntry(id, fields);
  if (record === null) throw new Error('not a readable record');
  return auditEntryFields({ ...record, ...change });
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
      alter: (seq, change) =>
        rewrite(redis, keys.stream, seq, (fields) => alterCompact(`${seq}-0`, fields, change)),
      remove: async (seq) => {
        await redis.xdel(keys.stream, `${seq}-0`);
      },
    },
    derivedHash: true,
    close: async () => {
      for (const client of clients.slice(1)) client.disconnect();
    },
  };
});

describe('RedisAuditLog', () => {
  it('keeps records in a stream with ids <seq>-0, compact readable fields, and the head in its own key', async () => {
    const { redis, prefix, keys } = await open('audit-layout');
    const log = new RedisAuditLog({ redis, prefix, clock: new FakeClock(1_700_000_000_000).clock });
    const record = await log.append({
      type: 'credential.revoked',
      actor: 'admin:alice',
      subject: 'jti-1',
      policies: ['p1'],
      details: {
        reason: 'compromised',
        count: 2,
        legacy: false,
        audience: ['a', 'b'],
        note: null,
        empty: '',
      },
    });
    expect(keys).toEqual({ stream: `${prefix}audit`, head: `${prefix}audit:head` });
    // No seq (the entry id), no hash (computed from the record), prev as base64url, details one field per key.
    expect(await redis.xrange(keys.stream, '-', '+')).toEqual([
      [
        '1-0',
        [
          't',
          '1700000000000',
          'y',
          'credential.revoked',
          'a',
          'admin:alice',
          's',
          'jti-1',
          'p',
          '["p1"]',
          'x.reason',
          'compromised',
          'n.count',
          '2',
          'j.legacy',
          'false',
          'j.audience',
          '["a","b"]',
          'j.note',
          'null',
          'x.empty',
          '',
          'l',
          'A'.repeat(43),
        ],
      ],
    ]);
    expect((await log.page({ limit: 1 })).records).toEqual([record]);
    // the head, and the random id of the batch that wrote it (a resent call is recognised by it)
    expect(await redis.hgetall(keys.head)).toEqual({
      seq: '1',
      hash: record.hash,
      batch: expect.stringMatching(/^[0-9a-f-]{36}$/),
    });
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
    await rewrite(redis, keys.stream, 3, (fields) =>
      fields.map((f, j) => (fields[j - 1] === 'n.i' ? 'x' : f)),
    );
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

  describe('group commit', () => {
    it('writes concurrent appends in few script calls, in call order, on one valid chain with a replica', async () => {
      const { redis, prefix, keys } = await open('audit-batch');
      const log = new RedisAuditLog({ redis, prefix });
      const other = await testRedis();
      opened.push({ redis: other, prefix });
      const replica = new RedisAuditLog({ redis: other, prefix });
      const scripts = redis as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
      const original = scripts.writAuditAppendBatch!;
      let calls = 0;
      scripts.writAuditAppendBatch = (...args: unknown[]) => {
        calls++;
        return original.apply(redis, args);
      };
      const mine = Array.from({ length: 120 }, (_, i) =>
        log.append({ type: 'svid.issued', actor: 'system:test', details: { i } }),
      );
      const theirs = Array.from({ length: 40 }, (_, i) =>
        replica.append({ type: 'svid.issued', actor: 'system:replica', details: { i } }),
      );
      const records = await Promise.all(mine);
      await Promise.all(theirs);
      // The first append leaves alone; the 119 made while it was in flight share the next call (a replica's
      // moves of the head cost retries, never a record).
      expect(calls).toBeLessThan(10);
      for (let i = 1; i < records.length; i++) expect(records[i]!.seq).toBeGreaterThan(records[i - 1]!.seq);
      const page = await log.page({ limit: 1000 });
      expect(page.records).toHaveLength(160);
      const stored = page.records.filter((r) => r.actor === 'system:test').map((r) => r.details?.i);
      expect(stored).toEqual(Array.from({ length: 120 }, (_, i) => i));
      expect(page.records.map((r) => r.seq)).toEqual(Array.from({ length: 160 }, (_, i) => i + 1));
      expect(await log.verify()).toEqual({ valid: true, checked: 160 });
      expect(await redis.xlen(keys.stream)).toBe(160);
    });

    it('fails every caller of a batch that could not be written, and writes none of it', async () => {
      const { redis, prefix, keys } = await open('audit-batch-fail');
      const log = new RedisAuditLog({ redis, prefix });
      await log.append({ type: 'task.ended', actor: 'system:worker' });
      await redis.del(keys.head); // the head is gone while the stream holds a record: appends must refuse
      const fresh = new RedisAuditLog({ redis, prefix });
      const outcomes = await Promise.allSettled(
        Array.from({ length: 30 }, () => fresh.append({ type: 'task.ended', actor: 'system:worker' })),
      );
      expect(outcomes.every((o) => o.status === 'rejected')).toBe(true);
      for (const o of outcomes) {
        expect((o as PromiseRejectedResult).reason).toBeInstanceOf(WritError);
        expect(((o as PromiseRejectedResult).reason as WritError).code).toBe('server_error');
      }
      expect(await redis.xlen(keys.stream)).toBe(1);
    });

    it('fails every pending append with ERR_STORE_UNAVAILABLE when Redis does not answer', async () => {
      const { prefix } = await open('audit-batch-down');
      const down = await testRedis();
      down.disconnect();
      const offline = new RedisAuditLog({ redis: down, prefix, commandTimeoutMs: 200 });
      const outcomes = await Promise.allSettled(
        Array.from({ length: 10 }, () => offline.append({ type: 'task.ended', actor: 'system:worker' })),
      );
      for (const o of outcomes) {
        expect(o.status).toBe('rejected');
        expect(((o as PromiseRejectedResult).reason as WritError).code).toBe('ERR_STORE_UNAVAILABLE');
      }
    });
  });
});
