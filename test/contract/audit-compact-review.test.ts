// A second attacker's pass over the compact audit format (src/audit/redis.audit.ts, verifyChain): every range
// against every single alteration, type confusion in the typed detail fields, downgrades to the first format,
// the tail and the head, and the standalone verify script of docs/admin-security.md run for real against the same
// tampered trails: it must agree with the broker on every change of content. Real Redis.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  type AuditRecord,
  checkEvent,
  recordHash,
  sealRecord,
} from '../../src/audit/audit-log.ts';
import { auditEntryFields, auditKeys, decodeAuditEntry, RedisAuditLog } from '../../src/audit/redis.audit.ts';
import { FakeClock } from '../helpers/clock.ts';
import { closedAfterEach, testRedis, testRedisUrl, uniquePrefix } from '../helpers/redis.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const run = promisify(execFile);
const opened = closedAfterEach();

async function open(name: string) {
  const redis = await testRedis();
  const prefix = uniquePrefix(name);
  opened.push({ redis, prefix });
  const log = new RedisAuditLog({ redis, prefix, clock: new FakeClock(1_700_000_000_000).clock });
  return { redis, prefix, keys: auditKeys(prefix), log };
}

const event = (i: number): AuditEvent => ({
  type: 'credential.revoked',
  actor: 'admin:alice',
  subject: `credential:c-${i}`,
  details: { task: `task-${i}`, count: i, urgent: i % 2 === 0, note: null, tags: ['a', `b${i}`] },
});

async function appendMany(log: RedisAuditLog, n: number): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for (let i = 1; i <= n; i++) out.push(await log.append(event(i)));
  return out;
}

/** The first format, as brokers before the compact one wrote it. */
function firstFormat(r: AuditRecord): string[] {
  const f = ['seq', String(r.seq), 'time', String(r.time), 'type', r.type, 'actor', r.actor];
  if (r.subject !== undefined) f.push('subject', r.subject);
  if (r.decision !== undefined) f.push('decision', r.decision);
  if (r.policies !== undefined) f.push('policies', JSON.stringify(r.policies));
  if (r.details !== undefined) f.push('details', JSON.stringify(r.details));
  f.push('prev', r.prev, 'hash', r.hash);
  return f;
}

const entry = async (redis: Redis, stream: string, seq: number) =>
  (await redis.xrange(stream, `${seq}-0`, `${seq}-0`))[0]![1];

/** Replaces the entry at `seq` (XDEL, then XADD with its id: Redis allows ids below the top one only so). */
async function put(redis: Redis, stream: string, seq: number, fields: string[]) {
  const entries = await redis.xrange(stream, '-', '+');
  await redis.del(stream);
  for (const [id, f] of entries) {
    const s = Number(id.split('-')[0]);
    await redis.xadd(stream, id, ...(s === seq ? fields : f));
  }
}

const replace = (fields: string[], name: string, value: string) =>
  fields.map((f, j) => (j % 2 === 1 && fields[j - 1] === name ? value : f));

/** The verify script of docs/admin-security.md, as an operator runs it: its verdict line. */
async function docsScript(prefix: string): Promise<string> {
  const doc = await readFile(resolve(ROOT, 'docs/admin-security.md'), 'utf8');
  const match = /```js\n(\/\/ verify-audit\.mjs[\s\S]*?)```/.exec(doc);
  expect(match, 'the verify script in docs/admin-security.md').not.toBeNull();
  // `node -e`: bare imports resolve from the working directory (the repo's node_modules); argv[1] is a filler
  const { stdout } = await run(
    process.execPath,
    ['--input-type=module', '-e', match![1]!, '--', 'x', await testRedisUrl(), prefix],
    { cwd: ROOT },
  ).catch((e: { stdout: string }) => ({ stdout: e.stdout }));
  return stdout.trim();
}

describe('compact audit records, second review', () => {
  it('every range against every single alteration: a range fails exactly when it covers the change', async () => {
    const { redis, keys, log } = await open('audit-review-ranges');
    const N = 7;
    await appendMany(log, N);
    const ranges: [number, number][] = [];
    for (let a = 1; a <= N; a++) for (let b = a; b <= N; b++) ranges.push([a, b]);
    for (let k = 1; k <= N; k++) {
      const original = await entry(redis, keys.stream, k);
      // (1) the content of record k: the anchor of a range after it, or any record in it, reveals it
      await put(redis, keys.stream, k, replace(original, 'x.task', 'task-innocent'));
      for (const [a, b] of ranges) {
        const result = await log.verify({ from: a, to: b });
        expect(result.valid, `content of ${k}, range ${a}..${b}`).toBe(!(a - 1 <= k && k <= b));
        if (!result.valid) expect(result.brokenAt).toBe(Math.max(k, a));
      }
      // (2) the link of record k (its prev): checked from inside the range, or as the link after its last
      const forged = Buffer.alloc(32, k).toString('base64url');
      await put(redis, keys.stream, k, replace(original, 'l', forged));
      for (const [a, b] of ranges) {
        const result = await log.verify({ from: a, to: b });
        // (the prev is content too: an anchor whose prev changed no longer hashes to the range's first link)
        expect(result.valid, `link of ${k}, range ${a}..${b}`).toBe(!(a - 1 <= k && k <= b + 1));
      }
      await put(redis, keys.stream, k, original);
    }
    expect(await log.verify()).toEqual({ valid: true, checked: N });
  });

  it('a detail value changed in type only (number, numeric string, boolean, null, array) is a break', async () => {
    const { redis, keys, log, prefix } = await open('audit-review-types');
    await appendMany(log, 3);
    const original = await entry(redis, keys.stream, 2);
    const swaps: [string, string[]][] = [
      [
        'a number as a string',
        replace(original, 'n.count', '2').map((f) => (f === 'n.count' ? 'x.count' : f)),
      ],
      ['a string as a number', [...original.slice(0, -2), 'n.task2', '2', ...original.slice(-2)]],
      ['a boolean as a string', original.map((f) => (f === 'j.urgent' ? 'x.urgent' : f))],
      ['null as a string', original.map((f) => (f === 'j.note' ? 'x.note' : f))],
      ['an array as its JSON text', original.map((f) => (f === 'j.tags' ? 'x.tags' : f))],
      ['a boolean flipped', replace(original, 'j.urgent', 'false')],
      ['null as false', replace(original, 'j.note', 'false')],
      ['an array reordered', replace(original, 'j.tags', '["b2","a"]')],
      ['a detail dropped', original.filter((_, j) => original[j - (j % 2)] !== 'j.note')],
      ['an empty string added', [...original.slice(0, -2), 'x.extra', '', ...original.slice(-2)]],
      ['a key renamed across the separator', original.map((f) => (f === 'x.task' ? 'x.tas.k' : f))],
      ['NFC text as NFD', replace(original, 'x.task', 'tâsk-2'.normalize('NFD'))],
      ['a very long value', replace(original, 'x.task', 'a'.repeat(100_000))],
      [
        'details emptied',
        [
          ...original.filter((_, j) => !/^[xnj]\./.test(original[j - (j % 2)]!)).slice(0, -2),
          'e',
          '{}',
          ...original.slice(-2),
        ],
      ],
    ];
    for (const [what, fields] of swaps) {
      const decoded = decodeAuditEntry('2-0', fields);
      expect(decoded, what).not.toBeNull(); // well-formed: only the chain can tell
      await put(redis, keys.stream, 2, fields);
      expect(await log.verify(), what).toMatchObject({ valid: false, brokenAt: 2 });
      expect(await docsScript(prefix), what).toBe('broken at 3');
    }
    // JSON the record cannot hold is malformed, not reinterpreted
    for (const [name, value] of [
      ['j.nested', '{"a":1}'],
      ['j.numbers', '[1,2]'],
      ['n.huge', '1e400'],
      ['n.hex', '0x10'],
      ['j.text', '"text"'],
    ]) {
      expect(
        decodeAuditEntry('2-0', [...original.slice(0, -2), name!, value!, ...original.slice(-2)]),
        name,
      ).toBeNull();
    }
    await put(redis, keys.stream, 2, original);
    expect(await log.verify()).toEqual({ valid: true, checked: 3 });
  });

  it('a downgrade to the first format with a self-consistent hash dodges nothing, at the head or before', async () => {
    const { redis, keys, log } = await open('audit-review-downgrade');
    const records = await appendMany(log, 4);
    const doctor = (r: AuditRecord): AuditRecord => {
      const changed = { ...r, subject: 'credential:nothing-to-see' };
      return { ...changed, hash: recordHash(changed) };
    };
    // the newest record, altered and stored in the first format with its new hash: the head still names the old
    await put(redis, keys.stream, 4, firstFormat(doctor(records[3]!)));
    expect(await log.verify()).toMatchObject({ valid: false, brokenAt: 4 });
    await put(redis, keys.stream, 4, auditEntryFields(records[3]!));
    // a middle record likewise: the next record's prev still names the old hash
    await put(redis, keys.stream, 2, firstFormat(doctor(records[1]!)));
    expect(await log.verify()).toMatchObject({ valid: false, brokenAt: 3 });
    // an old-format record upgraded to compact (its stored hash gone), content intact: not a change
    await put(redis, keys.stream, 2, auditEntryFields(records[1]!));
    expect(await log.verify()).toEqual({ valid: true, checked: 4 });
    // a record sealed for seq 3 stored at id 2 (the compact entry has no seq: the id gives it, and the hash
    // covers it), linked to record 1: its content is record 2's but its hash is not
    const resealed = sealRecord(checkEvent(event(2)), { seq: 2, hash: records[1]!.hash }, records[1]!.time);
    await put(redis, keys.stream, 2, auditEntryFields({ ...resealed, prev: records[0]!.hash }));
    expect(decodeAuditEntry('2-0', auditEntryFields(resealed))?.seq).toBe(2);
    expect(await log.verify()).toEqual({ valid: true, checked: 4 }); // the same record: seq 2, prev of 1
    await put(redis, keys.stream, 2, auditEntryFields(resealed)); // ...but its own prev (record 2's hash)
    expect(await log.verify()).toMatchObject({ valid: false, brokenAt: 2 });
  });

  it('the tail: altering, deleting or truncating the newest records is caught against the head', async () => {
    const { redis, keys, log, prefix } = await open('audit-review-tail');
    const records = await appendMany(log, 5);
    const head = await log.head();
    expect(head).toEqual({ seq: 5, hash: records[4]!.hash });
    // the newest record's content
    const last = await entry(redis, keys.stream, 5);
    await put(redis, keys.stream, 5, replace(last, 'a', 'admin:mallory'));
    expect(await log.verify()).toMatchObject({ valid: false, brokenAt: 5 });
    expect(await docsScript(prefix)).toBe('head mismatch');
    await put(redis, keys.stream, 5, last);
    // the two newest deleted, head untouched
    await redis.xdel(keys.stream, '5-0', '4-0');
    expect(await log.verify()).toMatchObject({ valid: false, brokenAt: 4 });
    expect(await docsScript(prefix)).toBe('head mismatch');
    // ...and the head moved back onto record 3 (whoever can write Redis can): only a checkpoint kept outside
    // Redis tells, which is what the docs ask operators to keep
    await redis.hset(keys.head, 'seq', '3', 'hash', records[2]!.hash);
    expect(await log.verify()).toEqual({ valid: true, checked: 3 });
    expect(await docsScript(prefix)).toBe('valid: 3 records');
    expect(await log.head()).not.toEqual(head);
  });

  it("an altered link of the newest record, head rewritten to match, is named at the record before: it can't be told from an altered record", async () => {
    const { redis, keys, log } = await open('audit-review-blame');
    const records = await appendMany(log, 4);
    const last = await entry(redis, keys.stream, 4);
    // (a) the newest record's prev forged, its hash recomputed into the head
    const forgedPrev = Buffer.alloc(32, 7).toString('hex');
    const relinked = { ...records[3]!, prev: forgedPrev };
    await put(redis, keys.stream, 4, auditEntryFields({ ...relinked, hash: recordHash(relinked) }));
    await redis.hset(keys.head, 'hash', recordHash(relinked));
    const a = await log.verify();
    // (b) record 3 altered instead (its content), nothing else
    await put(redis, keys.stream, 4, last);
    await redis.hset(keys.head, 'hash', records[3]!.hash);
    const three = await entry(redis, keys.stream, 3);
    await put(redis, keys.stream, 3, replace(three, 's', 'credential:other'));
    const b = await log.verify();
    expect(a).toEqual({
      valid: false,
      checked: 2,
      brokenAt: 3,
      reason: 'hash does not match the record content',
    });
    expect(b).toEqual(a);
  });

  it('the standalone script of docs/admin-security.md agrees with the broker on a mixed trail and its changes', async () => {
    const { redis, keys, log, prefix } = await open('audit-review-script');
    const records = await appendMany(log, 3);
    // records 1 and 2 as an older broker wrote them (the trail mixes both formats)
    for (const r of records.slice(0, 2)) await put(redis, keys.stream, r.seq, firstFormat(r));
    await appendMany(log, 2);
    expect(await log.verify()).toEqual({ valid: true, checked: 5 });
    expect(await docsScript(prefix)).toBe('valid: 5 records');
    const changes: [number, (f: string[]) => string[], string][] = [
      [1, (f) => replace(f, 'subject', 'credential:x'), 'broken at 1'], // first format, hash not updated
      [
        2,
        (f) => replace(f, 'prev', `${records[1]!.prev[0] === 'a' ? 'b' : 'a'}${records[1]!.prev.slice(1)}`),
        'broken at 2',
      ],
      [3, (f) => replace(f, 't', '1700000000001'), 'broken at 4'],
      [3, (f) => replace(f, 'n.count', '4'), 'broken at 4'],
      [5, (f) => replace(f, 'y', 'credential.restored'), 'head mismatch'],
    ];
    for (const [seq, change, verdict] of changes) {
      const original = await entry(redis, keys.stream, seq);
      await put(redis, keys.stream, seq, change(original));
      expect((await log.verify()).valid, `seq ${seq}`).toBe(false);
      expect(await docsScript(prefix), `seq ${seq}`).toBe(verdict);
      await put(redis, keys.stream, seq, original);
    }
    expect(await docsScript(prefix)).toBe('valid: 5 records');
    // The script checks content, the broker also the encoding: an entry re-encoded with the same content (a
    // string detail stored under the JSON tag, a number with a leading zero) is malformed to the broker, and the
    // script, which reads it as the same record, says valid. Never the other way round.
    const four = await entry(redis, keys.stream, 4);
    const reencoded = four
      .map((x) => (x === 'x.task' ? 'j.task' : x))
      .map((x, j, all) => (all[j - 1] === 'j.task' ? '"task-1"' : x));
    await put(redis, keys.stream, 4, reencoded);
    expect(await log.verify()).toMatchObject({
      valid: false,
      brokenAt: 4,
      reason: 'the record is malformed',
    });
    expect(await docsScript(prefix)).toBe('valid: 5 records');
    await put(redis, keys.stream, 4, four);
  });
});
