// Attacks on the audit group commit (src/audit/redis.audit.ts + lua/append-batch-2.lua): replicas batching at
// once, a malformed record among other callers' records, Redis killed or paused mid-batch, and a connection that
// drops after a batch ran but before its reply came back (ioredis resends unanswered commands on reconnect).
// Real Redis, real ioredis with the broker's own connection options (createRedis from src/server.ts).
import * as net from 'node:net';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent, AuditRecord } from '../../src/audit/audit-log.ts';
import { auditKeys, decodeAuditEntry, RedisAuditLog } from '../../src/audit/redis.audit.ts';
import { createRedis } from '../../src/server.ts';
import { deleteKeys, testRedis, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { type RedisServer, restartRedisServer, startRedisServer } from '../helpers/redis-server.ts';
import { waitFor } from '../helpers/wait.ts';

const clients: Redis[] = [];
const servers: RedisServer[] = [];
const proxies: net.Server[] = [];
const cleanup: { redis: Redis; prefix: string }[] = [];

afterEach(async () => {
  for (const { redis, prefix } of cleanup.splice(0)) {
    if (redis.status === 'ready') await deleteKeys(redis, prefix);
  }
});
afterAll(async () => {
  for (const c of clients) c.disconnect();
  for (const p of proxies) p.close();
  for (const s of servers) await s.stop();
});

/** The broker's connection (fail-fast, auto-pipelined), connected. */
async function brokerConnection(url: string, commandTimeoutMs = 2000): Promise<Redis> {
  const redis = createRedis(url, commandTimeoutMs);
  redis.on('error', () => {});
  clients.push(redis);
  await redis.connect();
  return redis;
}

const event = (n: number, who = 'a'): AuditEvent => ({
  type: 'svid.issued',
  actor: `workload:spiffe://example.org/${who}`,
  subject: `credential:${who}-${n}`,
  decision: 'allow',
  details: { n, who },
});

/** The records stored, decoded from their stream entries (the hash of a compact record is computed). */
async function storedRecords(redis: Redis, prefix: string): Promise<Map<number, AuditRecord>> {
  const out = new Map<number, AuditRecord>();
  for (const [id, fields] of await redis.xrange(auditKeys(prefix).stream, '-', '+')) {
    const record = decodeAuditEntry(id, fields);
    if (record === null) throw new Error(`stream entry ${id} is malformed`);
    out.set(Number(id.split('-')[0]), record);
  }
  return out;
}

const field = (record: AuditRecord, name: 'hash' | 'subject') => record[name];

describe('audit group commit under attack', () => {
  it('two replicas batching at once extend one chain: no fork, no loss, no duplicate, call order kept', async () => {
    const url = await testRedisUrl();
    const prefix = uniquePrefix('audit-batch-replicas');
    const admin = await testRedis();
    clients.push(admin);
    cleanup.push({ redis: admin, prefix });
    const a = new RedisAuditLog({ redis: await brokerConnection(url), prefix });
    const b = new RedisAuditLog({ redis: await brokerConnection(url), prefix });
    const N = 400;
    const calls: Promise<AuditRecord>[] = [];
    for (let i = 0; i < N; i++) {
      calls.push(a.append(event(i, 'a')));
      calls.push(b.append(event(i, 'b')));
    }
    const records = await Promise.all(calls);
    const seqs = records.map((r) => r.seq);
    expect(new Set(seqs).size).toBe(2 * N);
    expect(Math.max(...seqs)).toBe(2 * N);
    // Each replica's records in its own call order.
    for (const who of [0, 1]) {
      const mine = records.filter((_, i) => i % 2 === who).map((r) => r.seq);
      expect(mine).toEqual([...mine].sort((x, y) => x - y));
    }
    // What each caller was told is exactly what is stored at that seq.
    const stored = await storedRecords(admin, prefix);
    expect(stored.size).toBe(2 * N);
    for (const r of records) expect(field(stored.get(r.seq)!, 'hash')).toBe(r.hash);
    const subjects = [...stored.values()].map((f) => field(f, 'subject'));
    expect(new Set(subjects).size).toBe(2 * N);
    expect(await a.verify()).toEqual({ valid: true, checked: 2 * N });
    expect(await b.head()).toEqual({ seq: 2 * N, hash: records.find((r) => r.seq === 2 * N)!.hash });
  });

  it('a malformed or oversized event fails only its own caller, never the batch it would have joined', async () => {
    const url = await testRedisUrl();
    const prefix = uniquePrefix('audit-batch-bad');
    const admin = await testRedis();
    clients.push(admin);
    cleanup.push({ redis: admin, prefix });
    const log = new RedisAuditLog({ redis: await brokerConnection(url), prefix });
    const good = Array.from({ length: 50 }, (_, i) => log.append(event(i)));
    const bad = [
      log.append({ ...event(100), details: { huge: 'x'.repeat(100_000) } }),
      log.append({ ...event(101), actor: 'no kind' }),
      log.append({ ...event(102), details: { tok: 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.sig' } }),
      log.append({ ...event(103), details: { bad: Number.NaN } }),
      log.append({ ...event(104), subject: '\ud800' }),
    ];
    const more = Array.from({ length: 50 }, (_, i) => log.append(event(200 + i)));
    for (const p of bad) await expect(p).rejects.toThrow(TypeError);
    const ok = await Promise.all([...good, ...more]);
    expect(ok.map((r) => r.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(await log.verify()).toEqual({ valid: true, checked: 100 });
  });

  it('an event mutated by its caller after append() does not change what is written or hashed', async () => {
    const url = await testRedisUrl();
    const prefix = uniquePrefix('audit-batch-mutate');
    const admin = await testRedis();
    clients.push(admin);
    cleanup.push({ redis: admin, prefix });
    const log = new RedisAuditLog({ redis: await brokerConnection(url), prefix });
    const first = log.append(event(0)); // in flight: the next ones wait for the next batch
    const e = event(1);
    const details = e.details as Record<string, unknown>;
    const pending = log.append(e);
    details.who = 'mallory';
    (e as { subject: string }).subject = 'credential:forged';
    const [, r] = await Promise.all([first, pending]);
    expect(r.subject).toBe('credential:a-1');
    expect(r.details).toEqual({ n: 1, who: 'a' });
    expect(await log.verify()).toEqual({ valid: true, checked: 2 });
  });
});

describe('audit group commit with Redis faults (private redis-server)', () => {
  it('Redis SIGKILLed mid-batch: every append that resolved is in the trail after an AOF restart', async () => {
    const server = await startRedisServer({ appendonly: true });
    servers.push(server);
    const prefix = uniquePrefix('audit-kill');
    const log = new RedisAuditLog({ redis: await brokerConnection(server.url, 1000), prefix });
    const resolved: AuditRecord[] = [];
    let rejected = 0;
    const calls: Promise<void>[] = [];
    let killed = false;
    for (let i = 0; i < 3000; i++) {
      calls.push(
        log.append(event(i)).then(
          (r) => {
            resolved.push(r);
            if (resolved.length === 300 && !killed) {
              killed = true;
              server.kill();
            }
          },
          () => {
            rejected++;
          },
        ),
      );
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    await Promise.all(calls);
    expect(killed).toBe(true);
    expect(rejected).toBeGreaterThan(0);
    const restarted = await restartRedisServer({ port: server.port, dir: server.dir, appendonly: true });
    servers.push(restarted);
    const admin = await testRedisAt(restarted.url);
    const stored = await storedRecords(admin, prefix);
    for (const r of resolved) {
      expect(stored.get(r.seq), `record ${r.seq} was acknowledged`).toBeDefined();
      expect(field(stored.get(r.seq)!, 'hash')).toBe(r.hash);
    }
    const checker = new RedisAuditLog({ redis: admin, prefix });
    expect((await checker.verify()).valid).toBe(true);
    // The trail continues on the surviving chain.
    const after = await waitFor(
      async () =>
        log.append(event(9999)).then(
          (r) => r,
          () => undefined,
        ),
      { timeoutMs: 10_000, intervalMs: 100, what: 'an append after the restart' },
    );
    expect(after.seq).toBe(stored.size + 1);
    expect((await checker.verify()).valid).toBe(true);
  });

  it('a batch whose reply outlives commandTimeout fails its callers; the chain stays one chain', async () => {
    const server = await startRedisServer();
    servers.push(server);
    const prefix = uniquePrefix('audit-pause');
    const admin = await testRedisAt(server.url);
    const log = new RedisAuditLog({
      redis: await brokerConnection(server.url, 5000),
      prefix,
      commandTimeoutMs: 300,
    });
    await log.append(event(0));
    await admin.client('PAUSE', 1500, 'WRITE');
    const during = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => log.append(event(i + 1))));
    expect(during.every((s) => s.status === 'rejected')).toBe(true);
    await new Promise((r) => setTimeout(r, 1600));
    const next = await log.append(event(100));
    const stored = await storedRecords(admin, prefix);
    // Timed-out batches may have landed (documented: an unanswered append may still land) but nothing forks.
    expect(next.seq).toBe(stored.size);
    expect((await log.verify()).valid).toBe(true);
  });

  it('auto-pipelined commands made while the connection is down fail at once and never land later', async () => {
    const server = await startRedisServer();
    servers.push(server);
    const prefix = uniquePrefix('offline');
    const redis = await brokerConnection(server.url, 1000);
    const log = new RedisAuditLog({ redis, prefix });
    await log.append(event(0));
    server.kill();
    await waitFor(() => redis.status !== 'ready', { timeoutMs: 5000, what: 'the connection to drop' });
    const attempts = await Promise.allSettled([
      redis.set(`${prefix}offline-write`, '1'),
      log.append(event(1)),
      log.append(event(2)),
    ]);
    expect(attempts.map((a) => a.status)).toEqual(['rejected', 'rejected', 'rejected']);
    const restarted = await restartRedisServer({ port: server.port });
    servers.push(restarted);
    await waitFor(() => redis.status === 'ready', { timeoutMs: 10_000, what: 'the connection to come back' });
    await new Promise((r) => setTimeout(r, 300));
    expect(await redis.get(`${prefix}offline-write`)).toBeNull();
    expect(await redis.xlen(auditKeys(prefix).stream)).toBe(0);
  });

  it('SECURITY: a connection dropped after a batch ran but before its reply must not write the batch twice', async () => {
    const server = await startRedisServer();
    servers.push(server);
    const prefix = uniquePrefix('audit-resend');
    const proxy = await dropReplyProxy(server.port, (chunk) => {
      const text = chunk.toString('latin1').toLowerCase();
      return text.includes('evalsha') && text.includes(`${prefix}audit:head`.toLowerCase());
    });
    const log = new RedisAuditLog({ redis: await brokerConnection(proxy.url, 2000), prefix });
    await log.append(event(0, 'warm')); // head cached: the next batch is a single EVALSHA
    proxy.arm();
    const results = await Promise.allSettled([log.append(event(1)), log.append(event(2))]);
    expect(proxy.fired()).toBe(true);
    const admin = await testRedisAt(server.url);
    const stored = await storedRecords(admin, prefix);
    const subjects = [...stored.values()].map((f) => field(f, 'subject'));
    // Whatever the callers were told, each event is in the trail at most once.
    expect(subjects.filter((s) => s === 'credential:a-1').length).toBeLessThanOrEqual(1);
    expect(subjects.filter((s) => s === 'credential:a-2').length).toBeLessThanOrEqual(1);
    for (const r of results) {
      if (r.status === 'fulfilled') {
        expect(field(stored.get(r.value.seq)!, 'hash')).toBe(r.value.hash);
      }
    }
  });
});

async function testRedisAt(url: string): Promise<Redis> {
  const { Redis } = await import('ioredis');
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  clients.push(redis);
  await redis.connect();
  return redis;
}

/**
 * A TCP proxy in front of Redis that, once armed, lets the first client chunk matching `trigger` reach Redis and
 * then cuts that connection as soon as Redis answers, without passing the answer on: a network failure between
 * a command's execution and its reply. Later connections (the client's reconnect) pass through untouched.
 */
async function dropReplyProxy(
  port: number,
  trigger: (chunk: Buffer) => boolean,
): Promise<{ url: string; arm(): void; fired(): boolean }> {
  let armed = false;
  let fired = false;
  const server = net.createServer((client) => {
    const upstream = net.connect({ port, host: '127.0.0.1' });
    let cutOnReply = false;
    client.on('data', (chunk: Buffer) => {
      if (armed && !fired && trigger(chunk)) {
        fired = true;
        cutOnReply = true;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (cutOnReply) {
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close);
    upstream.on('error', close);
    client.on('close', close);
    upstream.on('close', close);
  });
  proxies.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address() as net.AddressInfo;
  return {
    url: `redis://127.0.0.1:${address.port}`,
    arm: () => {
      armed = true;
    },
    fired: () => fired,
  };
}
