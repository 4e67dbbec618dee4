// The AuditLog contract: one behaviour suite that every adapter (memory, Redis) runs.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type AuditEvent,
  type AuditLog,
  type AuditRecord,
  GENESIS_HASH,
  hashSecret,
  recordHash,
} from '../../src/audit/audit-log.ts';
import { WritError } from '../../src/errors.ts';
import { FakeClock } from '../helpers/clock.ts';

export interface AuditFixture {
  log: AuditLog;
  /** Another instance over the same storage, as a second broker replica opens it. */
  replica(): Promise<AuditLog>;
  /** What an attacker with write access to the storage can do. */
  tamper: {
    /** Rewrites stored fields of one record, leaving its hash as it was unless `change` sets it. */
    alter(seq: number, change: Partial<AuditRecord>): Promise<void>;
    remove(seq: number): Promise<void>;
  };
  /**
   * The storage keeps no hash per record (the compact Redis format): a record's hash is computed from what is
   * stored, so an attacker cannot "recompute" one; changing any field is a change of content.
   */
  derivedHash?: boolean;
  close(): Promise<void>;
}

const JT = `writ_jt_${'A'.repeat(43)}`;
const ADMIN = `writ_admin_${'b'.repeat(43)}`;
const JWT =
  'eyJhbGciOiJFUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJzcGlmZmU6Ly9leGFtcGxlLm9yZy9hIn0.c2lnbmF0dXJlc2lnbmF0dXJl';

const issued = (i: number): AuditEvent => ({
  type: 'svid.issued',
  actor: 'workload:spiffe://example.org/ci/deploy',
  subject: `task-${i}`,
  decision: 'allow',
  policies: ['ci-deploy', 'default'],
  details: { credential: `jti-${i}`, ttl: 300, legacy: false, audience: ['https://api.example'], note: null },
});

export function auditLogContract(name: string, make: (clock: FakeClock) => Promise<AuditFixture>): void {
  describe(`AuditLog contract: ${name}`, () => {
    let fake: FakeClock;
    let fx: AuditFixture;

    beforeEach(async () => {
      fake = new FakeClock(1_700_000_000_000);
      fx = await make(fake);
    });

    afterEach(async () => {
      await fx.close();
    });

    const appendMany = async (n: number, log: AuditLog = fx.log) => {
      const records: AuditRecord[] = [];
      for (let i = 1; i <= n; i++) {
        records.push(await log.append(issued(i)));
        fake.advance(7);
      }
      return records;
    };

    it('appends records that form a chain from the genesis hash', async () => {
      const first = await fx.log.append(issued(1));
      fake.advance(1000);
      const second = await fx.log.append({ type: 'task.ended', actor: 'system:worker', subject: 'task-1' });
      expect(first).toEqual({
        seq: 1,
        time: 1_700_000_000_000,
        ...issued(1),
        prev: GENESIS_HASH,
        hash: first.hash,
      });
      expect(first.hash).toBe(recordHash(first));
      expect(second).toEqual({
        seq: 2,
        time: 1_700_000_001_000,
        type: 'task.ended',
        actor: 'system:worker',
        subject: 'task-1',
        prev: first.hash,
        hash: recordHash({ ...second }),
      });
      expect(await fx.log.head()).toEqual({ seq: 2, hash: second.hash });
    });

    it('reads back exactly what was appended, oldest first, page by page', async () => {
      const records = await appendMany(5);
      const page1 = await fx.log.page({ limit: 2 });
      expect(page1).toEqual({ records: records.slice(0, 2), next: 2 });
      const page2 = await fx.log.page({ after: 2, limit: 2 });
      expect(page2).toEqual({ records: records.slice(2, 4), next: 4 });
      expect(await fx.log.page({ after: 4, limit: 2 })).toEqual({ records: records.slice(4) });
      expect(await fx.log.page({ after: 5, limit: 10 })).toEqual({ records: [] });
    });

    it('keeps every kind of detail value intact (so that hashes recompute)', async () => {
      const event: AuditEvent = {
        type: 'admin.entry.created',
        actor: 'admin:alice',
        details: {
          zeta: 'last key first',
          alpha: 1.5,
          big: 2 ** 53 - 1,
          negative: -3,
          yes: true,
          empty: '',
          none: null,
          list: [],
          unicode: 'ünïcödé — 日本 🔐 "quoted" \\ \n',
          token: hashSecret(JT),
        },
        policies: [],
      };
      const record = await fx.log.append(event);
      expect((await fx.log.page({ limit: 1 })).records[0]).toEqual(record);
      expect(await fx.log.verify()).toEqual({ valid: true, checked: 1 });
    });

    it('verifies an intact chain, whole or in a range', async () => {
      expect(await fx.log.verify()).toEqual({ valid: true, checked: 0 });
      await appendMany(30);
      expect(await fx.log.verify()).toEqual({ valid: true, checked: 30 });
      expect(await fx.log.verify({ from: 10, to: 20 })).toEqual({ valid: true, checked: 11 });
      expect(await fx.log.verify({ from: 25 })).toEqual({ valid: true, checked: 6 });
      expect(await fx.log.verify({ to: 500 })).toEqual({ valid: true, checked: 30 });
      expect(await fx.log.verify({ from: 31 })).toEqual({ valid: true, checked: 0 });
    });

    it('keeps one chain when two replicas append concurrently (200 appends)', async () => {
      const replica = await fx.replica();
      const appended = await Promise.all(
        Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? fx.log : replica).append(issued(i))),
      );
      const seqs = appended.map((r) => r.seq).sort((a, b) => a - b);
      expect(seqs).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
      expect(await fx.log.verify()).toEqual({ valid: true, checked: 200 });
      expect(await replica.verify()).toEqual({ valid: true, checked: 200 });
      const stored = [...(await fx.log.page({ limit: 1000 })).records];
      expect(stored.map((r) => r.seq)).toEqual(seqs);
      stored.forEach((record, i) => {
        expect(record.prev).toBe(i === 0 ? GENESIS_HASH : stored[i - 1]!.hash);
      });
      expect((await replica.head()).seq).toBe(200);
      // and the chain goes on from either replica
      const next = await replica.append(issued(999));
      expect(next.seq).toBe(201);
      expect((await fx.log.append(issued(1000))).prev).toBe(next.hash);
    });

    it('detects an altered record at exactly its seq', async () => {
      await appendMany(60);
      await fx.tamper.alter(57, { subject: 'task-innocent' });
      expect(await fx.log.verify()).toEqual({
        valid: false,
        checked: 56,
        brokenAt: 57,
        reason: 'hash does not match the record content',
      });
      // a range that ends before the change still verifies; one that includes it does not
      expect((await fx.log.verify({ to: 56 })).valid).toBe(true);
      expect(await fx.log.verify({ from: 50, to: 58 })).toMatchObject({
        valid: false,
        brokenAt: 57,
        checked: 7,
      });
    });

    it('detects an altered decision, time or detail', async () => {
      await appendMany(10);
      await fx.tamper.alter(3, { decision: 'deny' });
      expect(await fx.log.verify()).toMatchObject({ valid: false, brokenAt: 3 });
      await fx.tamper.alter(3, { decision: 'allow' });
      expect(await fx.log.verify()).toEqual({ valid: true, checked: 10 });
      await fx.tamper.alter(8, { time: 1 });
      expect(await fx.log.verify()).toMatchObject({ valid: false, brokenAt: 8 });
    });

    it('detects a record altered with its hash recomputed, at the next link', async () => {
      const records = await appendMany(10);
      const forged = { ...records[4]!, actor: 'admin:mallory' };
      await fx.tamper.alter(5, { actor: forged.actor, hash: recordHash(forged) });
      expect(await fx.log.verify()).toEqual(
        fx.derivedHash
          ? // no stored hash to forge: record 6 still links to the original record 5, so 5 is the one changed
            { valid: false, checked: 4, brokenAt: 5, reason: 'hash does not match the record content' }
          : { valid: false, checked: 5, brokenAt: 6, reason: 'prev is not the hash of record 5' },
      );
    });

    it('detects a deleted record at its seq', async () => {
      await appendMany(20);
      await fx.tamper.remove(12);
      expect(await fx.log.verify()).toEqual({
        valid: false,
        checked: 11,
        brokenAt: 12,
        reason: 'record 12 is missing',
      });
    });

    it('detects deleting the first and the last records', async () => {
      const records = await appendMany(5);
      await fx.tamper.remove(5);
      expect(await fx.log.verify()).toMatchObject({ valid: false, brokenAt: 5, checked: 4 });
      await fx.tamper.remove(1);
      expect(await fx.log.verify()).toMatchObject({ valid: false, brokenAt: 1, checked: 0 });
      expect(records).toHaveLength(5);
    });

    it('refuses secrets anywhere in an event, and appends nothing', async () => {
      const refused: AuditEvent[] = [
        { ...issued(1), details: { token: JT } },
        { ...issued(1), details: { presented: `Bearer ${ADMIN}` } },
        { ...issued(1), details: { svid: JWT } },
        { ...issued(1), details: { tokens: ['fine', JT] } },
        { ...issued(1), subject: ADMIN },
        { ...issued(1), policies: [JWT] },
        { ...issued(1), details: { key: '-----BEGIN PRIVATE KEY-----\nMIIE' } },
      ];
      for (const event of refused) {
        const error = await fx.log.append(event).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(TypeError);
        expect(String(error)).toMatch(/looks like .*hashSecret/);
        // the message names the field, never the value
        expect(String(error)).not.toContain('AAAA');
        expect(String(error)).not.toContain('bbbb');
      }
      expect(await fx.log.head()).toEqual({ seq: 0, hash: GENESIS_HASH });
      const record = await fx.log.append({ ...issued(1), details: { token: hashSecret(JT) } });
      expect(record.details?.token).toMatch(/^sha256:[0-9a-f]{64}$/);
    });

    it('refuses malformed events with a TypeError', async () => {
      const bad = [
        { type: 'Issued', actor: 'system:worker' },
        { type: 'svid', actor: 'system:worker' },
        { type: 'svid.issued', actor: 'nobody' },
        { type: 'svid.issued', actor: 'system:worker', decision: 'maybe' },
        { type: 'svid.issued', actor: 'system:worker', details: { 'bad key': 1 } },
        { type: 'svid.issued', actor: 'system:worker', details: { n: Number.NaN } },
        { type: 'svid.issued', actor: 'system:worker', details: { nested: { a: 1 } } },
        { type: 'svid.issued', actor: 'system:worker', details: { s: 'lone \ud800 surrogate' } },
        { type: 'svid.issued', actor: 'system:worker', policies: 'p1' },
      ] as unknown as AuditEvent[];
      for (const event of bad) await expect(fx.log.append(event)).rejects.toBeInstanceOf(TypeError);
      expect((await fx.log.head()).seq).toBe(0);
    });

    it('refuses a bad page request or range with invalid_request', async () => {
      for (const request of [{ limit: 0 }, { limit: 1001 }, { limit: 1.5 }, { after: -1, limit: 5 }]) {
        const error = await fx.log.page(request).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(WritError);
        expect((error as WritError).code).toBe('invalid_request');
      }
      await expect(fx.log.verify({ from: 0 })).rejects.toMatchObject({ code: 'invalid_request' });
    });
  });
}
