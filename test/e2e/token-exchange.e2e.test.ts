// RFC 8693 token exchange at POST /oauth2/token, driven by a standard OAuth client library (openid-client).
import { createRemoteJWKSet, jwtVerify } from 'jose';
import * as oauth from 'openid-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker, type TestResponse } from '../helpers/broker.ts';
import { FakeOidcIssuer, githubClaims, gitlabClaims, k8sClaims } from '../helpers/oidc-issuer.ts';

const TD = 'example.org';
const AUD = 'https://writ.example';
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const JWT = 'urn:ietf:params:oauth:token-type:jwt';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const GITHUB_ID = `spiffe://${TD}/ci/acme/api`;
const GITLAB_ID = `spiffe://${TD}/ci/gitlab/api`;
const K8S_ID = `spiffe://${TD}/ns/payments/sa/api`;

describe('RFC 8693 token exchange', () => {
  let github: FakeOidcIssuer;
  let gitlab: FakeOidcIssuer;
  let cluster: FakeOidcIssuer;
  let b: TestBroker;
  let client: oauth.Configuration;

  beforeAll(async () => {
    github = await FakeOidcIssuer.start({ path: '/gh' });
    gitlab = await FakeOidcIssuer.start({ path: '/gitlab' });
    cluster = await FakeOidcIssuer.start({ alg: 'ES256' });
    b = await startTestBroker({
      config: {
        trustDomain: TD,
        attestors: {
          github_actions: { issuer: github.issuer, audience: AUD },
          oidc: { issuers: [{ name: 'gitlab', preset: 'gitlab', issuer: gitlab.issuer, audience: AUD }] },
          k8s_psat: { clusters: [{ name: 'prod', issuer: cluster.issuer, audience: AUD }] },
        },
      },
    });
    for (const [spiffeId, selectors, audiences] of [
      [
        GITHUB_ID,
        ['github_actions:repository:acme/api'],
        ['https://vault.example', 'https://registry.example'],
      ],
      [GITLAB_ID, ['oidc:issuer:gitlab', 'oidc:project_path:acme/platform/api'], undefined],
      [K8S_ID, ['k8s_psat:cluster:prod', 'k8s_psat:namespace:payments'], undefined],
    ] as const) {
      const res = await b.admin('POST', '/v1/admin/entries', {
        spiffeId,
        selectors,
        ...(audiences ? { audiences } : {}),
      });
      expect(res.status).toBe(201);
    }
    // A public client: the token endpoint authenticates the subject token, not the client.
    client = new oauth.Configuration(
      { issuer: b.url, token_endpoint: `${b.url}/oauth2/token` },
      'ci-runner',
      undefined,
      oauth.None(),
    );
    oauth.allowInsecureRequests(client); // loopback http in tests
  });
  afterAll(async () => {
    await b?.close();
    for (const i of [github, gitlab, cluster]) await i?.close();
  });

  const params = (subjectToken: string, audiences: string[], extra: Record<string, string> = {}) => {
    const p = new URLSearchParams({ subject_token: subjectToken, subject_token_type: JWT, ...extra });
    for (const a of audiences) p.append('audience', a);
    return p;
  };

  /** The OAuth error openid-client surfaces for an error response. */
  async function oauthError(
    p: Promise<unknown>,
  ): Promise<{ status: number; error: string; description: string }> {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(oauth.ResponseBodyError);
      const err = e as oauth.ResponseBodyError;
      return { status: err.status, error: err.error, description: err.error_description ?? '' };
    }
    throw new Error('expected an error response');
  }

  it('exchanges a GitHub Actions token for a JWT-SVID for two audiences (audience repeated)', async () => {
    const subject = await github.mint(githubClaims(AUD));
    const res = await oauth.genericGrantRequest(
      client,
      TOKEN_EXCHANGE,
      params(subject, ['https://vault.example', 'https://registry.example'], {
        requested_token_type: JWT,
        scope: 'ignored',
      }),
    );
    expect(res.issued_token_type).toBe(JWT);
    expect(res.token_type).toBe('n_a'); // openid-client lowercases N_A
    expect(res.expires_in).toBeGreaterThan(0);
    expect(res.expires_in).toBeLessThanOrEqual(300);

    // The access token is a JWT-SVID any relying party verifies with the broker's JWKS.
    const jwks = createRemoteJWKSet(new URL(`${b.url}/.well-known/jwks.json`));
    const { payload } = await jwtVerify(res.access_token, jwks, {
      issuer: b.url,
      audience: 'https://registry.example',
      algorithms: ['ES256'],
    });
    expect(payload).toMatchObject({
      sub: GITHUB_ID,
      aud: ['https://vault.example', 'https://registry.example'],
      task: 'github:acme/api/9000001/1',
    });
    // It is tracked like any credential: introspection reads it live.
    const introspection = await b.request('POST', '/v1/introspect', {
      body: { token: res.access_token },
      headers: { authorization: `Bearer ${b.adminToken}` },
    });
    expect(introspection.body).toMatchObject({
      active: true,
      spiffe_id: GITHUB_ID,
      task: 'github:acme/api/9000001/1',
    });
  });

  it('routes by the subject token issuer: GitLab CI (oidc) and Kubernetes (k8s_psat), id_token type', async () => {
    const fromGitlab = await oauth.genericGrantRequest(
      client,
      TOKEN_EXCHANGE,
      params(await gitlab.mint(gitlabClaims(AUD)), ['https://api.example'], { subject_token_type: ID_TOKEN }),
    );
    const gl = await jwtVerify(
      fromGitlab.access_token,
      createRemoteJWKSet(new URL(`${b.url}/.well-known/jwks.json`)),
    );
    expect(gl.payload).toMatchObject({ sub: GITLAB_ID, task: 'gitlab:acme/platform/api/5512' });

    const fromPod = await oauth.genericGrantRequest(
      client,
      TOKEN_EXCHANGE,
      params(await cluster.mint(k8sClaims(AUD)), ['https://api.example']),
    );
    const pod = await jwtVerify(
      fromPod.access_token,
      createRemoteJWKSet(new URL(`${b.url}/.well-known/jwks.json`)),
    );
    expect(pod.payload).toMatchObject({ sub: K8S_ID, task: 'k8s:prod/3f2e1d0c-9b8a-4766-8544-332211009988' });
  });

  it('answers RFC 6749 errors a client library understands', async () => {
    const now = Math.floor(Date.now() / 1000);
    const expired = await github.mint(githubClaims(AUD, { iat: now - 900, nbf: now - 900, exp: now - 600 }));
    expect(
      await oauthError(
        oauth.genericGrantRequest(client, TOKEN_EXCHANGE, params(expired, ['https://vault.example'])),
      ),
    ).toEqual({
      status: 400,
      error: 'invalid_request',
      description: 'github_actions: the token has expired',
    });
    // The entry allows two audiences; a third is a refused target.
    const fresh = await github.mint(githubClaims(AUD));
    expect(
      await oauthError(
        oauth.genericGrantRequest(client, TOKEN_EXCHANGE, params(fresh, ['https://evil.example'])),
      ),
    ).toMatchObject({
      status: 400,
      error: 'invalid_target',
    });
    // A token of an issuer no attestor accepts.
    const stranger = await FakeOidcIssuer.start();
    try {
      const foreign = await stranger.mint(githubClaims(AUD));
      expect(
        await oauthError(
          oauth.genericGrantRequest(client, TOKEN_EXCHANGE, params(foreign, ['https://vault.example'])),
        ),
      ).toEqual({
        status: 400,
        error: 'invalid_request',
        description: 'no enabled attestor accepts tokens of this issuer',
      });
      // A token that claims GitHub's issuer but is signed by another key.
      const forged = await stranger.mint(githubClaims(AUD, { iss: github.issuer }));
      expect(
        await oauthError(
          oauth.genericGrantRequest(client, TOKEN_EXCHANGE, params(forged, ['https://vault.example'])),
        ),
      ).toEqual({
        status: 400,
        error: 'invalid_request',
        description: 'github_actions: the token signature is invalid',
      });
    } finally {
      await stranger.close();
    }
    // A workload no entry matches.
    const other = await github.mint(githubClaims(AUD, { repository: 'acme/other' }));
    expect(
      await oauthError(
        oauth.genericGrantRequest(client, TOKEN_EXCHANGE, params(other, ['https://vault.example'])),
      ),
    ).toMatchObject({
      status: 400,
      error: 'invalid_request',
    });
    // Only token exchange, only JWTs out.
    expect(await oauthError(oauth.genericGrantRequest(client, 'client_credentials', {}))).toMatchObject({
      status: 400,
      error: 'unsupported_grant_type',
    });
    const jwtOnly = params(await github.mint(githubClaims(AUD)), ['https://vault.example'], {
      requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
    });
    expect(await oauthError(oauth.genericGrantRequest(client, TOKEN_EXCHANGE, jwtOnly))).toMatchObject({
      status: 400,
      error: 'invalid_request',
    });
  });

  it('refuses a replayed subject token (single use by jti)', async () => {
    const subject = await github.mint(githubClaims(AUD, { run_id: '9000077' }));
    await oauth.genericGrantRequest(client, TOKEN_EXCHANGE, params(subject, ['https://vault.example']));
    expect(
      await oauthError(
        oauth.genericGrantRequest(client, TOKEN_EXCHANGE, params(subject, ['https://vault.example'])),
      ),
    ).toEqual({
      status: 400,
      error: 'invalid_request',
      description: 'github_actions: the token was already used',
    });
  });

  describe('on the wire', () => {
    const post = (form: string, headers: Record<string, string> = {}): Promise<TestResponse> =>
      b.request('POST', '/oauth2/token', {
        raw: form,
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
      });
    const form = (p: Record<string, string | string[]>) => {
      const s = new URLSearchParams();
      for (const [k, v] of Object.entries(p)) for (const x of [v].flat()) s.append(k, x);
      return s.toString();
    };

    it('answers exactly {access_token, issued_token_type, token_type, expires_in} with no-store', async () => {
      const res = await post(
        form({
          grant_type: TOKEN_EXCHANGE,
          subject_token: await github.mint(githubClaims(AUD)),
          subject_token_type: JWT,
          audience: 'https://vault.example',
          client_id: 'ignored',
        }),
      );
      expect(res.status, res.text).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual([
        'access_token',
        'expires_in',
        'issued_token_type',
        'token_type',
      ]);
      expect(res.body).toMatchObject({ issued_token_type: JWT, token_type: 'N_A' });
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(res.headers.get('pragma')).toBe('no-cache');
    });

    it('refuses malformed requests with invalid_request and changes nothing', async () => {
      const token = await github.mint(githubClaims(AUD, { run_id: '9000088' }));
      const base = {
        grant_type: TOKEN_EXCHANGE,
        subject_token: token,
        subject_token_type: JWT,
        audience: 'https://vault.example',
      };
      const cases: Array<[string, Promise<TestResponse>]> = [
        ['JSON body', b.request('POST', '/oauth2/token', { body: base })],
        ['no grant_type', post(form({ ...base, grant_type: [] }))],
        ['grant_type twice', post(form({ ...base, grant_type: [TOKEN_EXCHANGE, TOKEN_EXCHANGE] }))],
        ['subject_token twice', post(form({ ...base, subject_token: [token, token] }))],
        ['no subject_token', post(form({ ...base, subject_token: [] }))],
        ['no subject_token_type', post(form({ ...base, subject_token_type: [] }))],
        [
          'saml subject',
          post(form({ ...base, subject_token_type: 'urn:ietf:params:oauth:token-type:saml2' })),
        ],
        ['no audience', post(form({ ...base, audience: [] }))],
        ['actor token', post(form({ ...base, actor_token: token, actor_token_type: JWT }))],
        ['not a JWT', post(form({ ...base, subject_token: 'opaque-token' }))],
      ];
      for (const [name, p] of cases) {
        const res = await p;
        expect([name, res.status, res.body.error]).toEqual([name, 400, 'invalid_request']);
        expect(res.headers.get('cache-control')).toBe('no-store');
      }
      // The token was never attested, so it is still good.
      expect((await post(form(base))).status).toBe(200);
    });

    it('merges resource into the audiences and refuses too many', async () => {
      const res = await post(
        form({
          grant_type: TOKEN_EXCHANGE,
          subject_token: await gitlab.mint(gitlabClaims(AUD)),
          subject_token_type: ID_TOKEN,
          audience: 'https://a.example',
          resource: 'https://b.example',
        }),
      );
      expect(res.status, res.text).toBe(200);
      const { payload } = await jwtVerify(
        res.body.access_token,
        createRemoteJWKSet(new URL(`${b.url}/.well-known/jwks.json`)),
      );
      expect(payload.aud).toEqual(['https://a.example', 'https://b.example']);
      const many = await post(
        form({
          grant_type: TOKEN_EXCHANGE,
          subject_token: await gitlab.mint(gitlabClaims(AUD)),
          subject_token_type: JWT,
          audience: Array.from({ length: 17 }, (_, i) => `https://${i}.example`),
        }),
      );
      expect([many.status, many.body.error]).toEqual([400, 'invalid_target']);
    });

    it('counts failed exchanges against the attestation rate limit, like POST /v1/svid/jwt', async () => {
      const broker = await startTestBroker({
        config: {
          rateLimit: { attestationFailuresPerAddress: 2 },
          attestors: { github_actions: { issuer: github.issuer, audience: AUD } },
        },
      });
      try {
        const attempt = async (claims: Record<string, unknown>) =>
          broker.request('POST', '/oauth2/token', {
            raw: form({
              grant_type: TOKEN_EXCHANGE,
              subject_token: await github.mint(githubClaims(AUD, claims)),
              subject_token_type: JWT,
              audience: 'https://vault.example',
            }),
            headers: { 'content-type': 'application/x-www-form-urlencoded' },
          });
        for (let i = 0; i < 2; i++)
          expect((await attempt({ aud: 'https://elsewhere.example' })).status).toBe(400);
        const limited = await attempt({});
        expect(limited.status).toBe(429);
        expect(limited.body.error).toBe('ERR_RATE_LIMITED');
        expect(limited.headers.get('retry-after')).toMatch(/^\d+$/);
      } finally {
        await broker.close();
      }
    });

    it('answers 503 temporarily_unavailable when the issuer keys cannot be fetched', async () => {
      const down = await FakeOidcIssuer.start();
      down.jwksStatus = 503;
      const broker = await startTestBroker({
        config: {
          attestors: { github_actions: { issuer: down.issuer, jwksUri: down.jwksUri, audience: AUD } },
        },
      });
      try {
        const res = await broker.request('POST', '/oauth2/token', {
          raw: form({
            grant_type: TOKEN_EXCHANGE,
            subject_token: await down.mint(githubClaims(AUD)),
            subject_token_type: JWT,
            audience: 'https://vault.example',
          }),
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
        });
        expect(res.status).toBe(503);
        expect(res.body).toEqual({
          error: 'temporarily_unavailable',
          error_description: "github_actions: the issuer's keys could not be fetched",
        });
      } finally {
        await broker.close();
        await down.close();
      }
    });
  });
});
