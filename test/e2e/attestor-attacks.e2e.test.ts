// Attacker's review of the attestor plugins and their HTTP surfaces. Tests named "FINDING" demonstrate a
// real weakness (they fail until it is fixed); the rest pin attacks that the broker already defeats.
import { createHash, createHmac, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signNonce, type TestCert, TestPki } from '../../attestors/x509pop/test-pki.ts';
import { addressKey } from '../../src/http/rate-limit.ts';
import { startTestBroker, type TestBroker, type TestResponse } from '../helpers/broker.ts';
import { FakeOidcIssuer, githubClaims } from '../helpers/oidc-issuer.ts';
import { introspectActive } from '../helpers/workload.ts';

const TD = 'example.org';
const AUD = 'https://writ.example';
const RP = ['https://api.example'];
const SECRET = 'whsec-attack-0123456789abcdef';
const GH_ID = `spiffe://${TD}/ci/acme/api`;
const CORP_ID = `spiffe://${TD}/corp/admins`;
const STATIC_ID = `spiffe://${TD}/legacy/app`;
const X509_ID = `spiffe://${TD}/x509/workload`;
const KEY = `sk_${randomBytes(32).toString('base64url')}`;
const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

/** The same JWS with its last signature character's padding bit flipped: other text, same bytes. */
function flipPaddingBit(token: string): string {
  const last = token.at(-1)!;
  return token.slice(0, -1) + B64URL[B64URL.indexOf(last) ^ 1];
}

/** The same JWS with a space inside its signature segment (forgiving base64 drops it). */
function spaceInSignature(token: string): string {
  return `${token.slice(0, -4)} ${token.slice(-4)}`;
}

const hmac = (secret: string, body: string) =>
  `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

describe('attestor attacks', () => {
  let b: TestBroker;
  let gh: FakeOidcIssuer;
  let corp: FakeOidcIssuer;
  let pki: TestPki;
  let root: TestCert;
  let runs = 7_000_000;

  beforeAll(async () => {
    gh = await FakeOidcIssuer.start();
    corp = await FakeOidcIssuer.start({ alg: 'ES256' });
    pki = new TestPki();
    root = pki.issue({ cn: 'Attack Root', ca: true });
    b = await startTestBroker({
      config: {
        trustDomain: TD,
        attestors: {
          github_actions: {
            issuer: gh.issuer,
            jwksUri: gh.jwksUri,
            audience: AUD,
            webhookSecret: SECRET,
            webhookEvents: ['workflow_run'],
          },
          oidc: {
            issuers: [
              {
                name: 'corp',
                issuer: corp.issuer,
                jwks: corp.jwks(),
                audience: AUD,
                algorithms: ['ES256'],
                claimSelectors: { groups: 'group' },
                singleUse: true,
              },
            ],
          },
          static_key: { keys: [{ id: 'app', sha256: createHash('sha256').update(KEY).digest('hex') }] },
          x509pop: { caBundle: root.pem },
        },
      },
    });
    for (const [spiffeId, selectors] of [
      [GH_ID, ['github_actions:repository:acme/api']],
      [CORP_ID, ['oidc:issuer:corp', 'oidc:group:admins']],
      [STATIC_ID, ['static_key:id:app']],
      [X509_ID, ['x509pop:subject:cn:workload']],
    ] as const) {
      const res = await b.admin('POST', '/v1/admin/entries', { spiffeId, selectors });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
    }
  });
  afterAll(async () => {
    await b?.close();
    await gh?.close();
    await corp?.close();
    pki?.close();
  });

  const svid = (attestor: string, evidence: unknown): Promise<TestResponse> =>
    b.request('POST', '/v1/svid/jwt', { body: { attestor, evidence, audience: RP } });

  const exchange = (subjectToken: string): Promise<TestResponse> =>
    b.request('POST', '/oauth2/token', {
      raw: new URLSearchParams({
        grant_type: GRANT,
        subject_token: subjectToken,
        subject_token_type: JWT_TYPE,
        audience: RP[0]!,
      }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });

  // Each token distinct (a real issuer's tokens differ in their claims); replay is judged on the signed claims.
  let minted = 0;
  const corpToken = (claims: Record<string, unknown> = {}) => {
    minted += 1;
    return corp.mint({ aud: AUD, groups: 'admins', jti: undefined, n: minted, ...claims });
  };

  // ---- replay guard ----

  describe('replay guard (jti-less tokens are keyed by their signed header and claims)', () => {
    it('sanity: the very same jti-less token is refused the second time', async () => {
      const token = await corpToken();
      expect((await svid('oidc', { token })).status).toBe(200);
      const again = await svid('oidc', { token });
      expect(again.status).toBe(401);
      expect(again.body.error_description).toMatch(/already used/);
    });

    it('fixed: a jti-less token replayed with a space inside its signature is refused', async () => {
      const token = await corpToken();
      expect((await svid('oidc', { token })).status).toBe(200);
      const replay = await svid('oidc', { token: spaceInSignature(token) });
      expect(replay.status, JSON.stringify(replay.body)).toBe(401);
      expect(replay.body.error_description).toMatch(/already used/);
    });

    it('fixed: a jti-less token replayed with a flipped base64url padding bit is refused', async () => {
      const token = await corpToken();
      expect((await svid('oidc', { token })).status).toBe(200);
      const replay = await svid('oidc', { token: flipPaddingBit(token) });
      expect(replay.status, JSON.stringify(replay.body)).toBe(401);
      expect(replay.body.error_description).toMatch(/already used/);
    });

    it('fixed: the same replay through the RFC 8693 token exchange is refused', async () => {
      const token = await corpToken();
      expect((await exchange(token)).status).toBe(200);
      const replay = await exchange(flipPaddingBit(token));
      expect(replay.status, JSON.stringify(replay.body)).toBe(400);
      expect(replay.body.error).toBe('invalid_request');
    });

    it('defeated: a token with a jti is refused when re-encoded (keyed by iss + jti)', async () => {
      const token = await gh.mint(githubClaims(AUD, { run_id: String(++runs) }));
      expect((await svid('github_actions', { token })).status).toBe(200);
      for (const t of [spaceInSignature(token), flipPaddingBit(token)]) {
        const replay = await svid('github_actions', { token: t });
        expect(replay.status).toBe(401);
        expect(replay.body.error_description).toMatch(/already used/);
      }
    });
  });

  // ---- identity confusion ----

  describe('identity confusion', () => {
    it('defeated: a valid token of one issuer is refused by the attestor of another', async () => {
      const ghToken = await gh.mint(githubClaims(AUD, { groups: 'admins', run_id: String(++runs) }));
      const asOidc = await svid('oidc', { token: ghToken });
      expect(asOidc.status).toBe(401);
      expect(asOidc.body.error_description).toBe('oidc: the token issuer is not accepted');
      const asGh = await svid('github_actions', { token: await corpToken() });
      expect(asGh.status).toBe(401);
      expect(asGh.body.error_description).toMatch(/issuer is not accepted|signature is invalid|algorithm/);
    });

    it('defeated: a token that claims one issuer but is signed by another is refused (also via RFC 8693)', async () => {
      const forged = await gh.mint({ aud: AUD, iss: corp.issuer, groups: 'admins' });
      expect((await svid('oidc', { token: forged })).status).toBe(401);
      const ex = await exchange(forged);
      expect(ex.status).toBe(400);
      expect(ex.body.error).toBe('invalid_request');
    });

    it('defeated: jku / x5u / embedded jwk headers do not choose the verification key', async () => {
      const foreign = await FakeOidcIssuer.foreignKey('ES256');
      const token = await corp.mint(
        { aud: AUD, groups: 'admins' },
        {
          key: foreign,
          header: {
            jku: `${corp.issuer}/evil-jwks`,
            x5u: `${corp.issuer}/evil.pem`,
            jwk: { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA' },
          },
        },
      );
      const res = await svid('oidc', { token });
      expect(res.status).toBe(401);
      expect(res.body.error_description).toBe('oidc: the token signature is invalid');
    });

    it('defeated: a repository named like another selector (x:ref:refs/heads/main) is refused', async () => {
      const res = await svid('github_actions', {
        token: await gh.mint(
          githubClaims(AUD, { repository: 'acme/api:ref:refs/heads/main', run_id: String(++runs) }),
        ),
      });
      expect(res.status).toBe(401);
      expect(res.body.error_description).toMatch(/repository claim is not owner\/name/);
    });

    it('defeated: claims with newlines, arrays or objects do not become selectors', async () => {
      for (const ref of ['refs/heads/x\ngithub_actions:repository:acme/api', ['refs/heads/main'], { a: 1 }]) {
        const res = await svid('github_actions', {
          token: await gh.mint(githubClaims(AUD, { ref, run_id: String(++runs) })),
        });
        expect(res.status, JSON.stringify(ref)).toBe(401);
      }
      const nested = await svid('oidc', { token: await corpToken({ groups: [{ g: 'admins' }] }) });
      expect(nested.status).toBe(401);
      expect(nested.body.error_description).toMatch(/unsupported type/);
    });

    it('defeated: a run_id that is not a digit string (number, slash, letters) cannot shape the run task', async () => {
      for (const run_id of [1.5, '1/2', '12a', 7]) {
        const res = await svid('github_actions', { token: await gh.mint(githubClaims(AUD, { run_id })) });
        expect(res.status, String(run_id)).toBe(401);
      }
    });
  });

  // ---- webhook ----

  describe('GitHub webhook', () => {
    async function runCredential(): Promise<{ token: string; runId: number; task: string }> {
      const runId = ++runs;
      const res = await svid('github_actions', {
        token: await gh.mint(githubClaims(AUD, { run_id: String(runId) })),
      });
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      return { token: res.body.token, runId, task: res.body.task };
    }
    const completed = (runId: number, repo = 'acme/api') => ({
      action: 'completed',
      workflow_run: { id: runId, run_attempt: 1 },
      repository: { full_name: repo },
    });
    const deliver = (raw: string, headers: Record<string, string> = {}) =>
      b.request('POST', '/v1/webhooks/github', {
        raw,
        headers: {
          'content-type': 'application/json',
          'x-github-event': 'workflow_run',
          'x-github-delivery': randomUUID(),
          'x-hub-signature-256': hmac(SECRET, raw),
          ...headers,
        },
      });

    it('fixed: a delivery whose task end failed still ends the task when GitHub redelivers it', async () => {
      const { token, runId } = await runCredential();
      const raw = JSON.stringify(completed(runId));
      const delivery = randomUUID();
      const lifecycle = b.broker.deps.lifecycle as unknown as Record<string, unknown>;
      lifecycle.endTask = async () => {
        throw new Error('store hiccup');
      };
      let first: TestResponse;
      try {
        first = await deliver(raw, { 'x-github-delivery': delivery });
      } finally {
        delete lifecycle.endTask;
      }
      expect(first.status).toBeGreaterThanOrEqual(500);
      // GitHub's redelivery carries the same X-GitHub-Delivery.
      const redelivery = await deliver(raw, { 'x-github-delivery': delivery });
      expect(redelivery.status).toBe(202);
      expect(await introspectActive(b, token)).toBe(false);
    });

    it('defeated: sha1= signatures, re-serialised bodies and duplicated signature headers change nothing', async () => {
      const { token, runId } = await runCredential();
      const raw = JSON.stringify(completed(runId), null, 2);
      const sha1 = `sha1=${createHmac('sha1', SECRET).update(raw).digest('hex')}`;
      const reserialised = hmac(SECRET, JSON.stringify(completed(runId)));
      for (const sig of [sha1, reserialised, `${hmac(SECRET, raw)}, ${hmac(SECRET, raw)}`, '']) {
        const res = await deliver(raw, { 'x-hub-signature-256': sig });
        expect(res.status, sig).toBe(401);
      }
      const viaHubSignature = await deliver(raw, { 'x-hub-signature-256': '', 'x-hub-signature': sha1 });
      expect(viaHubSignature.status).toBe(401);
      expect(await introspectActive(b, token)).toBe(true);
    });

    it('defeated: a signed completion of another repository with the same run id leaves our task alone', async () => {
      const { token, runId } = await runCredential();
      for (const repo of ['acme/other', 'acme/api/..', 'ACME/API']) {
        const res = await deliver(JSON.stringify(completed(runId, repo)));
        expect(res.status).toBe(202);
      }
      expect(await introspectActive(b, token)).toBe(true);
    });
  });

  // ---- static_key ----

  it('defeated: static_key answers a wrong key and a near-miss with the same refusal', async () => {
    const answers = await Promise.all(
      [`${KEY}x`, KEY.slice(0, -1), 'x', createHash('sha256').update(KEY).digest('hex')].map((key) =>
        svid('static_key', { key }),
      ),
    );
    for (const a of answers) {
      expect(a.status).toBe(401);
      expect(a.body.error_description).toBe('static_key: the key is not accepted');
    }
    expect((await svid('static_key', { key: KEY })).status).toBe(200);
  });

  // ---- x509pop ----

  describe('x509pop', () => {
    const challenge = async (): Promise<string> => {
      const res = await b.request('POST', '/v1/attest/challenge', { body: { attestor: 'x509pop' } });
      expect(res.status).toBe(200);
      return res.body.nonce as string;
    };
    const attest = async (leaf: TestCert, chain: string[], nonce?: string) => {
      const n = nonce ?? (await challenge());
      return svid('x509pop', { nonce: n, chain, signature: signNonce(leaf, n) });
    };

    it('sanity: a leaf under a CA intermediate is accepted', async () => {
      const inter = pki.issue({ cn: 'Inter', ca: true, issuer: root });
      const leaf = pki.issue({ cn: 'workload', issuer: inter });
      const res = await attest(leaf, [leaf.pem, inter.pem]);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    });

    it('defeated: a leaf issued by another leaf (non-CA "intermediate") is refused', async () => {
      const mid = pki.issue({ cn: 'not-a-ca', issuer: root, keyUsage: 'digitalSignature, keyCertSign' });
      const leaf = pki.issue({ cn: 'workload', issuer: mid });
      const res = await attest(leaf, [leaf.pem, mid.pem]);
      expect(res.status).toBe(401);
    });

    it('defeated: a CA:TRUE leaf is refused', async () => {
      const caLeaf = pki.issue({
        cn: 'workload',
        ca: true,
        issuer: root,
        keyUsage: 'digitalSignature, keyCertSign',
      });
      expect((await attest(caLeaf, [caLeaf.pem])).status).toBe(401);
      expect((await attest(caLeaf, [caLeaf.pem, root.pem])).status).toBe(401);
    });

    it('defeated: a nonce is single-use across attempts and bound to the signature', async () => {
      const leaf = pki.issue({ cn: 'workload', issuer: root });
      const nonce = await challenge();
      expect((await attest(leaf, [leaf.pem], nonce)).status).toBe(200);
      expect((await attest(leaf, [leaf.pem], nonce)).status).toBe(401);
      const other = await challenge();
      const res = await svid('x509pop', {
        nonce: other,
        chain: [leaf.pem],
        signature: signNonce(leaf, nonce),
      });
      expect(res.status).toBe(401);
    });

    it('defeated: no challenge is handed out for an attestor that takes none', async () => {
      const res = await b.request('POST', '/v1/attest/challenge', { body: { attestor: 'static_key' } });
      expect(res.status).toBe(400);
    });
  });
});

describe('rate limit attacks', () => {
  let b: TestBroker;
  beforeAll(async () => {
    b = await startTestBroker({
      config: {
        attestors: {
          static_key: { keys: [{ id: 'app', sha256: createHash('sha256').update(KEY).digest('hex') }] },
        },
        rateLimit: { enabled: true, windowSeconds: 3600, attestationFailuresPerAddress: 3 },
      },
    });
  });
  afterAll(async () => {
    await b?.close();
  });

  it('defeated: X-Forwarded-For rotation does not escape a block while trust proxy is off', async () => {
    const attempt = (n: number) =>
      b.request('POST', '/v1/svid/jwt', {
        body: { attestor: 'static_key', evidence: { key: `wrong-${n}` }, audience: RP },
        headers: { 'x-forwarded-for': `203.0.113.${n}`, forwarded: `for=198.51.100.${n}` },
      });
    for (let n = 1; n <= 3; n++) expect((await attempt(n)).status).toBe(401);
    const blocked = await attempt(4);
    expect(blocked.status).toBe(429);
  });

  it('defeated: IPv6 addresses of one /64 share one bucket, in every spelling', () => {
    const key = addressKey('2001:db8:1:2::1');
    for (const ip of [
      '2001:db8:1:2:ffff:ffff:ffff:ffff',
      '2001:0DB8:0001:0002:0:0:0:9',
      '2001:db8:1:2::1.2.3.4',
    ]) {
      expect(addressKey(ip), ip).toBe(key);
    }
    expect(addressKey('2001:db8:1:3::1')).not.toBe(key);
    expect(addressKey('::ffff:192.0.2.7')).toBe('192.0.2.7');
  });
});
