// Restart the broker and a crashed Redis (AOF on, fsync always): no credential and no revocation is lost.
import { afterAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { uniquePrefix } from '../helpers/redis.ts';
import { type RedisServer, restartRedisServer, startRedisServer } from '../helpers/redis-server.ts';
import { waitFor } from '../helpers/wait.ts';
import { introspectActive, issueSvid, type Svid } from '../helpers/workload.ts';

const TD = 'example.org';

describe('broker restart over Redis with AOF', () => {
  let redis: RedisServer | undefined;
  let b: TestBroker | undefined;
  afterAll(async () => {
    await b?.close();
    await redis?.stop();
  });

  it('keeps every credential, every revocation and the signing key', async () => {
    redis = await startRedisServer({ appendonly: true });
    const prefix = uniquePrefix('aof');
    const config = { trustDomain: TD, issuer: 'https://writ.example', redis: { url: redis.url, prefix } };
    b = await startTestBroker({ store: 'redis', config });
    const kept: Svid[] = [];
    for (let i = 0; i < 3; i++) kept.push(await issueSvid(b, `spiffe://${TD}/keep`, { task: 'keep' }));
    const ended: Svid[] = [];
    for (let i = 0; i < 3; i++) ended.push(await issueSvid(b, `spiffe://${TD}/gone`, { task: 'gone' }));
    expect((await b.admin('POST', '/v1/admin/tasks/gone/revoke', { reason: 'incident' })).status).toBe(202);
    expect((await b.admin('POST', `/v1/admin/credentials/${kept[0]!.id}/revoke`)).status).toBe(200);
    const b1 = b;
    await waitFor(
      async () =>
        (await b1.admin('GET', `/v1/admin/credentials/${ended[2]!.id}`)).body.revokedAt !== undefined,
      {
        what: 'fan-out',
      },
    );
    const feedBefore = (await b.request('GET', '/v1/revocations')).body.events;
    const jwksBefore = (await b.request('GET', '/.well-known/jwks.json')).body;
    expect(feedBefore).toHaveLength(1 + 3 + 1);

    await b.close();
    b = undefined;
    const { port, dir } = redis;
    redis.kill();
    redis = await restartRedisServer({ appendonly: true, port, dir });
    b = await startTestBroker({ store: 'redis', config });

    expect((await b.request('GET', '/.well-known/jwks.json')).body).toEqual(jwksBefore);
    expect((await b.request('GET', '/v1/revocations')).body.events).toEqual(feedBefore);
    expect(await introspectActive(b, kept[0]!.token)).toBe(false);
    for (const s of kept.slice(1)) expect(await introspectActive(b, s.token)).toBe(true);
    for (const s of ended) expect(await introspectActive(b, s.token)).toBe(false);
    const listed = (await b.admin('GET', '/v1/admin/credentials?limit=100')).body.items;
    expect(listed.map((c: { id: string }) => c.id).sort()).toEqual(
      [...kept, ...ended].map((s) => s.id).sort(),
    );
    expect((await b.admin('GET', '/v1/admin/tasks/gone')).body).toMatchObject({
      status: 'revoked',
      endReason: 'incident',
    });
  });
});
