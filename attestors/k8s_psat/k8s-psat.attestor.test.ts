// The k8s_psat attestor over loopback HTTP: projected tokens of two clusters, made by the tests.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.ts';
import { MemoryStore } from '../../src/store/memory/memory.store.ts';
import { startTestBroker, type TestBroker, type TestResponse } from '../../test/helpers/broker.ts';
import { FakeOidcIssuer, k8sClaims, standardAttacks } from '../../test/helpers/oidc-issuer.ts';
import { k8sPsatConfigSchema } from './config.ts';
import { k8sPsatPlugin } from './index.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/ns/payments/sa/api`;
const POD_UID = '3f2e1d0c-9b8a-4766-8544-332211009988';

function svid(b: TestBroker, token: string): Promise<TestResponse> {
  return b.request('POST', '/v1/svid/jwt', {
    body: { attestor: 'k8s_psat', evidence: { token }, audience: ['https://api.example'] },
  });
}

function expectRefused(res: TestResponse, reason: RegExp): void {
  expect(res.status, JSON.stringify(res.body)).toBe(401);
  expect(res.body.error).toBe('ERR_ATTESTATION_FAILED');
  const description = res.body.error_description as string;
  expect(description.startsWith('k8s_psat: ')).toBe(true);
  expect(description.slice('k8s_psat: '.length)).toMatch(reason);
}

describe('k8s_psat attestor', () => {
  let prod: FakeOidcIssuer;
  let staging: FakeOidcIssuer;
  let strict: FakeOidcIssuer;
  let b: TestBroker;
  // The broker's issuer URL is the default audience; it is known once the broker listens.
  const claims = (o: Record<string, unknown> = {}, pod: Parameters<typeof k8sClaims>[2] = {}) =>
    k8sClaims(b.url, o, pod);

  beforeAll(async () => {
    prod = await FakeOidcIssuer.start();
    staging = await FakeOidcIssuer.start({ alg: 'ES256' });
    strict = await FakeOidcIssuer.start();
    b = await startTestBroker({
      config: {
        trustDomain: TD,
        attestors: {
          k8s_psat: {
            clusters: [
              // An inline JWKS, as for a cluster whose API server the broker cannot reach.
              { name: 'prod', issuer: prod.issuer, jwks: prod.jwks() },
              // The same issuer name as prod (both clusters left the default), other keys: told apart by key.
              { name: 'staging', issuer: prod.issuer, jwksUri: staging.jwksUri },
              { name: 'strict', issuer: strict.issuer, audience: 'writ', singleUse: true },
            ],
          },
        },
      },
    });
    for (const [spiffeId, selectors] of [
      [ID, ['k8s_psat:cluster:prod', 'k8s_psat:namespace:payments', 'k8s_psat:service_account:api']],
      [`${ID}/staging`, ['k8s_psat:cluster:staging', 'k8s_psat:namespace:payments']],
      [`${ID}/strict`, ['k8s_psat:cluster:strict']],
    ] as const) {
      expect((await b.admin('POST', '/v1/admin/entries', { spiffeId, selectors })).status).toBe(201);
    }
  });
  afterAll(async () => {
    await b?.close();
    for (const i of [prod, staging, strict]) await i?.close();
  });

  it('attests a pod: selectors from the kubernetes.io claim, the pod as task, the same token reusable', async () => {
    const token = await prod.mint(claims());
    const res = await svid(b, token);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ spiffeId: ID, task: `k8s:prod/${POD_UID}` });
    // A pod reads the same token file until kubelet rotates it: not single-use by default.
    const again = await svid(b, token);
    expect(again.status).toBe(200);
    expect(again.body.task).toBe(`k8s:prod/${POD_UID}`);
    const cred = await b.admin('GET', `/v1/admin/credentials/${res.body.id}`);
    expect(cred.body.attestor).toBe('k8s_psat');
  });

  it('tells clusters that share an issuer name apart by their keys', async () => {
    const res = await svid(b, await staging.mint(claims({ iss: prod.issuer })));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ spiffeId: `${ID}/staging`, task: `k8s:staging/${POD_UID}` });
  });

  it('works without node info (before ServiceAccountTokenPodNodeInfo)', async () => {
    const res = await svid(
      b,
      await prod.mint(claims({}, { node: null, uid: 'aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee' })),
    );
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  });

  it('refuses legacy (secret-based) tokens, even signed by the cluster key', async () => {
    const legacy = {
      iss: 'kubernetes/serviceaccount',
      sub: 'system:serviceaccount:payments:api',
      'kubernetes.io/serviceaccount/namespace': 'payments',
      'kubernetes.io/serviceaccount/secret.name': 'api-token-x7k2p',
      'kubernetes.io/serviceaccount/service-account.name': 'api',
      'kubernetes.io/serviceaccount/service-account.uid': '7a1c7f5e-1b0d-4c3e-9f5a-2b8d6e4c1a90',
      iat: undefined,
      nbf: undefined,
      exp: undefined,
      jti: undefined,
      aud: undefined,
    };
    expectRefused(await svid(b, await prod.mint(legacy)), /legacy tokens are refused/);
    // The legacy issuer with an expiry, or the cluster's issuer without one or without kubernetes.io.
    expectRefused(
      await svid(b, await prod.mint({ ...legacy, exp: Math.floor(Date.now() / 1000) + 60 })),
      /legacy/,
    );
    expectRefused(await svid(b, await prod.mint(claims({ exp: undefined }))), /legacy/);
    expectRefused(await svid(b, await prod.mint(claims({ 'kubernetes.io': undefined }))), /legacy/);
  });

  it('refuses tokens not bound to a pod, inconsistent or malformed kubernetes.io claims', async () => {
    const base = claims();
    const k8s = base['kubernetes.io'] as Record<string, unknown>;
    const { pod: _pod, ...unbound } = k8s;
    expectRefused(
      await svid(b, await prod.mint({ ...base, 'kubernetes.io': unbound })),
      /^the token is not bound to a pod$/,
    );
    expectRefused(
      await svid(
        b,
        await prod.mint({ ...base, 'kubernetes.io': { ...k8s, pod: { name: 'p', uid: 'not-a-uid' } } }),
      ),
      /^the token names an invalid pod$/,
    );
    expectRefused(
      await svid(b, await prod.mint({ ...base, 'kubernetes.io': { ...k8s, namespace: 'Bad_NS' } })),
      /^the token has an invalid kubernetes.io claim$/,
    );
    expectRefused(
      await svid(b, await prod.mint({ ...base, sub: 'system:serviceaccount:kube-system:admin' })),
      /^the token subject does not match its service account$/,
    );
  });

  it('refuses a replay where the cluster is single-use, and a token for another audience', async () => {
    const token = await strict.mint(k8sClaims('writ'));
    expect((await svid(b, token)).status).toBe(200);
    expectRefused(await svid(b, token), /^the token was already used$/);
    // Audience defaults to the broker's issuer URL: the API server's own audience is refused.
    expectRefused(
      await svid(b, await prod.mint(claims({ aud: ['https://kubernetes.default.svc'] }))),
      /audience/,
    );
  });

  for (const attack of standardAttacks(
    () => prod,
    () => claims(),
    {
      wrongAudience: ['https://someone-else.example'],
      reasons: {
        wrong_issuer: /^the token issuer is not a configured cluster$/,
        no_exp: /legacy tokens are refused/,
      },
    },
  )) {
    it(`refuses ${attack.name} with 401`, async () => {
      expectRefused(await svid(b, await attack.token()), attack.reason);
    });
  }
});

describe('k8s_psat configuration', () => {
  const cluster = (o: Record<string, unknown> = {}) => ({
    name: 'prod',
    issuer: 'https://k8s.example',
    ...o,
  });

  it('defaults: not single-use, RS256 and ES256, audience from the broker', () => {
    const c = k8sPsatConfigSchema.parse({ clusters: [cluster()] });
    expect(c.clusters[0]).toMatchObject({ singleUse: false, algorithms: ['RS256', 'ES256'], clockSkew: 30 });
    expect(c.clusters[0]?.audience).toBeUndefined();
  });

  it('refuses ambiguous or unsafe clusters', () => {
    const bad = [
      { clusters: [] },
      { clusters: [cluster(), cluster()] },
      { clusters: [cluster({ name: 'Prod_1' })] },
      {
        clusters: [
          cluster({
            jwksUri: 'https://k8s.example/jwks',
            jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b' }] },
          }),
        ],
      },
      {
        clusters: [cluster({ jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b', d: 'private' }] } })],
      },
      { clusters: [cluster({ issuer: 'http://10.0.0.1:6443' })] },
      { clusters: [cluster({ algorithms: ['HS256'] })] },
    ];
    for (const input of bad)
      expect(k8sPsatConfigSchema.safeParse(input).success, JSON.stringify(input)).toBe(false);
  });

  it('needs an audience when the broker issuer is unknown', () => {
    const host = {
      store: new MemoryStore({ clock: Date.now }),
      clock: Date.now,
      logger: createLogger('silent'),
      trustDomain: TD,
    };
    const config = k8sPsatConfigSchema.parse({
      clusters: [cluster({ jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'a', y: 'b' }] } })],
    });
    expect(() => k8sPsatPlugin.create(config, host)).toThrow(/audience: required/);
    expect(() => k8sPsatPlugin.create(config, { ...host, issuer: 'https://writ.example' })).not.toThrow();
  });
});
