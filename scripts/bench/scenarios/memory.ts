// Scenario 6: Redis memory per tracked credential, INFO memory used_memory before and after issuing N through the
// API. Variant "own task": every credential opens its own generated task (task hash, its zsets, listing and
// deadline index entries and its BullMQ deadline job all count). Variant "shared": tasks of 100 credentials.
import { Redis } from 'ioredis';
import type { BenchContext } from '../lib/context.ts';
import { issueMany } from '../lib/issue.ts';
import { sleep } from '../lib/procs.ts';
import { median, round } from '../lib/stats.ts';

export interface MemoryVariant {
  credentials: number;
  failed: number;
  deltaBytes: number;
  bytesPerCredential: number;
  issuedPerSec: number;
}

export interface KeyFamily {
  family: string;
  type: string;
  keys: number;
  /** MEMORY USAGE, averaged over up to 200 sampled keys of the family. */
  avgBytes: number;
  /**
   * For a family of one big key (a global index): its members, and bytes per member. For the credential id index
   * buckets: their fields (estimated from the sample), and bytes per field.
   */
  members?: number;
  bytesPerMember?: number;
}

export interface MemoryResult {
  ownTask: MemoryVariant;
  sharedTask: MemoryVariant;
  /** What the keyspace holds after the run, by key family (every scenario's records included). */
  families: KeyFamily[];
  /** Both variants issue through the API; this says so. */
  method: string;
}

async function usedMemory(redis: Redis): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 3; i++) {
    const info = await redis.info('memory');
    const m = /^used_memory:(\d+)/m.exec(info);
    if (!m) throw new Error('INFO memory has no used_memory');
    samples.push(Number(m[1]));
    await sleep(150);
  }
  return median(samples);
}

async function variant(
  ctx: BenchContext,
  redis: Redis,
  count: number,
  taskOf: ((i: number) => string) | undefined,
): Promise<MemoryVariant> {
  await sleep(ctx.quick ? 300 : 1000);
  const before = await usedMemory(redis);
  const r = await issueMany(ctx, count, taskOf);
  if (r.ok < count * 0.9) {
    throw new Error(`only ${r.ok} of ${count} issuances succeeded (${r.failed} failed)`);
  }
  await sleep(ctx.quick ? 600 : 1500);
  const after = await usedMemory(redis);
  const delta = after - before;
  return {
    credentials: r.ok,
    failed: r.failed,
    deltaBytes: delta,
    bytesPerCredential: round(r.ok > 0 ? delta / r.ok : Number.NaN, 0),
    issuedPerSec: round(r.seconds > 0 ? r.ok / r.seconds : 0, 0),
  };
}

/**
 * `writ:{t:task-1}:cred:<uuid>` -> `writ:{t:*}:cred:*`: ids and tokens become `*`, and so do the buckets of the
 * credential id index (`writ:ci:<3 hex>` -> `writ:ci:*`) and of the listing indexes (`writ:ix:creds:<first member>`
 * -> `writ:ix:creds:*`).
 */
export function familyOf(key: string): string {
  return key
    .replace(/\{t:[^}]*\}/, '{t:*}')
    .replace(/:ci:[0-9a-f]{3}$/, ':ci:*')
    .replace(/:ix:([a-z]+):\d{10}[:|].*$/, ':ix:$1:*')
    .split(':')
    .map((seg) => seg.replace(/[A-Za-z0-9_=-]{20,}$/, '*').replace(/^\d+$/, '*'))
    .join(':');
}

async function keyFamilies(redis: Redis): Promise<KeyFamily[]> {
  const byFamily = new Map<string, string[]>();
  const counts = new Map<string, number>();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', 2000);
    cursor = next;
    for (const key of keys) {
      const f = familyOf(key);
      counts.set(f, (counts.get(f) ?? 0) + 1);
      const sample = byFamily.get(f) ?? [];
      if (sample.length < 200) sample.push(key);
      byFamily.set(f, sample);
    }
  } while (cursor !== '0');
  const out: KeyFamily[] = [];
  for (const [family, sample] of byFamily) {
    const pipe = redis.pipeline();
    for (const key of sample) pipe.call('MEMORY', 'USAGE', key, 'SAMPLES', '0');
    pipe.type(sample[0]!);
    const replies = (await pipe.exec()) ?? [];
    const sizes = replies.slice(0, sample.length).map(([, v]) => Number(v ?? 0));
    const type = String(replies[sample.length]?.[1] ?? '?');
    const entry: KeyFamily = {
      family,
      type,
      keys: counts.get(family) ?? 0,
      avgBytes: Math.round(sizes.reduce((a, b) => a + b, 0) / Math.max(1, sizes.length)),
    };
    if (entry.keys > 1 && (family.endsWith(':ci:*') || /:ix:[a-z]+:\*$/.test(family))) {
      // the buckets of the credential id index and of the listing indexes: members per bucket (sampled) and bytes
      // per member
      const lens = await Promise.all(
        sample.map((key) => (type === 'zset' ? redis.zcard(key) : redis.hlen(key))),
      );
      const avg = lens.reduce((a, b) => a + b, 0) / Math.max(1, lens.length);
      entry.members = Math.round(avg * entry.keys);
      entry.bytesPerMember = avg > 0 ? Math.round(entry.avgBytes / avg) : 0;
    }
    if (entry.keys === 1 && (type === 'zset' || type === 'hash' || type === 'stream')) {
      const key = sample[0]!;
      const members =
        type === 'zset'
          ? await redis.zcard(key)
          : type === 'hash'
            ? await redis.hlen(key)
            : await redis.xlen(key);
      entry.members = members;
      entry.bytesPerMember = members > 0 ? Math.round(entry.avgBytes / members) : 0;
    }
    out.push(entry);
  }
  return out.sort((a, b) => b.avgBytes * b.keys - a.avgBytes * a.keys);
}

export async function runMemory(ctx: BenchContext): Promise<MemoryResult> {
  const n = ctx.quick ? 20_000 : 100_000;
  const redis = new Redis(ctx.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  try {
    // Join tokens (when that is the workload) are GETDEL'd by the issuance they serve, so they leave no trace in
    // the delta but the few spare ones (about 2 per connection).
    const ownTask = await variant(ctx, redis, n, undefined);
    ctx.log(
      `  memory, own task each: ${ownTask.bytesPerCredential} B/credential over ${ownTask.credentials}`,
    );
    const stamp = Date.now().toString(36);
    const sharedTask = await variant(
      ctx,
      redis,
      ctx.quick ? 3_000 : 30_000,
      (i) => `bench-mem-${stamp}-${Math.floor(i / 100)}`,
    );
    ctx.log(
      `  memory, tasks of 100: ${sharedTask.bytesPerCredential} B/credential over ${sharedTask.credentials}`,
    );
    const families = await keyFamilies(redis);
    return {
      ownTask,
      sharedTask,
      families,
      method: `issued through POST /v1/svid/jwt (${ctx.workload.attestor}), 64 connections`,
    };
  } finally {
    redis.disconnect();
  }
}
