// One CI run end to end: GitHub-style OIDC tokens -> JWT-SVIDs and an X.509-SVID of the run task -> signed
// webhook -> all inactive, and the certificate on the CRL.
import { createHmac, generateKeyPairSync, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr } from '../../src/keys/x509/index.ts';
import { startTestBroker, type TestBroker, type TestResponse } from '../helpers/broker.ts';
import { FakeOidcIssuer, githubClaims } from '../helpers/oidc-issuer.ts';
import { openSse } from '../helpers/sse.ts';
import { waitFor } from '../helpers/wait.ts';
import { introspectActive } from '../helpers/workload.ts';
import { opensslOk, tempDir } from '../unit/x509/helpers.ts';

const TD = 'example.org';
const GH_AUD = 'https://writ.example';
const SECRET = 'whsec-ci-run-0123456789abcdef';
const DEPLOY = `spiffe://${TD}/ci/acme/api/deploy`;
const VAULT = 'https://vault.example';
const REGISTRY = 'https://registry.example';

const sign = (secret: string, body: string) =>
  `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

/** `openssl crl -text` of a PEM CRL: an independent reading of what relying parties get. */
async function crlText(pem: string): Promise<string> {
  const t = await tempDir('writ-ci-run-');
  try {
    await t.write('crl.pem', pem);
    return await opensslOk(['crl', '-in', 'crl.pem', '-noout', '-text'], t.dir);
  } finally {
    await t.cleanup();
  }
}

describe.each(['memory', 'redis'] as const)('a CI run with the %s store', (store) => {
  let gh: FakeOidcIssuer;
  let b: TestBroker;
  const runId = store === 'memory' ? 41_000_001 : 41_000_002;
  const task = `github:acme/api/${runId}/1`;

  beforeAll(async () => {
    gh = await FakeOidcIssuer.start({ path: '/actions' });
    b = await startTestBroker({
      store,
      config: {
        trustDomain: TD,
        attestors: { github_actions: { issuer: gh.issuer, audience: GH_AUD, webhookSecret: SECRET } },
      },
    });
  });
  afterAll(async () => {
    await b?.close();
    await gh?.close();
  });

  /** A fresh OIDC token of the run, as `core.getIDToken(audience)` gives one per call. */
  const runToken = (overrides: Record<string, unknown> = {}) =>
    gh.mint(githubClaims(GH_AUD, { run_id: String(runId), ...overrides }));

  const exchange = async (audience: string, token: string): Promise<TestResponse> =>
    b.request('POST', '/oauth2/token', {
      raw: new URLSearchParams({
        grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
        subject_token: token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:id_token',
        audience,
      }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });

  const webhook = (body: string, signature: string) =>
    b.request('POST', '/v1/webhooks/github', {
      raw: body,
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'workflow_run',
        'x-github-delivery': randomUUID(),
        'x-hub-signature-256': signature,
      },
    });

  it('issues the run its credentials and revokes them all when GitHub says the run completed', async () => {
    // The platform team registers the deploy workflow of acme/api on main (admin API).
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: DEPLOY,
      selectors: [
        'github_actions:repository:acme/api',
        'github_actions:repository_owner_id:1001',
        'github_actions:ref:refs/heads/main',
        'github_actions:workflow_ref:acme/api/.github/workflows/deploy.yml@refs/heads/main',
      ],
      audiences: [VAULT, REGISTRY],
      jwtTtl: 600,
    });
    expect(entry.status, JSON.stringify(entry.body)).toBe(201);

    // Two JWT-SVIDs of the run, for two audiences: one by the native API, one by RFC 8693 token exchange.
    const forVault = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'github_actions', evidence: { token: await runToken() }, audience: [VAULT] },
    });
    expect(forVault.status, JSON.stringify(forVault.body)).toBe(200);
    expect(forVault.body).toMatchObject({ spiffeId: DEPLOY, task });
    const forRegistry = await exchange(REGISTRY, await runToken());
    expect(forRegistry.status, JSON.stringify(forRegistry.body)).toBe(200);
    const credentials = [forVault.body.token as string, forRegistry.body.access_token as string];

    // And an X.509-SVID of the same run (mutual TLS to an internal service), from another token of the run.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const certificate = await b.request('POST', '/v1/svid/x509', {
      body: { attestor: 'github_actions', evidence: { token: await runToken() }, csr: createCsr(privateKey) },
    });
    expect(certificate.status, JSON.stringify(certificate.body)).toBe(200);
    expect(certificate.body).toMatchObject({ spiffeId: DEPLOY, task });
    const serial = certificate.body.id as string;
    const certificateStatus = async () =>
      (await b.admin('GET', `/v1/admin/credentials/${serial}`)).body.status as string;
    const crlSerials = async () => {
      const crl = await b.request('GET', '/v1/crl?format=pem');
      expect(crl.status).toBe(200);
      return new Set(
        [...(await crlText(crl.text)).matchAll(/Serial Number: ([0-9A-F]+)\n/g)].map((m) =>
          m[1]!.toLowerCase(),
        ),
      );
    };
    expect(await certificateStatus()).toBe('active');
    expect((await crlSerials()).has(serial)).toBe(false);

    // Another run of the same repository is another task and must survive this run's end.
    const otherRun = await b.request('POST', '/v1/svid/jwt', {
      body: {
        attestor: 'github_actions',
        evidence: { token: await runToken({ run_id: String(runId + 100) }) },
        audience: [VAULT],
      },
    });
    expect(otherRun.status).toBe(200);

    for (const token of credentials) expect(await introspectActive(b, token)).toBe(true);
    const tasks = await b.admin('GET', `/v1/admin/tasks/${encodeURIComponent(task)}`);
    expect(tasks.body).toMatchObject({ id: task, status: 'active', origin: 'attestor', credentials: 3 });

    // A relying party follows the revocation feed.
    const feed = await openSse(`${b.url}/v1/revocations/stream`);
    await waitFor(() => feed.messages.find((m) => m.event === 'ready'), { what: 'feed ready' });
    const cursorBefore = (await b.request('GET', '/v1/revocations?limit=1000')).body.cursor;

    const completed = JSON.stringify({
      action: 'completed',
      workflow_run: { id: runId, run_attempt: 1, status: 'completed', conclusion: 'success' },
      repository: { full_name: 'acme/api' },
    });

    // A forged delivery (wrong secret) changes nothing.
    const forged = await webhook(completed, sign('attacker-guessed-secret-000', completed));
    expect(forged.status).toBe(401);
    expect(forged.body).toEqual({
      error: 'ERR_WEBHOOK_SIGNATURE_INVALID',
      error_description: 'the webhook signature is missing or does not verify',
    });
    for (const token of credentials) expect(await introspectActive(b, token)).toBe(true);
    expect((await b.admin('GET', `/v1/admin/tasks/${encodeURIComponent(task)}`)).body.status).toBe('active');
    expect((await b.request('GET', '/v1/revocations?limit=1000')).body.cursor).toBe(cursorBefore);

    // GitHub's signed workflow_run completed delivery.
    const delivered = await webhook(completed, sign(SECRET, completed));
    expect(delivered.status).toBe(202);
    expect(delivered.body).toEqual({ status: 'accepted' });

    // Every credential of the run reads inactive within 1 s, and the feed tells relying parties as fast.
    await waitFor(
      async () => {
        for (const token of credentials) if (await introspectActive(b, token)) return false;
        return true;
      },
      { timeoutMs: 1_000, intervalMs: 10, what: 'every credential of the run to read inactive' },
    );
    await waitFor(
      () => feed.messages.find((m) => m.event === 'revocation' && JSON.parse(m.data).task === task),
      { timeoutMs: 1_000, intervalMs: 10, what: 'the task revocation on the feed' },
    );
    feed.close();
    expect(await introspectActive(b, otherRun.body.token)).toBe(true);
    // The run's certificate is revoked too: in the admin view, and on the CRL relying parties check.
    expect(await certificateStatus()).toBe('revoked');
    expect((await crlSerials()).has(serial)).toBe(true);
    expect((await b.admin('GET', `/v1/admin/tasks/${encodeURIComponent(task)}`)).body).toMatchObject({
      status: 'completed',
      endReason: 'task_completed',
    });

    // The run is over: a token of it gets nothing more.
    const late = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'github_actions', evidence: { token: await runToken() }, audience: [VAULT] },
    });
    expect(late.status).toBe(409);
    expect(late.body.error).toBe('ERR_TASK_ENDED');
  });
});
