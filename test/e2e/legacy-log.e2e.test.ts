// The warning for legacy (static_key) credentials through the whole broker: the workload in full at once,
// the credentials that follow summed up (here: when the broker closes), every one counted in the metric.
import { createHash } from 'node:crypto';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.ts';
import { startTestBroker } from '../helpers/broker.ts';

const KEY = 'legacy-log-test-key-0123456789abcdef';
const ID = 'spiffe://legacy.test/billing';

describe('legacy issuance warning', () => {
  it('logs a static_key workload in full once, then sums up its credentials; the key never appears', async () => {
    const lines: Record<string, unknown>[] = [];
    const raw: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        raw.push(String(chunk));
        for (const line of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(line));
        done();
      },
    });
    const b = await startTestBroker({
      logger: createLogger('warn', sink),
      config: {
        trustDomain: 'legacy.test',
        attestors: {
          static_key: { keys: [{ id: 'billing', sha256: createHash('sha256').update(KEY).digest('hex') }] },
        },
      },
    });
    const legacy = (l: Record<string, unknown>) => String(l.msg).startsWith('legacy credential');
    const ids: string[] = [];
    try {
      expect(
        (await b.admin('POST', '/v1/admin/entries', { spiffeId: ID, selectors: ['static_key:id:billing'] }))
          .status,
      ).toBe(201);
      for (let i = 0; i < 4; i++) {
        const res = await b.request('POST', '/v1/svid/jwt', {
          body: { attestor: 'static_key', evidence: { key: KEY }, audience: ['db'] },
        });
        expect(res.status).toBe(200);
        ids.push(res.body.id);
      }
      expect(lines.filter(legacy)).toEqual([
        expect.objectContaining({ level: 40, attestor: 'static_key', spiffeId: ID, id: ids[0] }),
      ]);
      const metrics = await b.request('GET', '/metrics');
      expect(metrics.text).toMatch(/writ_legacy_issuance_total\{attestor="static_key"\} 4/);
    } finally {
      await b.close();
    }
    expect(lines.filter(legacy)).toEqual([
      expect.objectContaining({ id: ids[0] }),
      expect.objectContaining({ level: 40, attestor: 'static_key', spiffeId: ID, count: 3, lastId: ids[3] }),
    ]);
    expect(raw.join('')).not.toContain(KEY);
  });
});
