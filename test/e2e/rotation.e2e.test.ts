// Key rotation end to end: JWT signing keys and the X.509 CA rotate (admin "rotate now" with MFA, the dev
// timer, the worker's BullMQ repeatable job); what was issued before keeps verifying until it expires, what is
// issued after is signed by the key published before it signed, the bundle's sequence increases, and retired
// keys leave the bundle once everything they signed has expired. Judged by jose and by openssl.
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import { generateSync } from 'otplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rotateDue } from '../../src/keys/rotation.ts';
import { createCsr } from '../../src/keys/x509/index.ts';
import { startTestBroker, type TestBroker, type TestResponse } from '../helpers/broker.ts';
import { FakeClock } from '../helpers/clock.ts';
import { uniquePrefix } from '../helpers/redis.ts';
import { waitFor } from '../helpers/wait.ts';
import { issueSvid } from '../helpers/workload.ts';
import { issueX509Svid } from '../helpers/x509.ts';
import { openssl, type TempDir, tempDir } from '../unit/x509/helpers.ts';

const TD = 'example.org';
const WORKLOAD = `spiffe://${TD}/rotating`;
const AUDIENCE = 'https://api.example';

const csr = () => createCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey);
const kidOf = (token: string) => decodeProtectedHeader(token).kid;
const kids = (jwks: JSONWebKeySet) => jwks.keys.map((k) => k.kid);
const pemCerts = (pem: string) =>
  pem
    .split(/(?<=-----END CERTIFICATE-----\n)/)
    .filter((p) => p.includes('BEGIN CERTIFICATE'))
    .map((p) => new X509Certificate(p));
/** The key id in a certificate's CRL distribution point (`.../v1/crl/<key id>`). */
const crlKeyIdOf = (cert: string) =>
  /\/v1\/crl\/([0-9a-f]{40})/.exec(new X509Certificate(cert).raw.toString('latin1'))?.[1];

interface Account {
  token: string;
  secret: string;
  last: number;
}

/** A fresh code: the oldest step of the ±1 window not used yet; the clock moves on when the window is used up. */
function freshCode(a: Account, clock: FakeClock): string {
  let current = Math.floor(clock.now() / 30_000);
  const step = Math.max(current - 1, a.last + 1);
  if (step > current + 1) {
    clock.advance((step - current - 1) * 30_000);
    current = step - 1;
  }
  a.last = step;
  return generateSync({ secret: a.secret, epoch: step * 30 });
}

describe.each(['redis', 'memory'] as const)('key rotation with the %s store', (store) => {
  const clock = new FakeClock();
  let b: TestBroker;
  let t: TempDir;
  let admin: Account;

  const rotate = (ring: string, otp?: string): Promise<TestResponse> =>
    b.request('POST', '/v1/admin/keys/rotate', {
      body: { ring },
      headers: { authorization: `Bearer ${admin.token}`, ...(otp ? { 'x-writ-otp': otp } : {}) },
    });
  const get = async (path: string) => {
    const res = await b.request('GET', path);
    expect(res.status, path).toBe(200);
    return res;
  };
  const verifyJwt = async (token: string, jwks: JSONWebKeySet) =>
    jwtVerify(token, createLocalJWKSet(jwks), {
      issuer: b.url,
      audience: AUDIENCE,
      algorithms: ['ES256'],
      currentDate: new Date(clock.now()),
    });
  const opensslVerify = async (name: string, cert: string, bundle: string, crl?: string) => {
    await t.write(`${name}.pem`, cert);
    await t.write(`${name}-bundle.pem`, bundle);
    const args = [
      'verify',
      '-x509_strict',
      '-attime',
      String(clock.seconds()),
      '-CAfile',
      `${name}-bundle.pem`,
    ];
    if (crl !== undefined) {
      await t.write(`${name}-crl.pem`, crl);
      args.push('-crl_check', '-CRLfile', `${name}-crl.pem`);
    }
    return openssl([...args, `${name}.pem`], t.dir);
  };

  beforeAll(async () => {
    t = await tempDir('writ-rotation-');
    b = await startTestBroker({
      store,
      clock: clock.clock,
      config: {
        trustDomain: TD,
        credentials: { maxTtl: 3600, jwtDefaultTtl: 600, x509DefaultTtl: 600 },
        // On demand only here: the scheduled paths have their own tests below.
        keys: { rotation: { jwtInterval: 0, caInterval: 0 } },
      },
    });
    const created = await b.admin('POST', '/v1/admin/accounts', { name: `rotator-${store}` });
    expect(created.status).toBe(201);
    const secret = new URL(created.body.otpauthUri as string).searchParams.get('secret') ?? '';
    admin = { token: created.body.token as string, secret, last: -1 };
  });
  afterAll(async () => {
    await b?.close();
    await t?.cleanup();
  });

  it('keeps what was issued before a rotation valid until it expires, and signs anew with the published next key', async () => {
    const bundle0 = (await get('/v1/bundle')).body;
    const jwks0 = (await get('/.well-known/jwks.json')).body as JSONWebKeySet;
    const pem0 = (await get('/v1/bundle.pem')).text;
    const status0 = (await b.admin('GET', '/v1/admin/keys')).body;
    expect(status0.jwt.keys.map((k: { state: string }) => k.state)).toEqual(['current', 'next']);
    expect(status0.x509.authorities.map((k: { state: string }) => k.state)).toEqual(['current', 'next']);
    const [oldKid, nextKid] = kids(jwks0);
    const [oldCa, nextCa] = status0.x509.authorities as { keyId: string }[];

    const oldJwt = await issueSvid(b, WORKLOAD, { audience: [AUDIENCE], ttl: 600 });
    expect(kidOf(oldJwt.token)).toBe(oldKid);
    const oldCert = await issueX509Svid(b, WORKLOAD, csr(), { ttl: 600 });
    expect(crlKeyIdOf(oldCert.certificate)).toBe(oldCa?.keyId);

    // Rotating needs a fresh TOTP code.
    const refused = await rotate('all');
    expect(refused.status).toBe(401);
    expect(refused.body.error).toBe('ERR_OTP_REQUIRED');
    expect((await get('/v1/bundle')).body.spiffe_sequence).toBe(bundle0.spiffe_sequence);
    // The next keys have been published since the start; they may sign once every relying party's cached
    // bundle holds them (keys.bundleRefreshHint 300 s + keys.rotation.refreshInterval 10 s).
    clock.advance(300_000);
    const early = await rotate('all', freshCode(admin, clock));
    expect(early.status).toBe(409);
    expect(early.body.error).toBe('ERR_ROTATION_TOO_SOON');
    expect(Number(early.headers.get('retry-after'))).toBeGreaterThanOrEqual(10);
    expect((await b.admin('GET', '/v1/admin/keys')).body).toEqual(status0);
    // refused before anything happened, so nothing was audited either
    const trail = await b.admin('GET', '/v1/admin/audit?limit=1000');
    expect((trail.body.records as { type: string }[]).filter((r) => r.type === 'admin.keys.rotate')).toEqual(
      [],
    );
    clock.advance(11_000);
    const rotated = await rotate('all', freshCode(admin, clock));
    expect(rotated.status, JSON.stringify(rotated.body)).toBe(200);
    expect(JSON.stringify(rotated.body)).not.toMatch(/PRIVATE KEY|"d":/);
    expect(rotated.body.jwt.keys.map((k: { kid: string; state: string }) => [k.kid, k.state])).toEqual([
      [nextKid, 'current'],
      [expect.any(String), 'next'],
      [oldKid, 'retired'],
    ]);
    expect(
      rotated.body.x509.authorities.map((k: { keyId: string; state: string }) => [k.keyId, k.state]),
    ).toEqual([
      [nextCa?.keyId, 'current'],
      [expect.any(String), 'next'],
      [oldCa?.keyId, 'retired'],
    ]);

    // The bundle changed, so its sequence increased; it still holds the old keys and roots.
    const bundle1 = (await get('/v1/bundle')).body;
    expect(bundle1.spiffe_sequence).toBeGreaterThan(bundle0.spiffe_sequence);
    const jwks1 = (await get('/.well-known/jwks.json')).body as JSONWebKeySet;
    expect(kids(jwks1)).toEqual(expect.arrayContaining([oldKid, nextKid]));
    const pem1 = (await get('/v1/bundle.pem')).text;
    expect(pemCerts(pem1)).toHaveLength(3);

    // Issued before: still verifies, with the keys published after the rotation (jose; openssl strict).
    await expect(verifyJwt(oldJwt.token, jwks1)).resolves.toBeDefined();
    const oldOk = await opensslVerify('old', oldCert.certificate, pem1);
    expect(oldOk.stdout + oldOk.stderr).toContain('old.pem: OK');

    // Issued after: signed by the key that was published as next before the rotation, and only by it.
    const newJwt = await issueSvid(b, WORKLOAD, { audience: [AUDIENCE] });
    expect(kidOf(newJwt.token)).toBe(nextKid);
    await expect(verifyJwt(newJwt.token, jwks0)).resolves.toBeDefined(); // a relying party's cache from before
    const newCert = await issueX509Svid(b, WORKLOAD, csr());
    expect(crlKeyIdOf(newCert.certificate)).toBe(nextCa?.keyId);
    const [root0, root1] = pemCerts(pem0);
    const leaf = new X509Certificate(newCert.certificate);
    expect(leaf.checkIssued(root1 as X509Certificate)).toBe(true);
    expect(leaf.verify((root1 as X509Certificate).publicKey)).toBe(true);
    expect(leaf.verify((root0 as X509Certificate).publicKey)).toBe(false);
    expect(newCert.bundle).toBe(pem1);
    // A client holding the bundle from before the rotation already trusts the new certificates.
    const newOk = await opensslVerify('new', newCert.certificate, pem0);
    expect(newOk.stdout + newOk.stderr).toContain('new.pem: OK');

    // The retired CA still publishes its CRL: a revoked old certificate is listed on it, signed by it.
    const revoked = await b.admin('POST', `/v1/admin/credentials/${oldCert.id}/revoke`, {
      reason: 'superseded',
    });
    expect(revoked.status).toBe(200);
    const oldCrl = await waitFor(
      async () => {
        const res = await get(`/v1/crl/${oldCa?.keyId}?format=pem`);
        return res.text.length > 0 &&
          (await opensslVerify('old-revoked', oldCert.certificate, pem1, res.text)).code !== 0
          ? res.text
          : undefined;
      },
      { what: "the old certificate on its CA's CRL" },
    );
    const checked = await opensslVerify('old-revoked', oldCert.certificate, pem1, oldCrl);
    expect(checked.stdout + checked.stderr).toMatch(/certificate revoked/);
    // The new CA's CRL verifies the new certificate as good.
    const newCrl = (await get(`/v1/crl/${nextCa?.keyId}?format=pem`)).text;
    const good = await opensslVerify('new-crl', newCert.certificate, pem1, newCrl);
    expect(good.stdout + good.stderr).toContain('new-crl.pem: OK');
    expect((await b.request('GET', '/v1/crl/00ff')).status).toBe(404);

    // Once they expire, what was issued before no longer verifies; the keys stay until everything they
    // signed has expired, then the scheduled check drops them and the sequence increases again.
    clock.advance(601_000);
    await expect(verifyJwt(oldJwt.token, jwks1)).rejects.toThrow(/exp/);
    const deps = b.broker.deps;
    await rotateDue({ store: deps.store, clock: deps.clock, logger: deps.logger, config: deps.config });
    await deps.keys.ring.refresh();
    expect(kids((await get('/.well-known/jwks.json')).body)).toContain(oldKid);
    clock.advance(3600_000);
    const results = await rotateDue({
      store: deps.store,
      clock: deps.clock,
      logger: deps.logger,
      config: deps.config,
    });
    expect(results.map((r) => [r.ring, r.rotated, r.pruned])).toEqual([
      ['jwt', false, 1],
      ['x509', false, 1],
    ]);
    await Promise.all([deps.keys.ring.refresh(), deps.cas.ring.refresh()]);
    const jwks2 = (await get('/.well-known/jwks.json')).body as JSONWebKeySet;
    expect(kids(jwks2)).not.toContain(oldKid);
    expect(kids(jwks2)).toContain(nextKid);
    expect(pemCerts((await get('/v1/bundle.pem')).text).map((c) => c.fingerprint256)).not.toContain(
      root0?.fingerprint256,
    );
    expect((await get('/v1/bundle')).body.spiffe_sequence).toBeGreaterThan(bundle1.spiffe_sequence);
    expect((await b.request('GET', `/v1/crl/${oldCa?.keyId}`)).status).toBe(404);
  });

  it('after a compromise, drops every key of the ring at once: what they signed no longer verifies', async () => {
    const before = (await b.admin('GET', '/v1/admin/keys')).body;
    const token = (await issueSvid(b, WORKLOAD, { audience: [AUDIENCE] })).token;
    const cert = await issueX509Svid(b, WORKLOAD, csr());
    expect(
      (
        await b.request('POST', '/v1/introspect', {
          body: { token },
          headers: { authorization: `Bearer ${b.adminToken}` },
        })
      ).body.active,
    ).toBe(true);
    const replaced = await b.request('POST', '/v1/admin/keys/rotate', {
      body: { ring: 'all', compromised: true },
      headers: { authorization: `Bearer ${admin.token}`, 'x-writ-otp': freshCode(admin, clock) },
    });
    expect(replaced.status, JSON.stringify(replaced.body)).toBe(200);
    const oldKids = before.jwt.keys.map((k: { kid: string }) => k.kid);
    const oldCas = before.x509.authorities.map((k: { keyId: string }) => k.keyId);
    expect(replaced.body.jwt.keys.map((k: { state: string }) => k.state)).toEqual(['current', 'next']);
    for (const k of replaced.body.jwt.keys) expect(oldKids).not.toContain(k.kid);
    for (const a of replaced.body.x509.authorities) expect(oldCas).not.toContain(a.keyId);
    const jwks = (await get('/.well-known/jwks.json')).body as JSONWebKeySet;
    await expect(verifyJwt(token, jwks)).rejects.toThrow();
    expect(
      (
        await b.request('POST', '/v1/introspect', {
          body: { token },
          headers: { authorization: `Bearer ${b.adminToken}` },
        })
      ).body.active,
    ).toBe(false);
    const pem = (await get('/v1/bundle.pem')).text;
    const refused = await opensslVerify('compromised', cert.certificate, pem);
    expect(refused.code).not.toBe(0);
    const fresh = await issueX509Svid(b, WORKLOAD, csr());
    const ok = await opensslVerify('after-compromise', fresh.certificate, pem);
    expect(ok.stdout + ok.stderr).toContain('after-compromise.pem: OK');
    expect(kidOf((await issueSvid(b, WORKLOAD, { audience: [AUDIENCE] })).token)).toBe(
      replaced.body.jwt.keys[0].kid,
    );
  });

  it('audits a rotation, and refuses bad bodies without changing anything', async () => {
    const before = (await b.admin('GET', '/v1/admin/keys')).body;
    const bad = await rotate('everything', freshCode(admin, clock));
    expect(bad.status).toBe(400);
    expect((await b.admin('GET', '/v1/admin/keys')).body).toEqual(before);
    const audit = await b.admin('GET', '/v1/admin/audit?limit=1000');
    const rotations = (audit.body.records as { type: string; actor: string }[]).filter(
      (e) => e.type === 'admin.keys.rotate',
    );
    expect(rotations.length).toBeGreaterThanOrEqual(1);
    expect(rotations[0]?.actor).toBe(`admin:rotator-${store}`);
  });
});

describe('key rotation across replicas', () => {
  let a: TestBroker;
  let c: TestBroker;
  beforeAll(async () => {
    const config = {
      trustDomain: TD,
      redis: { prefix: uniquePrefix('rotation-replicas') },
      keys: { bundleRefreshHint: 1, rotation: { jwtInterval: 0, caInterval: 0, refreshInterval: 1 } },
    };
    a = await startTestBroker({ store: 'redis', config });
    c = await startTestBroker({ store: 'redis', config });
  });
  afterAll(async () => {
    await Promise.all([a?.close(), c?.close()]);
  });

  it('share one ring: a rotation on one replica reaches the other within its refresh interval', async () => {
    const jwks = (await a.request('GET', '/.well-known/jwks.json')).body as JSONWebKeySet;
    expect((await c.request('GET', '/.well-known/jwks.json')).body).toEqual(jwks);
    // The next key may sign once published for keys.bundleRefreshHint + refreshInterval (1 s + 1 s here).
    const rotated = await waitFor(
      async () => {
        const res = await a.admin('POST', '/v1/admin/keys/rotate', { ring: 'jwt' });
        if (res.status === 409) expect(res.body.error).toBe('ERR_ROTATION_TOO_SOON');
        return res.status === 200 ? res : undefined;
      },
      {
        what: 'the rotation once the next key was published long enough',
        timeoutMs: 10_000,
        intervalMs: 250,
      },
    );
    expect(rotated.body.jwt.keys.map((k: { state: string }) => k.state)).toEqual([
      'current',
      'next',
      'retired',
    ]);
    expect(rotated.body.jwt.keys[0].kid).toBe(jwks.keys[1]?.kid);
    // The other replica signs with the new key once it re-read the ring (keys.rotation.refreshInterval: 1 s);
    // until then it signs with the retired key, which every relying party still trusts.
    await waitFor(
      async () => {
        const token = (await issueSvid(c, `spiffe://${TD}/w`)).token;
        return kidOf(token) === jwks.keys[1]?.kid ? token : undefined;
      },
      { what: 'the other replica signing with the new key', timeoutMs: 10_000, intervalMs: 200 },
    );
    const seen = (await c.request('GET', '/.well-known/jwks.json')).body;
    expect(seen).toEqual((await a.request('GET', '/.well-known/jwks.json')).body);
    expect((await c.request('GET', '/v1/bundle')).body.spiffe_sequence).toBe(
      (await a.request('GET', '/v1/bundle')).body.spiffe_sequence,
    );
  });
});

describe.each(['redis', 'memory'] as const)('scheduled rotation with the %s store', (store) => {
  let b: TestBroker;
  beforeAll(async () => {
    b = await startTestBroker({
      store,
      config: {
        trustDomain: TD,
        // Short credentials: a ring keeps at most 64 retired keys, each while its credentials may live.
        credentials: { maxTtl: 60, jwtDefaultTtl: 60, x509DefaultTtl: 60 },
        // The smallest schedule the config allows: a key signs for 3 s, after 2 s of being published.
        keys: {
          bundleRefreshHint: 1,
          rotation: { jwtInterval: 3, caInterval: 0, checkInterval: 1, refreshInterval: 1 },
        },
      },
    });
  });
  afterAll(async () => {
    await b?.close();
  });

  it(`rotates the JWT key on schedule (${store === 'redis' ? "the worker's BullMQ repeatable job" : 'the dev timer'})`, async () => {
    const first = (await b.request('GET', '/.well-known/jwks.json')).body as JSONWebKeySet;
    const sequence = (await b.request('GET', '/v1/bundle')).body.spiffe_sequence as number;
    const issued = await issueSvid(b, `spiffe://${TD}/scheduled`);
    expect(kidOf(issued.token)).toBe(first.keys[0]?.kid);
    const later = await waitFor(
      async () => {
        const jwks = (await b.request('GET', '/.well-known/jwks.json')).body as JSONWebKeySet;
        return jwks.keys[0]?.kid !== first.keys[0]?.kid ? jwks : undefined;
      },
      { what: 'a scheduled rotation', timeoutMs: 20_000 },
    );
    expect(later.keys[0]?.kid).toBe(first.keys[1]?.kid);
    expect(kids(later)).toContain(first.keys[0]?.kid);
    expect((await b.request('GET', '/v1/bundle')).body.spiffe_sequence).toBeGreaterThan(sequence);
    const jwks = createLocalJWKSet(later);
    await expect(
      jwtVerify(issued.token, jwks, { issuer: b.url, algorithms: ['ES256'] }),
    ).resolves.toBeDefined();
  });
});
