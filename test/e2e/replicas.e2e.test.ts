// Replicas sharing one Redis: one signing key, one view of credentials.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { uniquePrefix } from '../helpers/redis.ts';

describe('two replicas on one Redis', () => {
  let a: TestBroker;
  let b: TestBroker;
  beforeAll(async () => {
    const prefix = uniquePrefix('replicas');
    const issuer = 'https://writ.example.org';
    const config = { trustDomain: 'example.org', issuer, redis: { prefix } };
    [a, b] = await Promise.all([
      startTestBroker({ store: 'redis', config }),
      startTestBroker({ store: 'redis', config }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
  });

  it('sign with the same key, and one introspects what the other issued', async () => {
    const jwksA = (await a.request('GET', '/.well-known/jwks.json')).body;
    const jwksB = (await b.request('GET', '/.well-known/jwks.json')).body;
    expect(jwksA).toEqual(jwksB);

    // The admin tokens differ per test broker; each replica uses its own.
    const jt = (await a.admin('POST', '/v1/admin/join-tokens', { spiffeId: 'spiffe://example.org/w' })).body
      .token;
    const issued = await a.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: jt }, audience: ['x'] },
    });
    expect(issued.status).toBe(200);
    // The join token made on A was consumed; B refuses it.
    const replay = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: jt }, audience: ['x'] },
    });
    expect(replay.status).toBe(401);
    const intro = await b.request('POST', '/v1/introspect', {
      body: { token: issued.body.token },
      headers: { authorization: `Bearer ${b.adminToken}` },
    });
    expect(intro.body).toMatchObject({ active: true, jti: issued.body.id, iss: 'https://writ.example.org' });
  });
});
