// static_key over real HTTP: legacy credentials are marked, capped, logged and counted; wrong keys refused.
import { createHash, randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { type Broker, startBroker } from '../../src/server.ts';
import { startTestBroker, type TestBroker } from '../../test/helpers/broker.ts';
import { FakeClock } from '../../test/helpers/clock.ts';

const KEY = `sk_${randomBytes(32).toString('base64url')}`;
const SHORT_KEY = `sk_${randomBytes(32).toString('base64url')}`;
const hex = (k: string) => createHash('sha256').update(k).digest('hex');
const b64u = (k: string) => createHash('sha256').update(k).digest('base64url');

const STATIC_KEY_CONFIG = {
  keys: [
    { id: 'billing-cron', sha256: hex(KEY), selectors: { team: 'billing' } },
    { id: 'short', sha256: b64u(SHORT_KEY), ttlCap: 60 },
  ],
};
const AUDIENCE = ['https://api.example'];

async function legacyMetric(b: TestBroker): Promise<number> {
  const text = (await b.request('GET', '/metrics')).text;
  const line = text
    .split('\n')
    .find((l) => l.startsWith('writ_legacy_issuance_total{attestor="static_key"}'));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('static_key attestor (e2e)', () => {
  let clock: FakeClock;
  let b: TestBroker;

  beforeAll(async () => {
    clock = new FakeClock();
    b = await startTestBroker({
      clock: clock.clock,
      config: { attestors: { static_key: STATIC_KEY_CONFIG }, rateLimit: { enabled: false } },
    });
    for (const [spiffeId, selectors] of [
      ['spiffe://writ.local/legacy/billing', ['static_key:id:billing-cron', 'static_key:team:billing']],
      ['spiffe://writ.local/legacy/short', ['static_key:id:short']],
    ] as const) {
      expect((await b.admin('POST', '/v1/admin/entries', { spiffeId, selectors })).status).toBe(201);
    }
  });
  afterAll(async () => {
    await b?.close();
  });

  function issue(key: string, extra: Record<string, unknown> = {}) {
    return b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'static_key', evidence: { key }, audience: AUDIENCE, ...extra },
    });
  }

  it('issues for a configured key, with its configured selectors', async () => {
    const res = await issue(KEY);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.spiffeId).toBe('spiffe://writ.local/legacy/billing');
    expect(decodeJwt(res.body.token).sub).toBe('spiffe://writ.local/legacy/billing');
  });

  it('marks every credential legacy, caps it at 300 s by default even when 600 s are asked, and counts it', async () => {
    const before = await legacyMetric(b);
    const res = await issue(KEY, { ttl: 600 });
    expect(res.status).toBe(200);
    expect(res.body.expiresAt).toBe(clock.seconds() + 300);
    const claims = decodeJwt(res.body.token);
    expect((claims.exp as number) - (claims.iat as number)).toBe(300);
    const view = await b.admin('GET', `/v1/admin/credentials/${res.body.id}`);
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({
      id: res.body.id,
      attestor: 'static_key',
      legacy: true,
      status: 'active',
    });
    expect(await legacyMetric(b)).toBe(before + 1);
  });

  it('lets a per-key cap lower the TTL further (the lower cap wins)', async () => {
    const res = await issue(SHORT_KEY, { ttl: 600 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.spiffeId).toBe('spiffe://writ.local/legacy/short');
    expect(res.body.expiresAt).toBe(clock.seconds() + 60);
  });

  it('is reusable (no replay guard): the same key works again', async () => {
    expect((await issue(KEY)).status).toBe(200);
    expect((await issue(KEY)).status).toBe(200);
  });

  it('refuses a wrong key, a near miss and bad evidence with 401, counting nothing', async () => {
    const before = await legacyMetric(b);
    for (const key of [
      `sk_${randomBytes(32).toString('base64url')}`,
      `${KEY}x`,
      KEY.slice(0, -1),
      hex(KEY),
    ]) {
      const res = await issue(key);
      expect(res.status).toBe(401);
      expect(res.body).toEqual({
        error: 'ERR_ATTESTATION_FAILED',
        error_description: 'static_key: the key is not accepted',
      });
    }
    const shape = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'static_key', evidence: { token: KEY }, audience: AUDIENCE },
    });
    expect(shape.status).toBe(401);
    expect(shape.body.error_description).toBe('static_key: evidence must be {"key": "<static key>"}');
    expect(await legacyMetric(b)).toBe(before);
  });

  it('does not mark credentials of other attestors legacy', async () => {
    const jt = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: 'spiffe://writ.local/modern' });
    const res = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: jt.body.token }, audience: AUDIENCE },
    });
    expect(res.status).toBe(200);
    const view = await b.admin('GET', `/v1/admin/credentials/${res.body.id}`);
    expect(view.body.legacy).toBe(false);
  });
});

describe('static_key legacy warning in the log', () => {
  let broker: Broker;
  const lines: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    const sink = new Writable({
      write(chunk, _enc, done) {
        for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line));
        done();
      },
    });
    const config = configSchema.parse({
      adminToken: `test_admin_${randomBytes(24).toString('base64url')}`,
      server: { host: '127.0.0.1', port: 0 },
      attestors: { static_key: STATIC_KEY_CONFIG },
    });
    broker = await startBroker(
      { config, mode: 'dev', source: undefined },
      { logger: createLogger('warn', sink), defaultMetrics: false },
    );
    await fetch(`${broker.url}/v1/admin/entries`, {
      method: 'POST',
      headers: { authorization: `Bearer ${config.adminToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        spiffeId: 'spiffe://writ.local/legacy/billing',
        selectors: ['static_key:id:billing-cron'],
      }),
    });
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('writes one warning per legacy credential, without the key or its hash', async () => {
    const res = await fetch(`${broker.url}/v1/svid/jwt`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ attestor: 'static_key', evidence: { key: KEY }, audience: AUDIENCE }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { id: string; token: string };
    const warnings = lines.filter(
      (l) => l.msg === 'legacy credential issued: the workload still attests with a static secret',
    );
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({
      level: 40,
      attestor: 'static_key',
      id: body.id,
      spiffeId: 'spiffe://writ.local/legacy/billing',
    });
    const all = JSON.stringify(lines);
    for (const secret of [KEY, hex(KEY), b64u(KEY), body.token]) expect(all).not.toContain(secret);
  });
});
