// x509pop over real HTTP: challenge, certificate chains made by openssl, proof of possession, refusals.
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../../test/helpers/broker.ts';
import { FakeClock } from '../../test/helpers/clock.ts';
import { signNonce, type TestCert, TestPki } from './test-pki.ts';

const DAY_MS = 86_400_000;
const AUDIENCE = ['https://api.example'];

describe('x509pop attestor (e2e)', () => {
  const pki = new TestPki();
  let root: TestCert;
  let inter: TestCert;
  let leafEc: TestCert;
  let leafRsa: TestCert;
  let leafEd: TestCert;
  let otherRoot: TestCert;
  let otherLeaf: TestCert;
  let selfSigned: TestCert;
  let shortLived: TestCert;
  let caLeaf: TestCert;
  let noSignLeaf: TestCert;
  let serverOnlyLeaf: TestCert;
  let inter2: TestCert;
  let deepLeaf: TestCert;
  let clock: FakeClock;
  let b: TestBroker;

  beforeAll(async () => {
    root = pki.issue({ cn: 'Writ Test Root', ca: true, days: 3650 });
    inter = pki.issue({
      cn: 'Writ Test Issuing CA',
      ca: true,
      pathLen: 0,
      issuer: root,
      keyType: 'ec-p384',
      days: 3650,
    });
    leafEc = pki.issue({
      cn: 'workload-ec',
      issuer: inter,
      san: ['DNS:ec.workload.test', 'URI:urn:writ:test:ec'],
    });
    leafRsa = pki.issue({ cn: 'workload-rsa', keyType: 'rsa', issuer: inter });
    leafEd = pki.issue({ cn: 'workload-ed', keyType: 'ed25519', issuer: root });
    otherRoot = pki.issue({ cn: 'Writ Test Root', ca: true, days: 3650 });
    otherLeaf = pki.issue({ cn: 'workload-ec', issuer: otherRoot });
    selfSigned = pki.issue({ cn: 'workload-ec' });
    shortLived = pki.issue({ cn: 'workload-ec', issuer: inter, days: 1 });
    caLeaf = pki.issue({ cn: 'workload-ec', ca: true, issuer: root });
    noSignLeaf = pki.issue({ cn: 'workload-ec', issuer: inter, keyUsage: 'keyEncipherment' });
    serverOnlyLeaf = pki.issue({ cn: 'workload-ec', issuer: inter, extKeyUsage: 'serverAuth' });
    inter2 = pki.issue({ cn: 'Writ Test Sub CA', ca: true, issuer: inter, days: 3650 });
    deepLeaf = pki.issue({ cn: 'workload-ec', issuer: inter2 });

    // Certificates are valid from the second openssl made them; start the broker's clock a little later.
    clock = new FakeClock(Math.floor(Date.now() / 1000) * 1000 + 5_000);
    b = await startTestBroker({
      clock: clock.clock,
      config: { attestors: { x509pop: { caBundle: root.pem } }, rateLimit: { enabled: false } },
    });
    for (const [name, cn] of [
      ['ec', 'workload-ec'],
      ['rsa', 'workload-rsa'],
      ['ed', 'workload-ed'],
    ]) {
      const res = await b.admin('POST', '/v1/admin/entries', {
        spiffeId: `spiffe://writ.local/x509/${name}`,
        selectors: [`x509pop:subject:cn:${cn}`],
      });
      expect(res.status).toBe(201);
    }
  });
  afterAll(async () => {
    await b?.close();
    pki.close();
  });

  async function challenge(): Promise<string> {
    const res = await b.request('POST', '/v1/attest/challenge', { body: { attestor: 'x509pop' } });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.nonce as string;
  }

  function evidence(signer: TestCert, chain: TestCert[], nonce: string) {
    return { nonce, chain: chain.map((c) => c.pem), signature: signNonce(signer, nonce) };
  }

  function attest(ev: unknown) {
    return b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'x509pop', evidence: ev, audience: AUDIENCE },
    });
  }

  async function expectRefused(ev: unknown, reason: string): Promise<void> {
    const res = await attest(ev);
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ error: 'ERR_ATTESTATION_FAILED', error_description: `x509pop: ${reason}` });
  }

  describe('challenge', () => {
    it('hands out a 32-byte base64url nonce that lives nonceTtl (60 s)', async () => {
      const res = await b.request('POST', '/v1/attest/challenge', { body: { attestor: 'x509pop' } });
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(Object.keys(res.body).sort()).toEqual(['expiresAt', 'nonce']);
      expect(res.body.nonce).toMatch(/^[A-Za-z0-9_-]{43}$/);
      expect(Buffer.from(res.body.nonce, 'base64url')).toHaveLength(32);
      expect(res.body.expiresAt).toBe(clock.seconds() + 60);
      const again = await challenge();
      expect(again).not.toBe(res.body.nonce);
    });

    it('refuses attestors that are unknown or take no challenge, and unknown fields', async () => {
      const unknown = await b.request('POST', '/v1/attest/challenge', { body: { attestor: 'aws_iid' } });
      expect(unknown.status).toBe(400);
      expect(unknown.body.error).toBe('ERR_ATTESTOR_UNKNOWN');
      const noChallenge = await b.request('POST', '/v1/attest/challenge', {
        body: { attestor: 'join_token' },
      });
      expect(noChallenge.status).toBe(400);
      expect(noChallenge.body).toEqual({
        error: 'invalid_request',
        error_description: 'attestor: join_token takes no challenge',
      });
      const extra = await b.request('POST', '/v1/attest/challenge', { body: { attestor: 'x509pop', x: 1 } });
      expect(extra.status).toBe(400);
      expect(extra.body.error).toBe('invalid_request');
    });
  });

  describe('happy paths', () => {
    it('issues for an EC P-256 leaf under an intermediate (ECDSA SHA-256, DER)', async () => {
      const nonce = await challenge();
      const res = await attest(evidence(leafEc, [leafEc, inter], nonce));
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.spiffeId).toBe('spiffe://writ.local/x509/ec');
      expect(decodeJwt(res.body.token).sub).toBe('spiffe://writ.local/x509/ec');
      const view = await b.admin('GET', `/v1/admin/credentials/${res.body.id}`);
      expect(view.body).toMatchObject({ attestor: 'x509pop', legacy: false, status: 'active' });
    });

    it('issues for an RSA-2048 leaf under an intermediate (RSASSA-PSS SHA-256)', async () => {
      const nonce = await challenge();
      const res = await attest(evidence(leafRsa, [leafRsa, inter], nonce));
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.spiffeId).toBe('spiffe://writ.local/x509/rsa');
    });

    it('issues for an Ed25519 leaf issued by the root itself', async () => {
      const nonce = await challenge();
      const res = await attest(evidence(leafEd, [leafEd], nonce));
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      expect(res.body.spiffeId).toBe('spiffe://writ.local/x509/ed');
    });

    it('accepts a chain that ends with a copy of the configured root', async () => {
      const nonce = await challenge();
      const res = await attest(evidence(leafEc, [leafEc, inter, root], nonce));
      expect(res.status, JSON.stringify(res.body)).toBe(200);
    });

    it('answers 403 for a verified workload that no entry matches', async () => {
      const stranger = pki.issue({ cn: 'stranger', issuer: inter });
      const nonce = await challenge();
      const res = await attest(evidence(stranger, [stranger, inter], nonce));
      expect(res.status).toBe(403);
      expect(res.body.error).toBe('ERR_NO_MATCHING_ENTRY');
    });
  });

  describe('refusals (401 ERR_ATTESTATION_FAILED)', () => {
    it('a signature by another key', async () => {
      const nonce = await challenge();
      const forged = { ...evidence(leafEc, [leafEc, inter], nonce), signature: signNonce(leafRsa, nonce) };
      await expectRefused(forged, 'the signature does not verify with the leaf certificate key');
    });

    it('a signature over another nonce', async () => {
      const nonce = await challenge();
      const other = await challenge();
      const ev = { ...evidence(leafEc, [leafEc, inter], nonce), signature: signNonce(leafEc, other) };
      await expectRefused(ev, 'the signature does not verify with the leaf certificate key');
    });

    it('a replayed nonce, and a nonce spent by a failed attempt', async () => {
      const nonce = await challenge();
      const ev = evidence(leafEc, [leafEc, inter], nonce);
      expect((await attest(ev)).status).toBe(200);
      await expectRefused(ev, 'the nonce is unknown, used or expired');

      const spent = await challenge();
      const bad = { ...evidence(leafEc, [leafEc, inter], spent), signature: signNonce(leafRsa, spent) };
      expect((await attest(bad)).status).toBe(401);
      await expectRefused(evidence(leafEc, [leafEc, inter], spent), 'the nonce is unknown, used or expired');
    });

    it('a nonce the broker never issued', async () => {
      const made = Buffer.alloc(32, 7).toString('base64url');
      await expectRefused(evidence(leafEc, [leafEc, inter], made), 'the nonce is unknown, used or expired');
    });

    it('an expired nonce', async () => {
      const nonce = await challenge();
      clock.advance(61_000);
      await expectRefused(evidence(leafEc, [leafEc, inter], nonce), 'the nonce is unknown, used or expired');
    });

    it('a chain to a CA that is not configured (same name, other key)', async () => {
      const nonce = await challenge();
      await expectRefused(
        evidence(otherLeaf, [otherLeaf, otherRoot], nonce),
        'the certificate chain does not lead to a configured CA',
      );
    });

    it('a self-signed leaf', async () => {
      const nonce = await challenge();
      await expectRefused(
        evidence(selfSigned, [selfSigned], nonce),
        'the certificate chain does not lead to a configured CA',
      );
    });

    it('an expired leaf', async () => {
      clock.advance(2 * DAY_MS);
      try {
        const nonce = await challenge();
        await expectRefused(
          evidence(shortLived, [shortLived, inter], nonce),
          'a certificate of the chain is not valid at this time',
        );
      } finally {
        clock.advance(-2 * DAY_MS);
      }
    });

    it('a leaf that is a CA', async () => {
      const nonce = await challenge();
      await expectRefused(evidence(caLeaf, [caLeaf], nonce), 'the leaf certificate is a CA');
    });

    it('a tampered chain order', async () => {
      const swapped = await challenge();
      await expectRefused(evidence(inter, [inter, leafEc], swapped), 'the leaf certificate is a CA');
      const shuffled = await challenge();
      await expectRefused(
        evidence(leafEc, [leafEc, root, inter], shuffled),
        'the certificate chain is broken or out of order',
      );
    });

    it('a chain longer than an intermediate path length allows', async () => {
      const nonce = await challenge();
      await expectRefused(
        evidence(deepLeaf, [deepLeaf, inter2, inter], nonce),
        'the chain exceeds a path length constraint',
      );
    });

    it('a leaf whose key usage lacks digitalSignature, or whose EKU lacks clientAuth', async () => {
      const a = await challenge();
      await expectRefused(
        evidence(noSignLeaf, [noSignLeaf, inter], a),
        'the leaf certificate may not sign (key usage lacks digitalSignature)',
      );
      const c = await challenge();
      await expectRefused(
        evidence(serverOnlyLeaf, [serverOnlyLeaf, inter], c),
        'the leaf certificate is not for client authentication (extended key usage)',
      );
    });

    it('a leaf with a weak key (RSA-1024)', async () => {
      const weak = pki.issue({ cn: 'workload-rsa', keyType: 'rsa-1024', issuer: inter });
      const nonce = await challenge();
      await expectRefused(
        evidence(weak, [weak, inter], nonce),
        'a certificate of the chain has a weak or unsupported key',
      );
    });

    it('malformed chains: junk, two certificates in one entry', async () => {
      const junk = await challenge();
      await expectRefused(
        {
          ...evidence(leafEc, [leafEc], junk),
          chain: ['-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'],
        },
        'the certificate chain is malformed',
      );
      const glued = await challenge();
      await expectRefused(
        { ...evidence(leafEc, [leafEc], glued), chain: [leafEc.pem + inter.pem] },
        'the certificate chain is malformed',
      );
    });

    it('evidence of the wrong shape', async () => {
      const res = await attest({ nonce: 'x', chain: [], signature: '' });
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('ERR_ATTESTATION_FAILED');
      expect(res.body.error_description).toMatch(/^x509pop: evidence must be /);
    });
  });
});
