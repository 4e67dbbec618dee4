// Attacks on the compact audit record format (src/audit/redis.audit.ts): no stored seq or hash, prev as base64url,
// details one field per key. An attacker with write access to Redis alters, deletes, reorders and re-encodes
// records, mixes in fields of the first format, and the trail mixes both formats (records written before the
// upgrade, and by a replica that has not been upgraded yet). Real Redis.
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  type AuditHead,
  type AuditRecord,
  checkEvent,
  GENESIS_HASH,
  recordHash,
  sealRecord,
} from '../../src/audit/audit-log.ts';
import { auditEntryFields, auditKeys, decodeAuditEntry, RedisAuditLog } from '../../src/audit/redis.audit.ts';
import { FakeClock } from '../helpers/clock.ts';
import { closedAfterEach, testRedis, uniquePrefix } from '../helpers/redis.ts';

const opened = closedAfterEach();

async function open(name: string) {
  const redis = await testRedis();
  const prefix = uniquePrefix(name);
  opened.push({ redis, prefix });
  const fake = new FakeClock(1_700_000_000_000);
  const log = new RedisAuditLog({ redis, prefix, clock: fake.clock });
  return { redis, prefix, keys: auditKeys(prefix), log, fake };
}

const issued = (i: number): AuditEvent => ({
  type: 'svid.issued',
  actor: 'workload:spiffe://example.org/ci/deploy',
  subject: `credential:jti-${i}`,
  decision: 'allow',
  details: {
    type: 'jwt',
    task: `task-${i}`,
    expiresAt: 1_700_000_300 + i,
    audience: ['https://api.example'],
  },
});

/** The first format, as brokers before the compact one wrote it: every field under its own name. */
function firstFormat(record: AuditRecord): string[] {
  const fields = ['seq', String(record.seq), 'time', String(record.time), 'type', record.type];
  fields.push('actor', record.actor);
  if (record.subject !== undefined) fields.push('subject', record.subject);
  if (record.decision !== undefined) fields.push('decision', record.decision);
  if (record.policies !== undefined) fields.push('policies', JSON.stringify(record.policies));
  if (record.details !== undefined) fields.push('details', JSON.stringify(record.details));
  fields.push('prev', record.prev, 'hash', record.hash);
  return fields;
}

/** Appends records in the first format, as an older broker replica does (stream entry and head together). */
async function appendFirstFormat(redis: Redis, prefix: string, events: AuditEvent[], time: number) {
  const keys = auditKeys(prefix);
  const raw = await redis.hmget(keys.head, 'seq', 'hash');
  let head: AuditHead =
    raw[0] === null ? { seq: 0, hash: GENESIS_HASH } : { seq: Number(raw[0]), hash: raw[1]! };
  const records: AuditRecord[] = [];
  for (const event of events) {
    const record = sealRecord(checkEvent(event), head, time);
    await redis.xadd(keys.stream, `${record.seq}-0`, ...firstFormat(record));
    head = { seq: record.seq, hash: record.hash };
    records.push(record);
  }
  await redis.hset(keys.head, 'seq', String(head.seq), 'hash', head.hash);
  return records;
}

/** Rewrites the stream: every entry re-added, `change` deciding each one's fields (null: left out). */
async function rewrite(
  redis: Redis,
  stream: string,
  change: (seq: number, fields: string[]) => string[] | null,
) {
  const entries = await redis.xrange(stream, '-', '+');
  await redis.del(stream);
  for (const [id, fields] of entries) {
    const next = change(Number(id.split('-')[0]), fields);
    if (next !== null) await redis.xadd(stream, id, ...next);
  }
}

async function appendMany(log: RedisAuditLog, n: number, offset = 0): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  for (let i = 0; i < n; i++) out.push(await log.append(issued(offset + i)));
  return out;
}

const replace = (fields: string[], name: string, value: string) =>
  fields.map((f, j) => (j % 2 === 1 && fields[j - 1] === name ? value : f));

describe('compact audit records', () => {
  it('are smaller than the first format and read back as the same records, hashes computed', async () => {
    const { redis, keys, log } = await open('audit-compact-size');
    const records = await appendMany(log, 3);
    const entries = await redis.xrange(keys.stream, '-', '+');
    for (const [i, [id, fields]] of entries.entries()) {
      expect(decodeAuditEntry(id, fields)).toEqual(records[i]);
      expect(fields).not.toContain('seq');
      expect(fields).not.toContain('hash');
      expect(fields).not.toContain(records[i]!.hash);
      // the values alone (records of one shape share their field names in a stream node)
      const values = (f: string[]) => f.filter((_, j) => j % 2 === 1).join('').length;
      expect(values(fields)).toBeLessThan(values(firstFormat(records[i]!)) - 100);
    }
    expect((await log.page({ limit: 10 })).records).toEqual(records);
    expect(await log.verify()).toEqual({ valid: true, checked: 3 });
  });

  it('a trail that mixes both formats verifies, pages and goes on (upgrade, and an older replica)', async () => {
    const { redis, prefix, log } = await open('audit-compact-mixed');
    // Written before the upgrade.
    const old = await appendFirstFormat(redis, prefix, [issued(1), issued(2), issued(3)], 1_699_999_999_000);
    // The upgraded broker continues the chain in the compact format.
    const compact = await appendMany(log, 3, 10);
    expect(compact[0]!.prev).toBe(old[2]!.hash);
    // A replica not yet upgraded appends after it, then the upgraded one again.
    const older = await appendFirstFormat(redis, prefix, [issued(20), issued(21)], 1_700_000_000_500);
    expect(older[0]!.prev).toBe(compact[2]!.hash);
    const fresh = new RedisAuditLog({ redis, prefix });
    const last = await fresh.append(issued(30));
    expect(last.prev).toBe(older[1]!.hash);
    const all = [...old, ...compact, ...older, last];
    expect((await log.page({ limit: 100 })).records).toEqual(all);
    expect(await log.verify()).toEqual({ valid: true, checked: 9 });
    for (const from of [1, 3, 4, 6, 7, 8, 9]) {
      for (const to of [from, 6, 9]) {
        if (to >= from)
          expect(await log.verify({ from, to })).toEqual({ valid: true, checked: to - from + 1 });
      }
    }
  });

  it('an altered compact record is named at its seq, whichever field changed, and at the boundary of formats', async () => {
    const { redis, prefix, keys, log } = await open('audit-compact-alter');
    await appendFirstFormat(redis, prefix, [issued(0), issued(1)], 1_699_999_999_000);
    await appendMany(log, 8, 2); // seqs 3..10
    const changes: [string, string][] = [
      ['t', '1700000000001'],
      ['y', 'svid.denied'],
      ['a', 'workload:spiffe://example.org/mallory'],
      ['s', 'credential:jti-other'],
      ['d', 'deny'],
      ['x.task', 'task-innocent'],
      ['n.expiresAt', '1700009999'],
      ['j.audience', '["https://evil.example"]'],
    ];
    for (const [seq, [name, value]] of [3, 5, 7, 9, 4, 6, 8, 10].map((s, i) => [s, changes[i]!] as const)) {
      const entries = await redis.xrange(keys.stream, `${seq}-0`, `${seq}-0`);
      const original = entries[0]![1];
      await rewrite(redis, keys.stream, (s, fields) => (s === seq ? replace(fields, name, value) : fields));
      const result = await log.verify();
      expect(result, `${name} of record ${seq}`).toEqual({
        valid: false,
        checked: seq - 1,
        brokenAt: seq,
        reason:
          seq === 10
            ? 'record 10 is not the one the chain head names'
            : 'hash does not match the record content',
      });
      // a range that stops at the altered record checks it against the link after it
      if (seq < 10)
        expect(await log.verify({ from: 2, to: seq })).toMatchObject({ valid: false, brokenAt: seq });
      expect((await log.verify({ to: seq - 1 })).valid).toBe(true);
      await rewrite(redis, keys.stream, (s, fields) => (s === seq ? original : fields));
      expect(await log.verify()).toEqual({ valid: true, checked: 10 });
    }
  });

  it("an altered prev (the record's link) is named at that record, not at the one before", async () => {
    const { redis, keys, log } = await open('audit-compact-link');
    const records = await appendMany(log, 6);
    // Point record 4 at record 2 (as if 3 were not there), in a well-formed encoding.
    const forged = Buffer.from(records[1]!.hash, 'hex').toString('base64url');
    await rewrite(redis, keys.stream, (s, fields) => (s === 4 ? replace(fields, 'l', forged) : fields));
    expect(await log.verify()).toEqual({
      valid: false,
      checked: 3,
      brokenAt: 4,
      reason: 'prev is not the hash of record 3',
    });
  });

  it('a deleted compact record, the deleted newest one, and a truncated tail are breaks', async () => {
    const { redis, keys, log } = await open('audit-compact-delete');
    await appendMany(log, 8);
    await redis.xdel(keys.stream, '5-0');
    expect(await log.verify()).toEqual({
      valid: false,
      checked: 4,
      brokenAt: 5,
      reason: 'record 5 is missing',
    });
    // a range ending just before the gap needs the record after it to vouch for its last record
    expect(await log.verify({ to: 4 })).toMatchObject({ valid: false, brokenAt: 5 });
    expect((await log.verify({ to: 3 })).valid).toBe(true);
    await redis.xdel(keys.stream, '8-0', '7-0');
    expect(await log.verify({ from: 6 })).toMatchObject({ valid: false, brokenAt: 7 });
  });

  it('reordered records (contents swapped between ids, or re-added under other ids) are breaks', async () => {
    const { redis, keys, log } = await open('audit-compact-reorder');
    await appendMany(log, 6);
    const entries = await redis.xrange(keys.stream, '-', '+');
    const byId = new Map(entries.map(([id, f]) => [id, f]));
    await rewrite(redis, keys.stream, (s, fields) =>
      s === 3 ? byId.get('4-0')! : s === 4 ? byId.get('3-0')! : fields,
    );
    const swapped = await log.verify();
    expect(swapped).toMatchObject({ valid: false, brokenAt: 3 });
    // the records are then read at the positions they were moved to: seq follows the id
    const moved = (await log.page({ limit: 10 })).records;
    expect(moved[2]!.subject).toBe('credential:jti-3');
    expect(moved[2]!.seq).toBe(3);

    // Put back, then move record 6 to a later id (a gap and a record beyond the head).
    await rewrite(redis, keys.stream, (s) => byId.get(`${s}-0`)!);
    expect(await log.verify()).toEqual({ valid: true, checked: 6 });
    await redis.xdel(keys.stream, '6-0');
    await redis.xadd(keys.stream, '7-0', ...byId.get('6-0')!);
    expect(await log.verify()).toMatchObject({ valid: false, brokenAt: 7 });
  });

  it('refuses entries that mix the formats, repeat fields or carry what neither format has', async () => {
    const { redis, keys, log } = await open('audit-compact-collide');
    const records = await appendMany(log, 3);
    const [id, compact] = (await redis.xrange(keys.stream, '2-0', '2-0'))[0]!;
    const old = firstFormat(records[1]!);
    const malformed: [string, string[]][] = [
      [
        'old field names added to a compact record',
        [...compact.slice(0, -2), 'hash', records[1]!.hash, ...compact.slice(-2)],
      ],
      ['old seq first, compact fields after', ['seq', '2', ...compact]],
      ['a compact field added to a first-format record', [...old, 'l', compact.at(-1)!]],
      ['the first format without seq first', [...old.slice(2), 'seq', '2']],
      [
        'details in both encodings',
        [...compact.slice(0, -2), 'details', '{"type":"jwt"}', ...compact.slice(-2)],
      ],
      ['a repeated field', [...compact.slice(0, 2), ...compact]],
      ['a repeated detail', [...compact.slice(0, -2), 'x.type', 'jwt', ...compact.slice(-2)]],
      ['a detail in two types', [...compact.slice(0, -2), 'n.type', '1', ...compact.slice(-2)]],
      ['an empty-details marker beside details', [...compact.slice(0, -2), 'e', '{}', ...compact.slice(-2)]],
      ['an unknown detail type', [...compact.slice(0, -2), 'q.more', 'x', ...compact.slice(-2)]],
      [
        'a detail key the trail never writes',
        [...compact.slice(0, -2), 'x.__proto__', 'x', ...compact.slice(-2)],
      ],
      ['a number not as JSON writes it', replace(compact, 'n.expiresAt', '01700000301')],
      ['a number in exponent form for an integer', replace(compact, 'n.expiresAt', '1.700000301e9')],
      ['a string where JSON is expected', replace(compact, 'j.audience', '"https://api.example"')],
      ['a non-JSON array', replace(compact, 'j.audience', '[https://api.example]')],
      ['a prev that is not base64url', replace(compact, 'l', '!'.repeat(43))],
      ['a prev of the wrong length', replace(compact, 'l', 'A'.repeat(42))],
      [
        'a prev in a second encoding of the same bytes',
        replace(
          compact,
          'l',
          `${compact.at(-1)!.slice(0, 42)}${String.fromCharCode(compact.at(-1)!.charCodeAt(42) + 1)}`,
        ),
      ],
      ['a prev in hex (the first format)', replace(compact, 'l', records[0]!.hash)],
      ['a time that is not an integer', replace(compact, 't', '1.5')],
      ['a decision that is not one', replace(compact, 'd', 'perhaps')],
      ['no prev', compact.slice(0, -2)],
      ['prev not last', [...compact.slice(-2), ...compact.slice(0, -2)]],
    ];
    for (const [what, fields] of malformed) {
      expect(decodeAuditEntry(id, fields), what).toBeNull();
      await rewrite(redis, keys.stream, (s, f) => (s === 2 ? fields : f));
      expect(await log.verify(), what).toEqual({
        valid: false,
        checked: 1,
        brokenAt: 2,
        reason: 'the record is malformed',
      });
      await expect(log.page({ limit: 10 }), what).rejects.toMatchObject({ code: 'server_error' });
    }
    // Re-encoding a record in the other format is not a change: the hash is over the record, not its encoding.
    await rewrite(redis, keys.stream, (s, f) => (s === 2 ? old : f));
    expect(await log.verify()).toEqual({ valid: true, checked: 3 });
    // ...but a first-format record keeps its stored hash honest.
    await rewrite(redis, keys.stream, (s, f) => (s === 2 ? replace(old, 'subject', 'credential:x') : f));
    expect(await log.verify()).toMatchObject({
      valid: false,
      brokenAt: 2,
      reason: 'hash does not match the record content',
    });
  });

  it('keeps the edge cases of details through the compact encoding (empty object, -0, floats, empty strings)', async () => {
    const { log } = await open('audit-compact-details');
    const events: AuditEvent[] = [
      { type: 'task.ended', actor: 'system:worker', details: {} },
      { type: 'task.ended', actor: 'system:worker' },
      {
        type: 'task.ended',
        actor: 'system:worker',
        details: { a: 0.1, b: -2.5e-7, c: 1e21, d: -0, e: '', f: '12' },
      },
      { type: 'task.ended', actor: 'system:worker', details: { 'a.b-c_d': true, list: [], n: null } },
    ];
    const records: AuditRecord[] = [];
    for (const e of events) records.push(await log.append(e));
    const back = (await log.page({ limit: 10 })).records;
    expect(back.map((r) => recordHash(r))).toEqual(records.map((r) => r.hash));
    expect(back[0]!.details).toEqual({});
    expect(back[1]!.details).toBeUndefined();
    expect(back[2]!.details).toEqual({ a: 0.1, b: -2.5e-7, c: 1e21, d: 0, e: '', f: '12' });
    expect(back[3]!.details).toEqual({ 'a.b-c_d': true, list: [], n: null });
    expect(await log.verify()).toEqual({ valid: true, checked: 4 });
    // the encoding of each is stable
    for (const r of back) expect(decodeAuditEntry(`${r.seq}-0`, auditEntryFields(r))).toEqual(r);
  });
});
