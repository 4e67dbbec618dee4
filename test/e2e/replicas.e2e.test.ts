// Replicas sharing one Redis: one signing key, one view of credentials and of registration entries.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { uniquePrefix } from '../helpers/redis.ts';

const STATIC_KEY = 'replica-test-static-key-0123456789';

describe('two replicas on one Redis', () => {
  let a: TestBroker;
  let b: TestBroker;
  beforeAll(async () => {
    const prefix = uniquePrefix('replicas');
    const issuer = 'https://writ.example.org';
    const config = {
      trustDomain: 'example.org',
      issuer,
      redis: { prefix },
      attestors: {
        static_key: { keys: [{ id: 'app', sha256: createHash('sha256').update(STATIC_KEY).digest('hex') }] },
      },
    };
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

  // Each replica keeps the entries in process; every issuance checks their version in Redis first.
  const staticSvid = (b: TestBroker, audience: string[] = ['x']) =>
    b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'static_key', evidence: { key: STATIC_KEY }, audience },
    });

  it('stop issuing at once on one replica for an entry deleted on the other', async () => {
    const created = await a.admin('POST', '/v1/admin/entries', {
      spiffeId: 'spiffe://example.org/cached',
      selectors: ['static_key:id:app'],
    });
    expect(created.status).toBe(201);
    // B reads (and caches) the entries, twice.
    expect((await staticSvid(b)).status).toBe(200);
    expect((await staticSvid(b)).status).toBe(200);
    expect((await a.admin('DELETE', `/v1/admin/entries/${created.body.id}`)).status).toBe(204);
    const refused = await staticSvid(b);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe('ERR_NO_MATCHING_ENTRY');
    expect(refused.body.token).toBeUndefined();
  });

  it('apply at once on one replica an entry changed on the other', async () => {
    const created = await a.admin('POST', '/v1/admin/entries', {
      spiffeId: 'spiffe://example.org/changed',
      selectors: ['static_key:id:app'],
    });
    expect(created.status).toBe(201);
    expect((await staticSvid(b, ['y'])).status).toBe(200);
    const updated = await a.admin('PUT', `/v1/admin/entries/${created.body.id}`, {
      spiffeId: 'spiffe://example.org/changed',
      selectors: ['static_key:id:app'],
      audiences: ['x'],
    });
    expect(updated.status).toBe(200);
    const refused = await staticSvid(b, ['y']);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe('ERR_AUDIENCE_NOT_ALLOWED');
    const allowed = await staticSvid(b, ['x']);
    expect(allowed.status).toBe(200);
    expect(allowed.body.spiffeId).toBe('spiffe://example.org/changed');
  });
});
