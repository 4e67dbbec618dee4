// Runs the AuditLog contract against the memory adapter, plus its trimming.
import { describe, expect, it } from 'vitest';
import { MemoryAuditLog, type StoredAuditEntry } from '../../src/audit/memory.audit.ts';
import { FakeClock } from '../helpers/clock.ts';
import { auditLogContract } from './audit-log.contract.ts';

auditLogContract('memory', async (fake) => {
  const entries: StoredAuditEntry[] = [];
  const log = new MemoryAuditLog({ clock: fake.clock, entries });
  const at = (seq: number) => entries.findIndex((e) => e.position === seq);
  return {
    log,
    // one process: every caller shares the instance
    replica: async () => log,
    tamper: {
      alter: async (seq, change) => {
        Object.assign(entries[at(seq)]!.record, change);
      },
      remove: async (seq) => {
        entries.splice(at(seq), 1);
      },
    },
    close: async () => {},
  };
});

describe('MemoryAuditLog', () => {
  it('trims to maxLen and then verifies from the oldest record kept', async () => {
    const log = new MemoryAuditLog({ clock: new FakeClock().clock, maxLen: 5 });
    for (let i = 0; i < 12; i++) await log.append({ type: 'task.ended', actor: 'system:worker' });
    expect((await log.page({ limit: 100 })).records.map((r) => r.seq)).toEqual([8, 9, 10, 11, 12]);
    expect(await log.verify()).toEqual({ valid: true, checked: 5 });
    expect(await log.verify({ from: 3 })).toMatchObject({ valid: false, brokenAt: 3 });
  });

  it('reads an altered record that no longer parses as a broken link, not a crash', async () => {
    const entries: StoredAuditEntry[] = [];
    const log = new MemoryAuditLog({ entries });
    for (let i = 0; i < 3; i++) await log.append({ type: 'task.ended', actor: 'system:worker' });
    (entries[1]!.record as unknown as Record<string, unknown>).decision = 'perhaps';
    expect(await log.verify()).toEqual({
      valid: false,
      checked: 1,
      brokenAt: 2,
      reason: 'the record is malformed',
    });
    await expect(log.page({ limit: 10 })).rejects.toMatchObject({ code: 'server_error' });
  });
});
