// Reads a bucketed listing index of the Redis store (src/store/redis/lua/bucket-index.lua) as one sorted list.
import type { Redis } from 'ioredis';

/** Every member of the index, in order (its buckets, `<directory>:<name>`, read one after the other). */
export async function indexMembers(redis: Redis, directory: string): Promise<string[]> {
  const members: string[] = [];
  for (const name of await redis.zrange(directory, '0', '-1'))
    members.push(...(await redis.zrange(`${directory}:${name}`, '0', '-1')));
  return members;
}

/** How many members a listing holds: its buckets, and the single zset of brokers before them. */
export async function listingSize(redis: Redis, directory: string, legacy: string): Promise<number> {
  return (await indexMembers(redis, directory)).length + (await redis.zcard(legacy));
}
