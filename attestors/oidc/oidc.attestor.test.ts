// The oidc attestor over loopback HTTP: a GitLab-preset issuer and a generic one, tokens made by the tests.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker, type TestResponse } from '../../test/helpers/broker.ts';
import { FakeOidcIssuer, gitlabClaims, standardAttacks } from '../../test/helpers/oidc-issuer.ts';
import { oidcConfigSchema, resolveIssuers, taskNamespaceOf } from './config.ts';
import { expandTaskTemplate, parseTaskTemplate, type TaskTemplate } from './template.ts';

const TD = 'example.org';
const AUD = 'https://writ.example';
const GITLAB_ID = `spiffe://${TD}/ci/gitlab/api`;
const CORP_ID = `spiffe://${TD}/corp/admins`;

function svid(b: TestBroker, token: string, extra: Record<string, unknown> = {}): Promise<TestResponse> {
  return b.request('POST', '/v1/svid/jwt', {
    body: { attestor: 'oidc', evidence: { token }, audience: ['https://api.example'], ...extra },
  });
}

function expectRefused(res: TestResponse, reason: RegExp): void {
  expect(res.status, JSON.stringify(res.body)).toBe(401);
  expect(res.body.error).toBe('ERR_ATTESTATION_FAILED');
  const description = res.body.error_description as string;
  expect(description.startsWith('oidc: ')).toBe(true);
  expect(description.slice('oidc: '.length)).toMatch(reason);
}

describe('oidc attestor', () => {
  let gitlab: FakeOidcIssuer;
  let corp: FakeOidcIssuer;
  let b: TestBroker;
  const glClaims = (o: Record<string, unknown> = {}) => gitlabClaims(AUD, o);

  beforeAll(async () => {
    gitlab = await FakeOidcIssuer.start({ path: '/gitlab' });
    corp = await FakeOidcIssuer.start({ alg: 'ES256' });
    b = await startTestBroker({
      config: {
        trustDomain: TD,
        attestors: {
          oidc: {
            issuers: [
              // The preset's claim mapping and task template; a self-hosted GitLab's issuer, found by discovery.
              { name: 'gitlab', preset: 'gitlab', issuer: gitlab.issuer, audience: AUD },
              {
                name: 'corp',
                issuer: corp.issuer,
                jwks: corp.jwks(),
                audience: AUD,
                algorithms: ['ES256'],
                claimSelectors: { groups: 'group', email: 'email', project_path: 'project_path' },
                singleUse: false,
              },
            ],
          },
        },
      },
    });
    for (const [spiffeId, selectors] of [
      [GITLAB_ID, ['oidc:issuer:gitlab', 'oidc:project_path:acme/platform/api', 'oidc:ref_protected:true']],
      [CORP_ID, ['oidc:issuer:corp', 'oidc:group:admins']],
    ] as const) {
      expect((await b.admin('POST', '/v1/admin/entries', { spiffeId, selectors })).status).toBe(201);
    }
  });
  afterAll(async () => {
    await b?.close();
    await gitlab?.close();
    await corp?.close();
  });

  it('maps GitLab CI claims by the preset and names the pipeline task', async () => {
    const res = await svid(b, await gitlab.mint(glClaims()));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ spiffeId: GITLAB_ID, task: 'gitlab:acme/platform/api/5512' });
    // Another job of the pipeline (its own token) joins the task.
    const job2 = await svid(b, await gitlab.mint(glClaims({ job_id: '88002' })));
    expect(job2.body.task).toBe('gitlab:acme/platform/api/5512');
  });

  it('maps array claims to one selector each, and uses an inline JWKS', async () => {
    const res = await svid(
      b,
      await corp.mint({ aud: AUD, groups: ['staff', 'admins'], email: 'a@corp.example' }),
    );
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.spiffeId).toBe(CORP_ID);
    // No template: the broker generates the task.
    expect(res.body.task).toMatch(/^task-/);
    expect(corp.jwksRequests + corp.discoveryRequests).toBe(0);
  });

  it('scopes identities by issuer: a token of another issuer with the same claims matches nothing', async () => {
    const res = await svid(
      b,
      await corp.mint({ aud: AUD, project_path: 'acme/platform/api', ref_protected: 'true' }),
    );
    expect(res.status).toBe(403);
    expect(res.body.error).toBe('ERR_NO_MATCHING_ENTRY');
  });

  it('accepts a token again when singleUse is off, and refuses a replay when it is on', async () => {
    const corpToken = await corp.mint({ aud: AUD, groups: 'admins' });
    expect((await svid(b, corpToken)).status).toBe(200);
    expect((await svid(b, corpToken)).status).toBe(200);
    const glToken = await gitlab.mint(glClaims({ pipeline_id: '6001' }));
    expect((await svid(b, glToken)).status).toBe(200);
    expectRefused(await svid(b, glToken), /^the token was already used$/);
  });

  for (const attack of standardAttacks(
    () => gitlab,
    () => glClaims(),
    { reasons: { garbage: /^the token issuer is not accepted$/ } },
  )) {
    it(`refuses ${attack.name} with 401`, async () => {
      expectRefused(await svid(b, await attack.token()), attack.reason);
    });
  }

  it('refuses a token of an issuer signed with the keys of another configured issuer', async () => {
    expectRefused(
      await svid(b, await gitlab.mint({ aud: AUD, iss: corp.issuer, groups: 'admins' })),
      /signature is invalid|algorithm is not allowed/,
    );
  });

  it('refuses claims that cannot name the task or be selector values', async () => {
    expectRefused(
      await svid(b, await gitlab.mint(glClaims({ pipeline_id: { id: 1 } }))),
      /pipeline_id claim has an unsupported type/,
    );
    expectRefused(
      await svid(b, await gitlab.mint(glClaims({ pipeline_id: true }))),
      /pipeline_id claim cannot name the task/,
    );
    expectRefused(
      await svid(b, await gitlab.mint(glClaims({ pipeline_id: undefined }))),
      /pipeline_id claim cannot name the task/,
    );
    expectRefused(
      await svid(b, await gitlab.mint(glClaims({ project_path: 'acme/plat form' }))),
      /do not make a valid task id/,
    );
    expectRefused(
      await svid(b, await gitlab.mint(glClaims({ ref: { x: 1 } }))),
      /ref claim has an unsupported type/,
    );
    expectRefused(
      await svid(b, await corp.mint({ aud: AUD, groups: Array(33).fill('g') })),
      /groups claim has too many values/,
    );
    // A number is as good as a string for a template.
    const res = await svid(b, await gitlab.mint(glClaims({ pipeline_id: 7001 })));
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.task).toBe('gitlab:acme/platform/api/7001');
  });
});

describe('oidc task templates', () => {
  const tpl = (s: string) => parseTaskTemplate(s) as TaskTemplate;

  it('parses placeholders and refuses malformed templates', () => {
    expect(tpl('gitlab:{project_path}/{pipeline_id}')).toMatchObject({
      namespace: 'gitlab',
      literalPrefix: 'gitlab:',
      parts: [{ literal: 'gitlab:' }, { claim: 'project_path' }, { literal: '/' }, { claim: 'pipeline_id' }],
    });
    for (const bad of [
      '{ns}:x',
      'Gitlab:{a}',
      'gitlab:{a',
      'gitlab:a}',
      'gitlab:}{a}',
      'gitlab:no-claims',
      'gitlab:{a b}',
      'gitlab:{a} x',
    ]) {
      expect(typeof parseTaskTemplate(bad), bad).toBe('string');
    }
  });

  it('expands only strings and non-negative integers into a valid task id', () => {
    const t = tpl('ci:{project}/{run}');
    expect(expandTaskTemplate(t, { project: 'a/b', run: 12 })).toBe('ci:a/b/12');
    for (const run of [true, -1, 1.5, '', null, ['x'], { a: 1 }, undefined]) {
      expect(() => expandTaskTemplate(t, { project: 'a', run }), JSON.stringify(run)).toThrow(
        /cannot name the task/,
      );
    }
    expect(() => expandTaskTemplate(t, { project: 'a{b}', run: 1 })).toThrow(/valid task id/);
    expect(() => expandTaskTemplate(t, { project: 'x'.repeat(200), run: 1 })).toThrow(/valid task id/);
  });
});

describe('oidc configuration', () => {
  const issuer = (o: Record<string, unknown>) => ({
    name: 'i',
    issuer: 'https://issuer.example',
    audience: AUD,
    ...o,
  });
  const problems = (issuers: unknown[]) => {
    const r = oidcConfigSchema.safeParse({ issuers });
    return r.success ? [] : r.error.issues.map((i) => i.message);
  };

  it('applies the gitlab preset: gitlab.com, the GitLab claims and task gitlab:<project_path>/<pipeline_id>', () => {
    const config = oidcConfigSchema.parse({ issuers: [{ name: 'gitlab', preset: 'gitlab', audience: AUD }] });
    const [gitlab] = resolveIssuers(config);
    expect(gitlab).toMatchObject({ issuer: 'https://gitlab.com', algorithms: ['RS256'], singleUse: true });
    expect(Object.keys(gitlab!.claimSelectors)).toEqual(
      expect.arrayContaining([
        'namespace_path',
        'project_path',
        'project_id',
        'ref',
        'ref_type',
        'ref_protected',
        'environment',
        'pipeline_source',
        'user_login',
        'job_id',
        'pipeline_id',
      ]),
    );
    expect(gitlab!.template?.source).toBe('gitlab:{project_path}/{pipeline_id}');
    expect(taskNamespaceOf(resolveIssuers(config))).toBe('gitlab');
  });

  it('refuses ambiguous or unsafe configurations', () => {
    expect(problems([issuer({ issuer: undefined })])).toEqual([expect.stringMatching(/issuer is required/)]);
    expect(problems([issuer({}), issuer({ issuer: 'https://other.example' })])).toEqual([
      expect.stringMatching(/names must be distinct/),
    ]);
    expect(problems([issuer({}), issuer({ name: 'j' })])).toEqual([
      expect.stringMatching(/issuer URL may be configured once/),
    ]);
    expect(problems([issuer({ taskTemplate: 'github:{repository}/{run_id}' })])[0]).toMatch(
      /belongs to another attestor/,
    );
    expect(problems([issuer({ taskTemplate: 'k8s:{pod}' })])[0]).toMatch(/belongs to another attestor/);
    expect(problems([issuer({ claimSelectors: { iss: 'issuer' } })]).length).toBe(1);
    expect(problems([issuer({ algorithms: ['HS256'] })]).length).toBe(1);
    expect(
      problems([
        issuer({
          jwksUri: 'https://issuer.example/jwks',
          jwks: { keys: [{ kty: 'RSA', n: 'x', e: 'AQAB' }] },
        }),
      ])[0],
    ).toMatch(/not both/);
    expect(
      problems([issuer({ jwks: { keys: [{ kty: 'RSA', n: 'x', e: 'AQAB', d: 'secret' }] } })]).length,
    ).toBe(1);
    expect(problems([issuer({ jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0' }] } })]).length).toBeGreaterThan(0);
    // One namespace per attestor.
    expect(
      problems([
        issuer({ preset: 'gitlab' }),
        issuer({ name: 'j', issuer: 'https://j.example', taskTemplate: 'buildkite:{pipeline}/{build}' }),
      ])[0],
    ).toMatch(/one namespace/);
  });

  it('lets several issuers name tasks only when their ids cannot collide', () => {
    const two = (a: string, b: string) =>
      problems([
        issuer({ preset: 'gitlab', taskTemplate: a }),
        issuer({ name: 'j', preset: 'gitlab', issuer: 'https://gitlab.corp.example', taskTemplate: b }),
      ]);
    expect(
      two('gitlab:{project_path}/{pipeline_id}', 'gitlab:{project_path}/{pipeline_id}').length,
    ).toBeGreaterThan(0);
    expect(
      two('gitlab:com/{project_path}/{pipeline_id}', 'gitlab:{project_path}/{pipeline_id}').length,
    ).toBeGreaterThan(0);
    expect(
      two('gitlab:com/{project_path}/{pipeline_id}', 'gitlab:com/x/{project_path}/{pipeline_id}').length,
    ).toBe(1);
    expect(
      two('gitlab:com/{project_path}/{pipeline_id}', 'gitlab:corp/{project_path}/{pipeline_id}'),
    ).toEqual([]);
  });
});
