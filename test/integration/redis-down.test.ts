// Fail closed: with Redis down, nothing is issued and nothing unverifiable is accepted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { type RedisServer, restartRedisServer, startRedisServer } from '../helpers/redis-server.ts';

describe('broker with Redis down', () => {
  let redis: RedisServer;
  let b: TestBroker;
  let b2: TestBroker | undefined;

  beforeAll(async () => {
    redis = await startRedisServer();
    b = await startTestBroker({
      store: 'redis',
      config: { trustDomain: 'example.org', redis: { url: redis.url, commandTimeoutMs: 500 } },
    });
  });
  afterAll(async () => {
    console.log('a');
    await b?.close();
    console.log('b');
    await b2?.close();
    console.log('c');
    await redis?.stop();
    console.log('d');
  });

  it('answers 503 to issuance and introspection, returns no token, and recovers when Redis returns', async () => {
    const jt = (await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: 'spiffe://example.org/w' })).body
      .token;
    const issued = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: jt }, audience: ['a'] },
    });
    expect(issued.status).toBe(200);
    const jt2 = (await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: 'spiffe://example.org/w' })).body
      .token;

    redis.kill();
    await new Promise((r) => setTimeout(r, 200));

    const started = Date.now();
    const res = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: jt2 }, audience: ['a'] },
    });
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(res.status).toBe(503);
    expect(res.body).toEqual({
      error: 'ERR_STORE_UNAVAILABLE',
      error_description: 'the credential store is unavailable; nothing was issued',
    });
    expect(res.text).not.toMatch(/eyJ/);

    const intro = await b.request('POST', '/v1/introspect', {
      body: { token: issued.body.token },
      headers: { authorization: `Bearer ${b.adminToken}` },
    });
    expect(intro.status).toBe(503);
    expect(intro.body.active).toBeUndefined();

    const ready = await b.request('GET', '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.checks.store).toBe('failing');
    expect((await b.request('GET', '/healthz')).status).toBe(200);

    // Redis comes back on the same port: the broker reconnects and issues again.
    redis = await restartRedisServer({ port: redis.port });
    const deadline = Date.now() + 10_000;
    while ((await b.request('GET', '/readyz')).status !== 200) {
      if (Date.now() > deadline) throw new Error('the broker did not reconnect to Redis');
      await new Promise((r) => setTimeout(r, 100));
    }
    const jt3 = (await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: 'spiffe://example.org/w' })).body
      .token;
    const again = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: jt3 }, audience: ['a'] },
    });
    expect(again.status).toBe(200);
  });

  it('refuses to start when Redis is unreachable', async () => {
    const gone = await startRedisServer();
    await gone.stop();
    await expect(
      startTestBroker({ store: 'redis', config: { redis: { url: gone.url, commandTimeoutMs: 200 } } }).then(
        (x) => {
          b2 = x;
        },
      ),
    ).rejects.toThrow();
  });
});
