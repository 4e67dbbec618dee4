// End to end over loopback HTTP: join token -> JWT-SVID -> independent verification -> introspection.
import { createPublicKey } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { FakeClock } from '../helpers/clock.ts';

const TD = 'example.org';
const WORKLOAD = `spiffe://${TD}/ci/build`;

async function joinToken(
  b: TestBroker,
  body: Record<string, unknown> = { spiffeId: WORKLOAD },
): Promise<string> {
  const res = await b.admin('POST', '/v1/admin/join-tokens', body);
  expect(res.status).toBe(201);
  return res.body.token as string;
}

function exchange(b: TestBroker, token: string, extra: Record<string, unknown> = {}) {
  return b.request('POST', '/v1/svid/jwt', {
    body: { attestor: 'join_token', evidence: { token }, audience: ['https://api.example'], ...extra },
  });
}

/** Verifies with jsonwebtoken (not jose) against the JWKS fetched over HTTP. */
async function verifyIndependently(b: TestBroker, token: string, clock: FakeClock): Promise<jwt.JwtPayload> {
  const jwks = (await b.request('GET', '/.well-known/jwks.json')).body as {
    keys: Array<Record<string, string>>;
  };
  const header = jwt.decode(token, { complete: true })?.header;
  const jwk = jwks.keys.find((k) => k.kid === header?.kid);
  expect(jwk, 'the token kid is published in the JWKS').toBeDefined();
  const publicKey = createPublicKey({ key: jwk as never, format: 'jwk' });
  return jwt.verify(token, publicKey, {
    algorithms: ['ES256'],
    audience: 'https://api.example',
    issuer: b.url,
    clockTimestamp: Math.floor(clock.now() / 1000),
  }) as jwt.JwtPayload;
}

describe.each(['memory', 'redis'] as const)('JWT-SVID issuance with the %s store', (store) => {
  let b: TestBroker;
  const clock = new FakeClock(Date.now());

  beforeAll(async () => {
    b = await startTestBroker({ store, clock: clock.clock, config: { trustDomain: TD } });
  });
  afterAll(async () => {
    await b?.close();
  });

  it('publishes discovery, JWKS and a SPIFFE bundle', async () => {
    const oidc = await b.request('GET', '/.well-known/openid-configuration');
    expect(oidc.status).toBe(200);
    expect(oidc.body.issuer).toBe(b.url);
    expect(oidc.body.jwks_uri).toBe(`${b.url}/.well-known/jwks.json`);
    const jwks = await b.request('GET', '/.well-known/jwks.json');
    // The signing key, then the next key (published before it signs: see test/e2e/rotation.e2e.test.ts).
    expect(jwks.body.keys).toHaveLength(2);
    const key = jwks.body.keys[0];
    expect(key.kid).toBe(b.broker.deps.keys.current().kid);
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(key.d).toBeUndefined();
    const bundle = await b.request('GET', '/v1/bundle');
    expect(bundle.body.spiffe_sequence).toBeGreaterThanOrEqual(1);
    expect(bundle.body.spiffe_refresh_hint).toBe(300);
    // The JWT-SVID keys, beside the X.509 authorities (test/e2e/x509.e2e.test.ts checks those).
    expect(bundle.body.keys.filter((k: { use: string }) => k.use !== 'x509-svid')).toEqual(
      jwks.body.keys.map((k: Record<string, string>) => ({
        kty: 'EC',
        crv: 'P-256',
        x: k.x,
        y: k.y,
        kid: k.kid,
        use: 'jwt-svid',
      })),
    );
    expect(bundle.body.keys.map((k: { use: string }) => k.use)).toEqual([
      'x509-svid',
      'x509-svid',
      'jwt-svid',
      'jwt-svid',
    ]);
  });

  it('exchanges a join token for a JWT-SVID that an independent library verifies', async () => {
    const token = await joinToken(b);
    const res = await exchange(b, token);
    expect(res.status).toBe(200);
    expect(Object.keys(res.body).sort()).toEqual(['expiresAt', 'id', 'spiffeId', 'task', 'token']);
    expect(res.body.spiffeId).toBe(WORKLOAD);
    const claims = await verifyIndependently(b, res.body.token, clock);
    const header = jwt.decode(res.body.token, { complete: true })!.header;
    expect(header.alg).toBe('ES256');
    expect(header.typ).toBe('JWT');
    expect(header.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(claims.sub).toBe(WORKLOAD);
    expect(claims.aud).toEqual(['https://api.example']);
    expect(claims.iss).toBe(b.url);
    expect(claims.jti).toBe(res.body.id);
    expect(claims.task).toBe(res.body.task);
    expect(claims.exp! - claims.iat!).toBe(300);
    expect(res.body.expiresAt).toBe(claims.exp);
  });

  it('accepts a join token once', async () => {
    const token = await joinToken(b);
    expect((await exchange(b, token)).status).toBe(200);
    const again = await exchange(b, token);
    expect(again.status).toBe(401);
    expect(again.body.error).toBe('ERR_ATTESTATION_FAILED');
    expect(again.body.token).toBeUndefined();
  });

  it('refuses an expired join token', async () => {
    const token = await joinToken(b, { spiffeId: WORKLOAD, ttl: 60 });
    clock.advance(61_000);
    const res = await exchange(b, token);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({
      error: 'ERR_ATTESTATION_FAILED',
      error_description: 'join_token: the join token is invalid, used or expired',
    });
  });

  it('honours a requested ttl and binds the credential to a requested task', async () => {
    const res = await exchange(b, await joinToken(b), { ttl: 42, task: 'build-1234' });
    expect(res.status).toBe(200);
    const claims = await verifyIndependently(b, res.body.token, clock);
    expect(claims.exp! - claims.iat!).toBe(42);
    expect(claims.task).toBe('build-1234');
  });

  it('binds credentials to the task a join token was made for', async () => {
    const token = await joinToken(b, { spiffeId: WORKLOAD, task: 'deploy:7' });
    const mismatch = await exchange(b, token, { task: 'other' });
    expect(mismatch.status).toBe(403);
    expect(mismatch.body.error).toBe('ERR_TASK_MISMATCH');
    const res = await exchange(b, await joinToken(b, { spiffeId: WORKLOAD, task: 'deploy:7' }));
    expect(res.body.task).toBe('deploy:7');
  });

  it('caps the ttl with the registration entry and enforces its audiences', async () => {
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: `spiffe://${TD}/capped`,
      selectors: [`join_token:spiffe_id:spiffe://${TD}/capped`],
      audiences: ['https://api.example'],
      jwtTtl: 30,
    });
    expect(entry.status).toBe(201);
    const jt = () => joinToken(b, { spiffeId: `spiffe://${TD}/capped` });
    const capped = await exchange(b, await jt(), { ttl: 600 });
    expect(capped.status).toBe(200);
    const claims = await verifyIndependently(b, capped.body.token, clock);
    expect(claims.exp! - claims.iat!).toBe(30);
    const refused = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: await jt() }, audience: ['https://elsewhere'] },
    });
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe('ERR_AUDIENCE_NOT_ALLOWED');
  });

  it('introspects a live token as active with its claims', async () => {
    const issued = (await exchange(b, await joinToken(b))).body;
    for (const encoding of ['form', 'json'] as const) {
      const res =
        encoding === 'form'
          ? await b.request('POST', '/v1/introspect', {
              raw: `token=${issued.token}`,
              headers: {
                authorization: `Bearer ${b.adminToken}`,
                'content-type': 'application/x-www-form-urlencoded',
              },
            })
          : await b.request('POST', '/v1/introspect', {
              body: { token: issued.token },
              headers: { authorization: `Bearer ${b.adminToken}` },
            });
      expect(res.status).toBe(200);
      const claims = await verifyIndependently(b, issued.token, clock);
      expect(res.body).toEqual({
        active: true,
        token_type: 'JWT-SVID',
        iss: b.url,
        sub: WORKLOAD,
        spiffe_id: WORKLOAD,
        aud: ['https://api.example'],
        exp: claims.exp,
        iat: claims.iat,
        jti: issued.id,
        task: issued.task,
      });
    }
  });

  it('introspects forged, tampered and expired tokens as inactive', async () => {
    const issued = (await exchange(b, await joinToken(b), { ttl: 5 })).body;
    const [h, p, s] = (issued.token as string).split('.');
    const payload = JSON.parse(Buffer.from(p!, 'base64url').toString());
    const tampered = `${h}.${Buffer.from(JSON.stringify({ ...payload, sub: `spiffe://${TD}/admin` })).toString('base64url')}.${s}`;
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${p}.`;
    for (const token of ['garbage', tampered, none, `${h}.${p}.AAAA`]) {
      const res = await b.request('POST', '/v1/introspect', {
        body: { token },
        headers: { authorization: `Bearer ${b.adminToken}` },
      });
      expect(res.status).toBe(200);
      expect(res.body).toEqual({ active: false });
    }
    clock.advance(6_000);
    const expired = await b.request('POST', '/v1/introspect', {
      body: { token: issued.token },
      headers: { authorization: `Bearer ${b.adminToken}` },
    });
    expect(expired.body).toEqual({ active: false });
  });

  it('requires the admin token for introspection and admin routes', async () => {
    for (const authorization of [
      undefined,
      'Bearer wrong',
      `Basic ${b.adminToken}`,
      `Bearer ${b.adminToken}x`,
    ]) {
      const headers: Record<string, string> = authorization ? { authorization } : {};
      const intro = await b.request('POST', '/v1/introspect', { body: { token: 'x' }, headers });
      expect(intro.status).toBe(401);
      expect(intro.body.error).toBe('ERR_ADMIN_UNAUTHENTICATED');
      const entries = await b.request('GET', '/v1/admin/entries', { headers });
      expect(entries.status).toBe(401);
      const jt = await b.request('POST', '/v1/admin/join-tokens', { body: { spiffeId: WORKLOAD }, headers });
      expect(jt.status).toBe(401);
    }
  });

  it('serves health, readiness and metrics', async () => {
    expect((await b.request('GET', '/healthz')).body).toEqual({ status: 'ok' });
    expect((await b.request('GET', '/readyz')).body).toEqual({
      status: 'ready',
      checks: { keys: 'ok', store: 'ok' },
    });
    const metrics = await b.request('GET', '/metrics');
    expect(metrics.text).toMatch(/writ_svid_issued_total\{type="jwt",attestor="join_token"\} \d+/);
    expect(metrics.text).toContain('writ_svid_issuance_duration_seconds_bucket');
  });
});
