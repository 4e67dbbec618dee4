// The github_actions attestor over loopback HTTP: real tokens signed by a fake issuer whose JWKS the broker fetches.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { startTestBroker, type TestBroker, type TestResponse } from '../../test/helpers/broker.ts';
import { FakeOidcIssuer, githubClaims, standardAttacks } from '../../test/helpers/oidc-issuer.ts';
import { githubActionsConfigSchema } from './config.ts';

const TD = 'example.org';
const BROKER_AUD = 'https://writ.example';
const ID = `spiffe://${TD}/ci/acme/api`;

function svid(b: TestBroker, token: string, extra: Record<string, unknown> = {}): Promise<TestResponse> {
  return b.request('POST', '/v1/svid/jwt', {
    body: { attestor: 'github_actions', evidence: { token }, audience: ['https://api.example'], ...extra },
  });
}

function expectRefused(res: TestResponse, reason: RegExp): void {
  expect(res.status, JSON.stringify(res.body)).toBe(401);
  expect(res.body.error).toBe('ERR_ATTESTATION_FAILED');
  const description = res.body.error_description as string;
  expect(description.startsWith('github_actions: ')).toBe(true);
  expect(description.slice('github_actions: '.length)).toMatch(reason);
}

describe('github_actions attestor', () => {
  let gh: FakeOidcIssuer;
  let b: TestBroker;
  const claims = (o: Record<string, unknown> = {}) => githubClaims(BROKER_AUD, o);

  beforeAll(async () => {
    gh = await FakeOidcIssuer.start({ path: '/gh' });
    // No jwksUri: the broker finds the JWKS by OIDC discovery.
    b = await startTestBroker({
      config: {
        trustDomain: TD,
        attestors: { github_actions: { issuer: gh.issuer, audience: BROKER_AUD } },
      },
    });
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: ID,
      selectors: ['github_actions:repository:acme/api', 'github_actions:ref:refs/heads/main'],
    });
    expect(entry.status).toBe(201);
  });
  afterAll(async () => {
    await b?.close();
    await gh?.close();
  });

  it('exchanges a run token for a JWT-SVID in the run task, and a second token of the run joins it', async () => {
    const token = await gh.mint(claims());
    const res = await svid(b, token);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ spiffeId: ID, task: 'github:acme/api/9000001/1' });
    expect(gh.discoveryRequests).toBe(1);

    const again = await svid(b, await gh.mint(claims()), { audience: ['https://other.example'] });
    expect(again.status, JSON.stringify(again.body)).toBe(200);
    expect(again.body.task).toBe('github:acme/api/9000001/1');
    const task = await b.admin('GET', `/v1/admin/tasks/${encodeURIComponent('github:acme/api/9000001/1')}`);
    expect(task.body).toMatchObject({ status: 'active', origin: 'attestor', credentials: 2 });
    // A re-run is another task.
    const rerun = await svid(b, await gh.mint(claims({ run_attempt: '2' })));
    expect(rerun.body.task).toBe('github:acme/api/9000001/2');
  });

  it('refuses a task the caller names against the run the token binds', async () => {
    const res = await svid(b, await gh.mint(claims()), { task: 'my-own-task' });
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('ERR_TASK_MISMATCH');
  });

  it('refuses a replayed token (single use by jti)', async () => {
    const token = await gh.mint(claims({ run_id: '9000002' }));
    expect((await svid(b, token)).status).toBe(200);
    expectRefused(await svid(b, token), /^the token was already used$/);
  });

  it('spends no token on a refusal: a token refused for its claims is not marked used', async () => {
    const jti = `keep-${Date.now()}`;
    expectRefused(
      await svid(b, await gh.mint(claims({ jti, run_id: 'x' }))),
      /run_id claim must be a decimal/,
    );
    expect((await svid(b, await gh.mint(claims({ jti, run_id: '9000003' })))).status).toBe(200);
  });

  for (const attack of standardAttacks(
    () => gh,
    () => claims(),
  )) {
    it(`refuses ${attack.name} with 401`, async () => {
      expectRefused(await svid(b, await attack.token()), attack.reason);
    });
  }

  it('validates claim types and shapes', async () => {
    expectRefused(
      await svid(b, await gh.mint(claims({ repository: 42 }))),
      /^the token's repository claim must be a string$/,
    );
    expectRefused(
      await svid(b, await gh.mint(claims({ repository: undefined }))),
      /^the token lacks the repository claim$/,
    );
    expectRefused(
      await svid(b, await gh.mint(claims({ repository: 'no-slash' }))),
      /repository claim is not owner\/name/,
    );
    expectRefused(
      await svid(b, await gh.mint(claims({ run_attempt: 1 }))),
      /^the token's run_attempt claim must be a string$/,
    );
    expectRefused(
      await svid(b, await gh.mint(claims({ actor: ['a', 'b'] }))),
      /^the token's actor claim must be a string$/,
    );
    expectRefused(
      await svid(b, await gh.mint(claims({ ref: 'refs/heads/x\n' }))),
      /ref claim is not a valid selector value/,
    );
    // Absent and empty optional claims are skipped, not refused.
    const res = await svid(
      b,
      await gh.mint(claims({ environment: '', actor: undefined, run_id: '9000004' })),
    );
    expect(res.status, JSON.stringify(res.body)).toBe(200);
  });

  it('answers 403 for a verified workload that no entry matches', async () => {
    const res = await svid(b, await gh.mint(claims({ repository: 'acme/other' })));
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('ERR_NO_MATCHING_ENTRY');
  });

  it('refuses evidence of the wrong shape', async () => {
    const res = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'github_actions', evidence: { jwt: 'x' }, audience: ['a'] },
    });
    expectRefused(res, /^evidence must be \{"token": "<JWT>"\}$/);
  });
});

describe('github_actions attestor: keys and options', () => {
  it('uses a configured jwksUri and accepts a token twice when singleUse is off', async () => {
    const gh = await FakeOidcIssuer.start({ alg: 'ES256' });
    const b = await startTestBroker({
      config: {
        trustDomain: TD,
        attestors: {
          github_actions: {
            issuer: gh.issuer,
            jwksUri: gh.jwksUri,
            audience: BROKER_AUD,
            algorithms: ['ES256'],
            singleUse: false,
          },
        },
      },
    });
    try {
      await b.admin('POST', '/v1/admin/entries', {
        spiffeId: ID,
        selectors: ['github_actions:repository_id:2002'],
      });
      const token = await gh.mint(githubClaims(BROKER_AUD));
      expect((await svid(b, token)).status).toBe(200);
      expect((await svid(b, token)).status).toBe(200);
      expect(gh.discoveryRequests).toBe(0);
      expect(gh.jwksRequests).toBe(1);
    } finally {
      await b.close();
      await gh.close();
    }
  });

  it('answers 503 when the JWKS cannot be fetched or discovery names another issuer', async () => {
    const gh = await FakeOidcIssuer.start();
    gh.jwksStatus = 500;
    const other = await FakeOidcIssuer.start();
    other.discoveryIssuer = 'https://impostor.example';
    const b = await startTestBroker({
      config: { trustDomain: TD, attestors: { github_actions: { issuer: gh.issuer, audience: BROKER_AUD } } },
    });
    const b2 = await startTestBroker({
      config: {
        trustDomain: TD,
        attestors: { github_actions: { issuer: other.issuer, audience: BROKER_AUD } },
      },
    });
    try {
      const res = await svid(b, await gh.mint(githubClaims(BROKER_AUD)));
      expect(res.status).toBe(503);
      expect(res.body).toEqual({
        error: 'ERR_ATTESTOR_UNAVAILABLE',
        error_description: "github_actions: the issuer's keys could not be fetched",
      });
      const res2 = await svid(b2, await other.mint(githubClaims(BROKER_AUD)));
      expect(res2.status).toBe(503);
      expect(other.jwksRequests).toBe(0);
    } finally {
      await b.close();
      await b2.close();
      await gh.close();
      await other.close();
    }
  });
});

describe('github_actions configuration', () => {
  it('has GitHub defaults and requires an audience', () => {
    const c = githubActionsConfigSchema.parse({ audience: BROKER_AUD });
    expect(c).toMatchObject({
      issuer: 'https://token.actions.githubusercontent.com',
      algorithms: ['RS256'],
      singleUse: true,
      webhookEvents: ['workflow_run', 'workflow_job'],
    });
    expect(githubActionsConfigSchema.safeParse({}).success).toBe(false);
  });

  it('refuses HMAC algorithms, plain http off loopback, short webhook secrets and unknown keys', () => {
    const bad = [
      { audience: 'a', algorithms: ['HS256'] },
      { audience: 'a', algorithms: ['none'] },
      { audience: 'a', issuer: 'http://token.example' },
      { audience: 'a', jwksUri: 'https://u:p@token.example/jwks' },
      { audience: 'a', webhookSecret: 'short' },
      { audience: 'a', audiences: ['b'] },
    ];
    for (const input of bad)
      expect(githubActionsConfigSchema.safeParse(input).success, JSON.stringify(input)).toBe(false);
  });

  it('is enabled by its section of the broker configuration', () => {
    const config = configSchema.parse({ attestors: { github_actions: { audience: BROKER_AUD } } });
    expect(config.attestors.github_actions?.issuer).toBe('https://token.actions.githubusercontent.com');
    expect(configSchema.parse({}).attestors.github_actions).toBeUndefined();
  });
});
