import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { type LegacyCredential, LegacyIssuanceLog } from '../../../src/observability/legacy-log.ts';
import { createLogger } from '../../../src/observability/logger.ts';

/** A real pino logger (redaction and all) writing synchronously into an array of parsed lines. */
function capture(): { lines: Record<string, unknown>[]; logger: ReturnType<typeof createLogger> } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, logger: createLogger('info', sink) };
}

const cred = (n: number, spiffeId = 'spiffe://example.org/billing'): LegacyCredential => ({
  id: `cred-${n}`,
  spiffeId,
  task: `task-${n}`,
  expiresAt: 1_800_000_000 + n,
});

describe('LegacyIssuanceLog', () => {
  let log: LegacyIssuanceLog | undefined;
  afterEach(() => log?.close());

  it('logs a workload in full at first, then sums up what followed in one line per interval', () => {
    const { lines, logger } = capture();
    let now = Date.parse('2026-11-28T10:00:00Z');
    log = new LegacyIssuanceLog(logger, { intervalMs: 3_600_000, now: () => now });

    log.note('static_key', cred(1), 'req-1');
    for (let i = 2; i <= 5; i++) log.note('static_key', cred(i), `req-${i}`);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({
      level: 40,
      msg: 'legacy credential issued: the workload still attests with a static secret',
      reqId: 'req-1',
      attestor: 'static_key',
      id: 'cred-1',
      spiffeId: 'spiffe://example.org/billing',
      task: 'task-1',
      expiresAt: 1_800_000_001,
    });

    now += 60_000;
    log.flush();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({
      level: 40,
      msg: 'legacy credentials issued: the workload still attests with a static secret',
      attestor: 'static_key',
      spiffeId: 'spiffe://example.org/billing',
      count: 4,
      since: '2026-11-28T10:00:00.000Z',
      lastId: 'cred-5',
      lastTask: 'task-5',
    });

    // The next interval counts anew from the summary; a quiet interval forgets the workload.
    log.note('static_key', cred(6), 'req-6');
    now += 60_000;
    log.flush();
    expect(lines[2]).toMatchObject({ count: 1, since: '2026-11-28T10:01:00.000Z', lastId: 'cred-6' });
    log.flush();
    expect(lines).toHaveLength(3);
    log.note('static_key', cred(7), 'req-7');
    expect(lines).toHaveLength(4);
    expect(lines[3]).toMatchObject({ id: 'cred-7', reqId: 'req-7' });
  });

  it('keeps workloads and attestors apart', () => {
    const { lines, logger } = capture();
    log = new LegacyIssuanceLog(logger, { intervalMs: 3_600_000 });
    log.note('static_key', cred(1, 'spiffe://example.org/a'), 'r');
    log.note('static_key', cred(2, 'spiffe://example.org/b'), 'r');
    log.note('other_legacy', cred(3, 'spiffe://example.org/a'), 'r');
    log.note('static_key', cred(4, 'spiffe://example.org/b'), 'r');
    expect(lines.map((l) => l.id)).toEqual(['cred-1', 'cred-2', 'cred-3']);
    log.flush();
    expect(lines.slice(3)).toHaveLength(1);
    expect(lines[3]).toMatchObject({ spiffeId: 'spiffe://example.org/b', attestor: 'static_key', count: 1 });
  });

  it('logs every credential in full beyond its workload limit, never silently', () => {
    const { lines, logger } = capture();
    log = new LegacyIssuanceLog(logger, { intervalMs: 3_600_000, maxWorkloads: 2 });
    for (const w of ['a', 'b', 'c', 'c', 'c'])
      log.note('static_key', cred(lines.length, `spiffe://example.org/${w}`), 'r');
    // a and b are counted from now on; c is beyond the limit: a line per credential.
    expect(lines.map((l) => l.spiffeId)).toEqual([
      'spiffe://example.org/a',
      'spiffe://example.org/b',
      'spiffe://example.org/c',
      'spiffe://example.org/c',
      'spiffe://example.org/c',
    ]);
  });

  it('sums up what is still counted when closed, and logs in full after that', () => {
    const { lines, logger } = capture();
    log = new LegacyIssuanceLog(logger, { intervalMs: 3_600_000 });
    log.note('static_key', cred(1), 'r');
    log.note('static_key', cred(2), 'r');
    log.close();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ count: 1, lastId: 'cred-2' });
    log.note('static_key', cred(3), 'r');
    log.note('static_key', cred(4), 'r');
    expect(lines.slice(2).map((l) => l.id)).toEqual(['cred-3', 'cred-4']);
  });

  it('sums up on its own timer', async () => {
    const { lines, logger } = capture();
    log = new LegacyIssuanceLog(logger, { intervalMs: 20 });
    log.note('static_key', cred(1), 'r');
    log.note('static_key', cred(2), 'r');
    const deadline = Date.now() + 5_000;
    while (lines.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(lines[1]).toMatchObject({ count: 1, lastId: 'cred-2' });
  });
});
