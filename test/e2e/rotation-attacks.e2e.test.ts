// Attacks on key rotation, end to end (real brokers over HTTP, the real Redis, real TLS): forged and confused
// tokens around a rotation, the compromise response (`compromised: true`), replicas that disagree on the
// ring, lost and malformed ring documents, the broker's own HTTPS certificate after a CA rotation, the admin
// endpoints, the CRL path parameter, and a Redis outage under the rotation machinery.
//
// A normal rotation waits until the next key has been published for keys.bundleRefreshHint +
// keys.rotation.refreshInterval seconds (counted from when the ring was created or last rotated): the tests
// move a FakeClock past that lead (`pastLead`) where they rotate. How long a replica keeps signing while it
// cannot re-read its ring is bounded in real time (LiveRing staleAfterMs): see
// test/unit/keys/live-ring-stale.test.ts.
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type KeyObject,
  randomUUID,
  X509Certificate,
} from 'node:crypto';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:tls';
import {
  calculateJwkThumbprint,
  decodeJwt,
  decodeProtectedHeader,
  exportJWK,
  type JSONWebKeySet,
  SignJWT,
} from 'jose';
import { generateSync } from 'otplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { publicationLead, retainSeconds, rotateDue, rotateNow } from '../../src/keys/rotation.ts';
import { createVerifier, type Verifier } from '../../src/verify/index.ts';
import { startTestBroker, type TestBroker, type TestResponse } from '../helpers/broker.ts';
import { FakeClock } from '../helpers/clock.ts';
import { newKey } from '../helpers/mtls.ts';
import { deleteKeys, testRedis, uniquePrefix } from '../helpers/redis.ts';
import { type RedisServer, restartRedisServer, startRedisServer } from '../helpers/redis-server.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import { issueSvid } from '../helpers/workload.ts';

const TD = 'example.org';
const WORKLOAD = `spiffe://${TD}/rotation-attacks`;
const AUDIENCE = 'https://api.example';
/** The one URL of replicas behind a load balancer (tests with several replicas of one trust domain). */
const ISSUER = 'https://writ.example.org';
const JWT_RING = 'jwt-ring:ES256';
const CA_RING = 'x509-ca-ring';
const JWT_LEGACY = 'jwt-signing:ES256';

interface Slot {
  pem: string;
  createdAt: number;
  activatedAt?: number;
  retainUntil?: number;
  notAfter?: number;
}
interface RingDoc {
  v: 1;
  sequence: number;
  current: Slot;
  next: Slot;
  retired: Slot[];
}

const kidOf = (token: string) => decodeProtectedHeader(token).kid;
const kids = (jwks: JSONWebKeySet) => jwks.keys.map((k) => k.kid);
const slotsOf = (doc: RingDoc) => [doc.current, doc.next, ...doc.retired];
const privateKeyOf = (pem: string): KeyObject => {
  const block = /-----BEGIN PRIVATE KEY-----[\s\S]+?-----END PRIVATE KEY-----/.exec(pem)?.[0];
  return createPrivateKey(block ?? pem);
};
/** The kid Writ gives a key: its RFC 7638 thumbprint. */
const kidOfPem = async (pem: string) =>
  calculateJwkThumbprint(await exportJWK(createPublicKey(privateKeyOf(pem))), 'sha256');
const rootsOf = (pem: string) =>
  pem
    .split(/(?<=-----END CERTIFICATE-----\n)/)
    .filter((p) => p.includes('BEGIN CERTIFICATE'))
    .map((p) => new X509Certificate(p));
const chainsTo = (cert: X509Certificate, roots: X509Certificate[]) =>
  roots.some((root) => cert.checkIssued(root) && cert.verify(root.publicKey));

/** Moves the clock past the time a next key must have been published before a normal rotation may promote it. */
function pastLead(clock: FakeClock, b: TestBroker): void {
  clock.advance((publicationLead(b.broker.deps.config) + 1) * 1000);
}

async function forge(
  key: KeyObject | Uint8Array,
  header: { alg: string; kid?: string | undefined },
  claims: Record<string, unknown>,
): Promise<string> {
  const { alg, kid } = header;
  return new SignJWT(claims)
    .setProtectedHeader(kid === undefined ? { alg, typ: 'JWT' } : { alg, kid, typ: 'JWT' })
    .sign(key);
}

function forgedClaims(issuer: string, now: number) {
  return {
    sub: `spiffe://${TD}/attacker`,
    aud: [AUDIENCE],
    iss: issuer,
    jti: randomUUID(),
    task: `forged-${randomUUID()}`,
    iat: now,
    nbf: now - 5,
    exp: now + 300,
  };
}

async function introspect(b: TestBroker, token: string): Promise<TestResponse> {
  return b.request('POST', '/v1/introspect', {
    body: { token },
    headers: { authorization: `Bearer ${b.adminToken}` },
  });
}

async function authorize(b: TestBroker, token: string): Promise<TestResponse> {
  return b.request('POST', '/v1/authorize', { body: { token, action: 'read', resource: 'doc' } });
}

/** Neither introspection nor /v1/authorize takes the token for a live credential. */
async function expectInactive(b: TestBroker, token: string, name: string): Promise<void> {
  const res = await introspect(b, token);
  expect(res.status, name).toBe(200);
  expect(res.body, name).toEqual({ active: false });
  const decision = await authorize(b, token);
  expect(decision.status, name).toBe(200);
  expect(decision.body, name).toEqual({ decision: 'deny', reasons: ['credential_inactive'] });
}

async function readRingDoc(b: TestBroker, name: string): Promise<RingDoc> {
  const redis = await testRedis();
  try {
    const raw = await redis.get(`${b.broker.deps.config.redis.prefix}keys:${name}`);
    if (raw === null) throw new Error(`no ring ${name}`);
    return JSON.parse(raw) as RingDoc;
  } finally {
    redis.disconnect();
  }
}

const rotationDeps = (b: TestBroker) => {
  const { store, clock, logger, config } = b.broker.deps;
  return { store, clock, logger, config };
};

async function refreshRings(b: TestBroker): Promise<void> {
  await Promise.all([b.broker.deps.keys.ring.refresh(), b.broker.deps.cas.ring.refresh()]);
}

async function jwksOf(b: TestBroker): Promise<JSONWebKeySet> {
  const res = await b.request('GET', '/.well-known/jwks.json');
  expect(res.status).toBe(200);
  return res.body as JSONWebKeySet;
}

async function rotate(b: TestBroker, ring: 'jwt' | 'x509' | 'all', compromised?: boolean) {
  return b.admin(
    'POST',
    '/v1/admin/keys/rotate',
    compromised === undefined ? { ring } : { ring, compromised },
  );
}

/** A refused normal rotation: 409 ERR_ROTATION_TOO_SOON, with a Retry-After in whole seconds. */
function expectTooSoon(res: TestResponse, what: string): void {
  expect(res.status, what).toBe(409);
  expect(res.body.error, what).toBe('ERR_ROTATION_TOO_SOON');
  expect(res.headers.get('retry-after') ?? '', what).toMatch(/^[1-9][0-9]*$/);
}

describe('forged and confused tokens around a rotation', () => {
  const clock = new FakeClock();
  let b: TestBroker;

  beforeAll(async () => {
    b = await startTestBroker({
      store: 'redis',
      clock: clock.clock,
      config: {
        trustDomain: TD,
        credentials: { maxTtl: 600, jwtDefaultTtl: 300, x509DefaultTtl: 300 },
        keys: { rotation: { jwtInterval: 0, caInterval: 0, refreshInterval: 3600 } },
        lifecycle: { worker: false },
      },
    });
  });
  afterAll(async () => {
    await b?.close();
  });

  it('refuses tokens signed by a pruned key, a published key other than the one recorded, a never-published key, the CA key, HS256 or none, even with the claims of a live credential', async () => {
    const leakedOld = (await readRingDoc(b, JWT_RING)).current.pem;
    const oldKid = await kidOfPem(leakedOld);
    expect(kids(await jwksOf(b))).toContain(oldKid);
    // Retire the key (once its successor has been published for the lead), then let its retention pass: the
    // scheduled check prunes it.
    expectTooSoon(await rotate(b, 'jwt'), 'a rotation right after the ring was created');
    pastLead(clock, b);
    expect((await rotate(b, 'jwt')).status).toBe(200);
    clock.advance((retainSeconds(b.broker.deps.config) + 1) * 1000);
    const pruned = await rotateDue(rotationDeps(b));
    expect(pruned.find((r) => r.ring === 'jwt')?.pruned).toBe(1);
    await refreshRings(b);
    expect(kids(await jwksOf(b))).not.toContain(oldKid);

    // A live credential, signed by the current key, that may end its task (the broker is in its audience):
    // its claims are what the forgeries copy. And a live X.509-SVID, whose record is no JWT's.
    const live = await issueSvid(b, WORKLOAD, { audience: [AUDIENCE, b.url] });
    expect((await introspect(b, live.token)).body.active).toBe(true);
    const jt = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: WORKLOAD });
    expect(jt.status).toBe(201);
    const x509 = await b.request('POST', '/v1/svid/x509', {
      body: { attestor: 'join_token', evidence: { token: jt.body.token }, csr: newKey().csr },
    });
    expect(x509.status, JSON.stringify(x509.body)).toBe(200);
    const claims = decodeJwt(live.token);
    const x509Claims = { ...claims, sub: x509.body.spiffeId, jti: x509.body.id, task: x509.body.task };
    const currentKid = kidOf(live.token);
    // The next key is published (JWKS) but is not the key recorded with the credential.
    const nextPem = (await readRingDoc(b, JWT_RING)).next.pem;
    const nextKid = await kidOfPem(nextPem);
    expect(kids(await jwksOf(b))).toContain(nextKid);
    expect(nextKid).not.toBe(currentKid);
    const caDoc = await readRingDoc(b, CA_RING);
    const caKey = privateKeyOf(caDoc.current.pem);
    const caKeyId = b.broker.deps.cas.current().keyId;
    const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

    const forgeries: Record<string, { token: string; task: string }> = {};
    const add = async (name: string, token: Promise<string> | string, task = live.task) => {
      forgeries[name] = { token: await token, task };
    };
    await add(
      'pruned key, its own kid',
      forge(privateKeyOf(leakedOld), { alg: 'ES256', kid: oldKid }, claims),
    );
    await add(
      'pruned key, the current kid',
      forge(privateKeyOf(leakedOld), { alg: 'ES256', kid: currentKid }, claims),
    );
    await add(
      'the next (published) key, its own kid',
      forge(privateKeyOf(nextPem), { alg: 'ES256', kid: nextKid }, claims),
    );
    await add(
      'the next (published) key, the claims of a live X.509-SVID',
      forge(privateKeyOf(nextPem), { alg: 'ES256', kid: nextKid }, x509Claims),
      x509.body.task,
    );
    await add(
      'never-published key, the current kid',
      forge(stranger, { alg: 'ES256', kid: currentKid }, claims),
    );
    await add('the CA key, the CA key id as kid', forge(caKey, { alg: 'ES256', kid: caKeyId }, claims));
    await add(
      'the CA key, the CA key id as kid, the claims of a live X.509-SVID',
      forge(caKey, { alg: 'ES256', kid: caKeyId }, x509Claims),
      x509.body.task,
    );
    await add('the CA key, the current kid', forge(caKey, { alg: 'ES256', kid: currentKid }, claims));
    await add(
      'HS256 keyed with the public JWK',
      forge(
        Buffer.from(JSON.stringify((await jwksOf(b)).keys[0])),
        { alg: 'HS256', kid: currentKid },
        claims,
      ),
    );
    await add('alg none', `${b64({ alg: 'none', kid: currentKid, typ: 'JWT' })}.${b64(claims)}.`);
    await add('no kid', forge(stranger, { alg: 'ES256' }, claims));

    for (const [name, { token, task }] of Object.entries(forgeries)) {
      await expectInactive(b, token, name);
      // Nor does it end the credential's task, or revoke the credential (RFC 7009 answers 200 regardless).
      const complete = await b.request('POST', `/v1/tasks/${task}/complete`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(complete.status, name).toBe(401);
      const revoke = await b.request('POST', '/oauth2/revoke', {
        raw: new URLSearchParams({ token }).toString(),
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
      });
      expect(revoke.status, name).toBe(200);
    }
    // The real credentials came through untouched.
    expect((await introspect(b, live.token)).body.active).toBe(true);
    for (const id of [live.id, x509.body.id as string]) {
      const view = await b.admin('GET', `/v1/admin/credentials/${id}`);
      expect(view.body, id).toMatchObject({ status: 'active', taskStatus: 'active' });
    }
  });
});

describe('the compromise response: rotate with compromised: true', () => {
  const clock = new FakeClock();
  let b: TestBroker;

  beforeAll(async () => {
    b = await startTestBroker({
      store: 'redis',
      clock: clock.clock,
      config: {
        trustDomain: TD,
        credentials: { maxTtl: 600, jwtDefaultTtl: 300, x509DefaultTtl: 300 },
        keys: { rotation: { jwtInterval: 0, caInterval: 0 } },
        lifecycle: { worker: false },
      },
    });
  });
  afterAll(async () => {
    await b?.close();
  });

  /** A relying party using Writ's SDK (JWKS + revocation feed), started after the response. */
  async function relyingParty(): Promise<Verifier> {
    const verifier = createVerifier({ issuer: b.url, audience: AUDIENCE, trustDomain: TD, now: clock.clock });
    await verifier.start();
    return verifier;
  }

  /** One normal rotation, so that the ring holds a retired key besides current and next. */
  async function ringWithRetiredKey(ring: 'jwt' | 'all'): Promise<RingDoc> {
    pastLead(clock, b);
    expect((await rotate(b, ring)).status).toBe(200);
    const doc = await readRingDoc(b, JWT_RING);
    expect(doc.retired.length).toBeGreaterThan(0);
    return doc;
  }

  /**
   * Forgeries with every key of the leaked ring (its own kid, and the kid now signing), with made-up claims
   * and with the claims of a credential that was live before the response: refused by the SDK, introspection
   * and /v1/authorize.
   */
  async function expectLeakedRingDead(leaked: RingDoc, verifier: Verifier, liveBefore: string) {
    const signingKid = b.broker.deps.keys.current().kid;
    for (const [i, slot] of slotsOf(leaked).entries()) {
      const key = privateKeyOf(slot.pem);
      const kid = await kidOfPem(slot.pem);
      const state = i === 0 ? 'current' : i === 1 ? 'next' : 'retired';
      const now = clock.seconds();
      const made = {
        [`old ${state} key, its own kid`]: await forge(key, { alg: 'ES256', kid }, forgedClaims(b.url, now)),
        [`old ${state} key, the new current kid`]: await forge(
          key,
          { alg: 'ES256', kid: signingKid },
          forgedClaims(b.url, now),
        ),
        [`old ${state} key, its own kid, the claims of a live credential`]: await forge(
          key,
          { alg: 'ES256', kid },
          { ...decodeJwt(liveBefore), iat: now, nbf: now - 5, exp: now + 300 },
        ),
      };
      for (const [name, token] of Object.entries(made)) {
        await expect(verifier.verify(token), name).rejects.toThrow();
        await expectInactive(b, token, name);
      }
    }
  }

  it('stops every key of a leaked ring document, the "next" key included, from verifying forgeries', async () => {
    // The leak: a copy of the ring document (a Redis dump or backup holds every private key of the ring).
    const leaked = await ringWithRetiredKey('jwt');
    const before = await issueSvid(b, WORKLOAD, { audience: [AUDIENCE] });
    expect(kidOf(before.token)).toBe(await kidOfPem(leaked.current.pem));
    const leakedKids = await Promise.all(slotsOf(leaked).map((s) => kidOfPem(s.pem)));
    expect(kids(await jwksOf(b)).sort()).toEqual([...leakedKids].sort());

    // The response: no waiting for a publication lead.
    const res = await rotate(b, 'jwt', true);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const after = await readRingDoc(b, JWT_RING);
    expect(after.retired).toEqual([]);
    const leakedPems = new Set(slotsOf(leaked).map((s) => s.pem));
    for (const slot of slotsOf(after)) expect(leakedPems.has(slot.pem)).toBe(false);
    const published = kids(await jwksOf(b));
    expect(published).toHaveLength(2);
    for (const kid of leakedKids) expect(published).not.toContain(kid);

    const verifier = await relyingParty();
    try {
      // The SDK works: a credential issued after the response verifies.
      const fresh = await issueSvid(b, WORKLOAD, { audience: [AUDIENCE] });
      expect(published).toContain(kidOf(fresh.token));
      await expect(verifier.verify(fresh.token)).resolves.toMatchObject({ spiffeId: WORKLOAD });
      expect((await introspect(b, fresh.token)).body.active).toBe(true);
      // What the old keys signed, genuine or forged, stops verifying at once.
      await expect(verifier.verify(before.token)).rejects.toThrow();
      await expectInactive(b, before.token, 'signed by the old current key before the response');
      await expectLeakedRingDead(leaked, verifier, before.token);
    } finally {
      verifier.close();
    }
  });

  it('stops the retired (compromised) key, and the CA of the leaked ring, once the response is rotate-all-compromised and a bulk revocation', async () => {
    // The key leaked while current; a routine rotation already retired it (still published for its tokens).
    const leaked = await ringWithRetiredKey('all');
    const leakedCa = await readRingDoc(b, CA_RING);
    const before = await issueSvid(b, WORKLOAD, { audience: [AUDIENCE] });
    const oldRoots = rootsOf((await b.request('GET', '/v1/bundle.pem')).text).map((r) => r.fingerprint256);
    const oldCaIds = b.broker.deps.cas.published().map((ca) => ca.keyId);
    expect(oldCaIds).toHaveLength(3);

    const res = await rotate(b, 'all', true);
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const revoked = await b.admin('POST', '/v1/admin/revocations', {
      attestor: 'join_token',
      reason: 'key_compromise',
    });
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);

    // The X.509 side: no root of the leaked CA ring is published any more, nor its CRLs.
    const roots = rootsOf((await b.request('GET', '/v1/bundle.pem')).text).map((r) => r.fingerprint256);
    expect(roots).toHaveLength(2);
    for (const fp of oldRoots) expect(roots).not.toContain(fp);
    const caPems = new Set(slotsOf(leakedCa).map((s) => s.pem));
    for (const slot of slotsOf(await readRingDoc(b, CA_RING))) expect(caPems.has(slot.pem)).toBe(false);
    for (const keyId of oldCaIds)
      expect((await b.request('GET', `/v1/crl/${keyId}`)).status, keyId).toBe(404);

    const verifier = await relyingParty();
    try {
      const fresh = await issueSvid(b, WORKLOAD, { audience: [AUDIENCE] });
      await expect(verifier.verify(fresh.token)).resolves.toMatchObject({ spiffeId: WORKLOAD });
      await expectLeakedRingDead(leaked, verifier, before.token);
    } finally {
      verifier.close();
    }
  });
});

describe('two replicas sharing one ring', () => {
  const clock = new FakeClock();
  let a: TestBroker;
  let c: TestBroker;
  const prefix = uniquePrefix('rotation-attacks-replicas');

  beforeAll(async () => {
    const config = {
      trustDomain: TD,
      // Replicas behind one URL: one issuer.
      issuer: ISSUER,
      redis: { prefix },
      // No periodic re-read during a test: what a replica holds is what it read last (at most one interval).
      keys: { rotation: { jwtInterval: 0, caInterval: 0, refreshInterval: 3600 } },
      lifecycle: { worker: false },
    };
    a = await startTestBroker({ store: 'redis', clock: clock.clock, config });
    c = await startTestBroker({ store: 'redis', clock: clock.clock, config });
  });
  afterAll(async () => {
    await Promise.all([a?.close(), c?.close()]);
  });

  it('concurrent rotations (two replicas and the scheduled check) never lose a published key', async () => {
    pastLead(clock, a);
    const before = await readRingDoc(a, JWT_RING);
    const results = await Promise.all([rotate(a, 'jwt'), rotate(c, 'jwt'), rotateDue(rotationDeps(a))]);
    const responses = results.slice(0, 2) as TestResponse[];
    // Each request either made the rotation (or found it made by the other), or came after it and was told
    // the key now next has not been published long enough.
    for (const res of responses) if (res.status !== 200) expectTooSoon(res, 'the later of two rotations');
    expect(responses.map((r) => r.status)).toContain(200);
    const after = await readRingDoc(a, JWT_RING);
    const all = slotsOf(after).map((s) => s.pem);
    // The key that was current is retired (once), the key that was next was promoted (never dropped).
    expect(after.current.pem).toBe(before.next.pem);
    expect(after.retired.map((s) => s.pem)).toEqual([
      before.current.pem,
      ...before.retired.map((s) => s.pem),
    ]);
    expect(new Set(all).size).toBe(all.length);
    expect(after.sequence).toBeGreaterThan(before.sequence);
    await Promise.all([refreshRings(a), refreshRings(c)]);
    expect(await jwksOf(c)).toEqual(await jwksOf(a));
    const [ba, bc] = await Promise.all([a.request('GET', '/v1/bundle'), c.request('GET', '/v1/bundle')]);
    expect(bc.body.spiffe_sequence).toBe(ba.body.spiffe_sequence);
  });

  it('a key that starts signing is already published by every replica, even after two rotations in a row', async () => {
    await Promise.all([refreshRings(a), refreshRings(c)]);
    // An admin rotates twice (say `writ keys rotate jwt`, then `writ keys rotate all`).
    pastLead(clock, a);
    expect((await rotate(a, 'jwt')).status).toBe(200);
    const signing = a.broker.deps.keys.current().kid;
    const second = await rotate(a, 'all');
    // The second would promote a key generated by the first a moment ago, unknown to the other replica
    // and to every relying party's cached JWKS: refused, and nothing changes.
    expectTooSoon(second, 'a second rotation right after the first');
    expect(a.broker.deps.keys.current().kid).toBe(signing);
    const issued = await issueSvid(a, WORKLOAD, { audience: [AUDIENCE] });
    // The other replica has not re-read the ring since before the first rotation: it publishes the key anyway.
    expect(kids(await jwksOf(c))).toContain(kidOf(issued.token));
    expect((await introspect(c, issued.token)).body.active).toBe(true);

    // Within refreshInterval (shorter than the lead) the other replica re-reads the ring; once the lead has
    // passed, the second rotation goes through, and its key is again one every replica publishes.
    await refreshRings(c);
    pastLead(clock, a);
    expect((await rotate(a, 'jwt')).status).toBe(200);
    const later = await issueSvid(a, WORKLOAD, { audience: [AUDIENCE] });
    expect(kidOf(later.token)).not.toBe(kidOf(issued.token));
    expect(kids(await jwksOf(c))).toContain(kidOf(later.token));
    expect((await introspect(c, later.token)).body.active).toBe(true);
  });
});

describe('the ring document lost from Redis (restarted without persistence, flushed)', () => {
  const clock = new FakeClock();
  const prefix = uniquePrefix('rotation-attacks-lost');
  let a: TestBroker;
  let c: TestBroker | undefined;
  const config = {
    trustDomain: TD,
    issuer: ISSUER,
    redis: { prefix },
    keys: { rotation: { jwtInterval: 0, caInterval: 0, refreshInterval: 3600 } },
    lifecycle: { worker: false },
  };

  beforeAll(async () => {
    a = await startTestBroker({ store: 'redis', clock: clock.clock, config });
  });
  afterAll(async () => {
    await Promise.all([a?.close(), c?.close()]);
  });

  it('a running replica follows the ring now in the store, and spiffe_sequence never goes backwards', async () => {
    for (let i = 0; i < 3; i++) {
      pastLead(clock, a);
      expect((await rotate(a, 'all')).status).toBe(200);
    }
    const sequenceBefore = (await a.request('GET', '/v1/bundle')).body.spiffe_sequence as number;
    const held = kids(await jwksOf(a));
    // Redis comes back empty (a restart takes a moment).
    const redis = await testRedis();
    try {
      await deleteKeys(redis, prefix);
    } finally {
      redis.disconnect();
    }
    clock.advance(1_000);
    // A missing ring is a failed read: the running replica keeps the keys it holds for now.
    await refreshRings(a);
    expect(kids(await jwksOf(a))).toEqual(held);
    // A replica (re)starts and writes new rings; the running one re-reads and follows them.
    c = await startTestBroker({ store: 'redis', clock: clock.clock, config });
    await refreshRings(a);
    const issued = await issueSvid(a, WORKLOAD, { audience: [AUDIENCE] });
    expect(held).not.toContain(kidOf(issued.token));
    expect(kids(await jwksOf(c))).toContain(kidOf(issued.token));
    expect((await introspect(c, issued.token)).body.active).toBe(true);
    expect(await jwksOf(a)).toEqual(await jwksOf(c));
    const [ba, bc] = await Promise.all([a.request('GET', '/v1/bundle'), c.request('GET', '/v1/bundle')]);
    expect(bc.body.spiffe_sequence).toBeGreaterThan(sequenceBefore);
    expect(ba.body.spiffe_sequence).toBe(bc.body.spiffe_sequence);
    expect(ba.body.keys).toEqual(bc.body.keys);
  });
});

describe('a JWT key adopted from an older Writ (keys:jwt-signing:<alg>)', () => {
  const clock = new FakeClock();
  const prefix = uniquePrefix('rotation-attacks-legacy');
  const legacyPem = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    .privateKey.export({ format: 'pem', type: 'pkcs8' })
    .toString();
  const config = {
    trustDomain: TD,
    issuer: ISSUER,
    redis: { prefix },
    credentials: { maxTtl: 600, jwtDefaultTtl: 300, x509DefaultTtl: 300 },
    keys: { rotation: { jwtInterval: 0, caInterval: 0, refreshInterval: 3600 } },
    lifecycle: { worker: false },
  };
  let a: TestBroker;
  let c: TestBroker | undefined;

  async function legacyStored(): Promise<string | null> {
    const redis = await testRedis();
    try {
      return await redis.get(`${prefix}keys:${JWT_LEGACY}`);
    } finally {
      redis.disconnect();
    }
  }

  beforeAll(async () => {
    const redis = await testRedis();
    try {
      await redis.set(`${prefix}keys:${JWT_LEGACY}`, legacyPem);
    } finally {
      redis.disconnect();
    }
    a = await startTestBroker({ store: 'redis', clock: clock.clock, config });
  });
  afterAll(async () => {
    await Promise.all([a?.close(), c?.close()]);
  });

  it('never signs again once it was rotated out and pruned, even if the ring document disappears', async () => {
    const legacyKid = await kidOfPem(legacyPem);
    expect(kids(await jwksOf(a))[0]).toBe(legacyKid);
    // Adopted into the ring, and gone from its old place in the same write.
    expect((await readRingDoc(a, JWT_RING)).current.pem).toBe(legacyPem);
    expect(await legacyStored()).toBeNull();
    // The operator rotates it out (suspected compromise, or routine) and its retention passes.
    pastLead(clock, a);
    expect((await rotate(a, 'jwt')).status).toBe(200);
    clock.advance((retainSeconds(a.broker.deps.config) + 1) * 1000);
    await rotateDue(rotationDeps(a));
    await refreshRings(a);
    expect(kids(await jwksOf(a))).not.toContain(legacyKid);
    // The ring document goes (evicted under allkeys-* maxmemory, or deleted by an operator to "reset" keys);
    // the worker's next check and new replicas recreate the ring.
    const redis = await testRedis();
    try {
      await redis.del(`${prefix}keys:${JWT_RING}`);
    } finally {
      redis.disconnect();
    }
    await rotateDue(rotationDeps(a));
    c = await startTestBroker({ store: 'redis', clock: clock.clock, config });
    const recreated = await readRingDoc(c, JWT_RING);
    expect(slotsOf(recreated).map((s) => s.pem)).not.toContain(legacyPem);
    const issued = await issueSvid(c, WORKLOAD, { audience: [AUDIENCE] });
    expect(kidOf(issued.token)).not.toBe(legacyKid);
    expect(kids(await jwksOf(c))).not.toContain(legacyKid);
    // The running replica follows the recreated ring at its next re-read.
    await refreshRings(a);
    const fromA = await issueSvid(a, WORKLOAD, { audience: [AUDIENCE] });
    expect(kidOf(fromA.token)).not.toBe(legacyKid);
    expect(await jwksOf(a)).toEqual(await jwksOf(c));
    expect(await legacyStored()).toBeNull();
  });
});

describe("the broker's own HTTPS certificate after a CA rotation", () => {
  const clock = new FakeClock();
  const prefix = uniquePrefix('rotation-attacks-https');
  const config = {
    trustDomain: TD,
    redis: { prefix },
    server: { insecureHttp: false },
    credentials: { maxTtl: 600, jwtDefaultTtl: 300, x509DefaultTtl: 300 },
    keys: { rotation: { jwtInterval: 0, caInterval: 0, refreshInterval: 3600 } },
    lifecycle: { worker: false },
  };
  let b: TestBroker;
  let c: TestBroker;

  beforeAll(async () => {
    b = await startTestBroker({ store: 'redis', clock: clock.clock, config });
    c = await startTestBroker({ store: 'redis', clock: clock.clock, config });
  });
  afterAll(async () => {
    await Promise.all([b?.close(), c?.close()]);
  });

  /**
   * The certificate a broker presents. No trust decision by TLS here (the certificates are dated by the fake
   * clock, hours ahead of the real one): the chain is judged below, against what bundle.pem publishes.
   */
  function served(of: TestBroker): Promise<X509Certificate> {
    const port = Number(new URL(of.url).port);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        const raw = socket.getPeerCertificate().raw;
        socket.end();
        resolve(new X509Certificate(raw));
      });
      socket.on('error', reject);
    });
  }

  /** The roots a broker publishes at /v1/bundle.pem (fetched over its HTTPS). */
  function bundlePem(of: TestBroker): Promise<X509Certificate[]> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        `${of.url}/v1/bundle.pem`,
        { method: 'GET', rejectUnauthorized: false, agent: false },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            body += d;
          });
          res.on('end', () =>
            res.statusCode === 200
              ? resolve(rootsOf(body))
              : reject(new Error(`bundle.pem: ${res.statusCode}`)),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  const currentCa = (of: TestBroker) => new X509Certificate(of.broker.deps.cas.current().certificatePem);

  it('chains to a root that bundle.pem still publishes once the old CA has been dropped, on every replica', async () => {
    const deps = b.broker.deps;
    const firstCa = deps.cas.current().keyId;
    for (const of of [b, c]) expect(chainsTo(await served(of), await bundlePem(of))).toBe(true);
    pastLead(clock, b);
    await rotateNow(rotationDeps(b), 'x509');
    // The rotating replica re-reads at once; the other within refreshInterval.
    await refreshRings(b);
    expect(deps.cas.current().keyId).not.toBe(firstCa);
    await refreshRings(c);
    expect(c.broker.deps.cas.current().keyId).toBe(deps.cas.current().keyId);
    // Each serves a certificate of the new current CA.
    for (const of of [b, c]) {
      const cert = await served(of);
      expect(chainsTo(cert, [currentCa(of)])).toBe(true);
      expect(chainsTo(cert, await bundlePem(of))).toBe(true);
    }
    // Everything the old CA signed for workloads has expired; the scheduled check drops it from the bundle.
    clock.advance((retainSeconds(deps.config) + 1) * 1000);
    const results = await rotateDue(rotationDeps(b));
    expect(results.find((r) => r.ring === 'x509')?.pruned).toBe(1);
    await Promise.all([refreshRings(b), refreshRings(c)]);
    for (const of of [b, c]) {
      expect(of.broker.deps.cas.byKeyId(firstCa)).toBeUndefined();
      const roots = await bundlePem(of);
      expect(roots.map((r) => r.fingerprint256).sort()).toEqual(
        rootsOf(of.broker.deps.cas.rootsPem().join(''))
          .map((r) => r.fingerprint256)
          .sort(),
      );
      const cert = await served(of);
      expect(chainsTo(cert, roots)).toBe(true);
      expect(chainsTo(cert, [currentCa(of)])).toBe(true);
    }
  });
});

describe('admin key endpoints', () => {
  const clock = new FakeClock();
  let b: TestBroker;
  let account: { token: string; secret: string; last: number };

  /** A fresh code: the oldest step of the ±1 window not used yet; the clock moves on when it is used up. */
  function freshCode(): string {
    let current = Math.floor(clock.now() / 30_000);
    const step = Math.max(current - 1, account.last + 1);
    if (step > current + 1) {
      clock.advance((step - current - 1) * 30_000);
      current = step - 1;
    }
    account.last = step;
    return generateSync({ secret: account.secret, epoch: step * 30 });
  }
  const as = (token: string, otp?: string) => ({
    authorization: `Bearer ${token}`,
    ...(otp ? { 'x-writ-otp': otp } : {}),
  });
  const sequence = async () => (await b.admin('GET', '/v1/admin/keys')).body.bundleSequence as number;

  beforeAll(async () => {
    b = await startTestBroker({
      store: 'redis',
      clock: clock.clock,
      config: {
        trustDomain: TD,
        keys: { rotation: { jwtInterval: 0, caInterval: 0, refreshInterval: 3600 } },
        lifecycle: { worker: false },
      },
    });
    const created = await b.admin('POST', '/v1/admin/accounts', { name: 'attacker-admin' });
    expect(created.status).toBe(201);
    const secret = new URL(created.body.otpauthUri as string).searchParams.get('secret') ?? '';
    account = { token: created.body.token as string, secret, last: -1 };
  });
  afterAll(async () => {
    await b?.close();
  });

  it('never shows private material, and needs an admin token to show anything', async () => {
    for (const headers of [
      {},
      { authorization: 'Bearer nope' },
      { authorization: `Bearer ${b.adminToken}x` },
    ]) {
      const res = await b.request('GET', '/v1/admin/keys', { headers });
      expect(res.status).toBe(401);
      expect(res.text).not.toMatch(/kid|keyId/);
    }
    const res = await b.request('GET', '/v1/admin/keys', { headers: as(account.token) });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const text = res.text;
    expect(text).not.toMatch(/PRIVATE|BEGIN|"pem"|"d":|"p":|"q":/);
    const ringPems = [await readRingDoc(b, JWT_RING), await readRingDoc(b, CA_RING)].flatMap((d) =>
      [d.current, d.next, ...d.retired].map((s) => s.pem),
    );
    for (const pem of ringPems) {
      const body = pem.replace(/-----[^-]+-----|\s/g, '');
      expect(text).not.toContain(body.slice(0, 40));
    }
    for (const path of ['/.well-known/jwks.json', '/v1/bundle', '/v1/bundle.pem']) {
      const pub = await b.request('GET', path);
      expect(pub.text, path).not.toMatch(/PRIVATE|"d":/);
    }
  });

  it('refuses a rotation without a fresh TOTP, with a replayed one, or with a confused body, changing nothing', async () => {
    const start = await sequence();
    const kidsBefore = kids(await jwksOf(b));
    const noOtp = await b.request('POST', '/v1/admin/keys/rotate', {
      body: { ring: 'all' },
      headers: as(account.token),
    });
    expect(noOtp.status).toBe(401);
    expect(noOtp.body.error).toBe('ERR_OTP_REQUIRED');
    // The compromise response (every key replaced at once, no publication lead) needs the TOTP just as much.
    const noOtpCompromised = await b.request('POST', '/v1/admin/keys/rotate', {
      body: { ring: 'all', compromised: true },
      headers: as(account.token),
    });
    expect(noOtpCompromised.status).toBe(401);
    expect(noOtpCompromised.body.error).toBe('ERR_OTP_REQUIRED');
    const wrong = await b.request('POST', '/v1/admin/keys/rotate', {
      body: { ring: 'all' },
      headers: as(account.token, '000000'),
    });
    expect(wrong.status).toBe(401);
    const bodies: Array<{ raw?: string; body?: unknown; type?: string }> = [
      { body: { ring: ['jwt'] } },
      { body: { ring: 'JWT' } },
      { body: { ring: 'jwt', force: true } },
      { body: { ring: 'jwt', compromised: 'true' } },
      { body: { ring: 'jwt', compromised: 1 } },
      { body: { ring: 'jwt', compromised: [true] } },
      { raw: '{"__proto__":{"ring":"jwt"}}', type: 'application/json' },
      { raw: '{"constructor":{"prototype":{"ring":"jwt"}}}', type: 'application/json' },
      { body: [{ ring: 'jwt' }] },
      { body: 'jwt' },
      { raw: 'ring=jwt', type: 'application/x-www-form-urlencoded' },
      { raw: '{"ring":"jwt"}', type: 'text/plain' },
      { raw: `{"ring":"${'a'.repeat(200_000)}"}`, type: 'application/json' },
    ];
    for (const spec of bodies) {
      const res = await b.request('POST', '/v1/admin/keys/rotate', {
        ...(spec.raw === undefined ? { body: spec.body } : { raw: spec.raw }),
        headers: { ...as(account.token, freshCode()), ...(spec.type ? { 'content-type': spec.type } : {}) },
      });
      expect(res.status, JSON.stringify(spec).slice(0, 80)).toBeGreaterThanOrEqual(400);
      expect(res.status, JSON.stringify(spec).slice(0, 80)).toBeLessThan(500);
    }
    expect(await sequence()).toBe(start);
    expect(kids(await jwksOf(b))).toEqual(kidsBefore);
    const audit = await b.admin('GET', '/v1/admin/audit?limit=1000');
    expect(
      (audit.body.records as { type: string }[]).filter((r) => r.type === 'admin.keys.rotate'),
    ).toHaveLength(0);

    // A good rotation (once the next key has been published for the lead): audited with the account as actor;
    // its code cannot be replayed.
    clock.advance((publicationLead(b.broker.deps.config) + 1) * 1000);
    const code = freshCode();
    const ok = await b.request('POST', '/v1/admin/keys/rotate', {
      body: { ring: 'jwt' },
      headers: as(account.token, code),
    });
    expect(ok.status).toBe(200);
    expect(JSON.stringify(ok.body)).not.toMatch(/PRIVATE|"d":/);
    const replay = await b.request('POST', '/v1/admin/keys/rotate', {
      body: { ring: 'jwt' },
      headers: as(account.token, code),
    });
    expect(replay.status).toBe(401);
    expect(replay.body.error).toBe('ERR_OTP_INVALID');
    const after = await b.admin('GET', '/v1/admin/audit?limit=1000');
    const rotations = (after.body.records as { type: string; actor: string; subject: string }[]).filter(
      (r) => r.type === 'admin.keys.rotate',
    );
    expect(rotations).toHaveLength(1);
    expect(rotations[0]).toMatchObject({ actor: 'admin:attacker-admin', subject: 'keys:jwt' });
    const rotated = await sequence();
    expect(rotated).toBeGreaterThan(start);
    // Another normal rotation at once, with a fresh code, would promote a key published a moment ago: refused.
    const kidsRotated = kids(await jwksOf(b));
    const again = await b.request('POST', '/v1/admin/keys/rotate', {
      body: { ring: 'jwt' },
      headers: as(account.token, freshCode()),
    });
    expectTooSoon(again, 'a rotation right after a rotation');
    expect(await sequence()).toBe(rotated);
    expect(kids(await jwksOf(b))).toEqual(kidsRotated);
  });
});

describe('the CRL path parameter and the published roots', () => {
  const clock = new FakeClock();
  let b: TestBroker;

  beforeAll(async () => {
    b = await startTestBroker({
      store: 'memory',
      clock: clock.clock,
      config: { trustDomain: TD, keys: { rotation: { jwtInterval: 0, caInterval: 0 } } },
    });
    // Two CAs published (current, retired) plus the next one.
    pastLead(clock, b);
    await rotateNow(rotationDeps(b), 'x509');
    await refreshRings(b);
  });
  afterAll(async () => {
    await b?.close();
  });

  it('answers 404 (never a CRL of something else, never a 5xx) for any key id that is not a published CA', async () => {
    const published = b.broker.deps.cas.published().map((ca) => ca.keyId);
    expect(published).toHaveLength(3);
    for (const keyId of published) {
      const res = await b.request('GET', `/v1/crl/${keyId}`);
      expect(res.status, keyId).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/pkix-crl/);
    }
    const id = published[0] ?? '';
    const probes = [
      id.toUpperCase(),
      `${id}00`,
      id.slice(0, -2),
      `${id}%00`,
      `${id}%2f..`,
      '..%2f..%2fadmin%2fkeys',
      '%2e%2e',
      '..',
      `${id}.pem`,
      'a'.repeat(129),
      'a'.repeat(8000),
      '__proto__',
      'constructor',
      '0x00',
      `${id}%0a`,
    ];
    for (const probe of probes) {
      const res = await b.request('GET', `/v1/crl/${probe}`);
      expect([400, 404, 414, 431], probe.slice(0, 40)).toContain(res.status);
      expect(res.headers.get('content-type') ?? '', probe.slice(0, 40)).not.toMatch(/pkix-crl|x-pem/);
    }
    expect((await b.request('GET', `/v1/crl/${id}?format=der&format=pem`)).status).toBe(400);
    expect((await b.request('GET', `/v1/crl/${id}?x=1`)).status).toBe(400);
  });

  it('publishes exactly the roots of its own CAs in bundle.pem and the bundle', async () => {
    const status = (await b.admin('GET', '/v1/admin/keys')).body;
    const expected = (status.x509.authorities as { rootSha256: string }[]).map((a) => a.rootSha256).sort();
    const pem = await b.request('GET', '/v1/bundle.pem');
    const roots = rootsOf(pem.text);
    expect(roots.map((r) => r.fingerprint256).sort()).toEqual(expected);
    for (const root of roots) {
      expect(root.ca).toBe(true);
      expect(root.checkIssued(root) && root.verify(root.publicKey)).toBe(true);
      expect(root.subjectAltName).toBe(`URI:spiffe://${TD}`);
    }
    const bundle = (await b.request('GET', '/v1/bundle')).body as { keys: { use: string; x5c?: string[] }[] };
    const x509 = bundle.keys.filter((k) => k.use === 'x509-svid');
    expect(
      x509.map((k) => new X509Certificate(Buffer.from(k.x5c?.[0] ?? '', 'base64')).fingerprint256).sort(),
    ).toEqual(expected);
    // The JWT part of the bundle carries exactly the JWKS's keys, never an X.509 authority.
    const jwt = bundle.keys.filter((k) => k.use === 'jwt-svid') as { kid?: string }[];
    expect(jwt.map((k) => k.kid)).toEqual(kids(await jwksOf(b)));
    expect(bundle.keys).toHaveLength(x509.length + jwt.length);
  });
});

describe('a ring document in Redis that this version cannot read', () => {
  const clock = new FakeClock();
  const prefix = uniquePrefix('rotation-attacks-malformed');
  const config = {
    trustDomain: TD,
    redis: { prefix },
    credentials: { maxTtl: 600, jwtDefaultTtl: 300, x509DefaultTtl: 300 },
    keys: { rotation: { jwtInterval: 0, caInterval: 0, refreshInterval: 3600 } },
    lifecycle: { worker: false },
  };
  let a: TestBroker;

  beforeAll(async () => {
    a = await startTestBroker({ store: 'redis', clock: clock.clock, config });
  });
  afterAll(async () => {
    await a?.close();
  });

  async function writeRing(value: string): Promise<void> {
    const redis = await testRedis();
    try {
      await redis.set(`${prefix}keys:${JWT_RING}`, value);
    } finally {
      redis.disconnect();
    }
  }

  it('a new replica refuses to start (fail closed), the running one keeps serving without crashing', async () => {
    const good = await readRingDoc(a, JWT_RING);
    // Unparseable (not JSON, another version, oversized, too many keys) and parseable but unusable.
    const bad: Array<[string, boolean]> = [
      ['{"v":1,', true],
      [JSON.stringify({ ...good, v: 2 }), true],
      [JSON.stringify({ ...good, current: { ...good.current, pem: 'x'.repeat(2 * 1024 * 1024) } }), true],
      [JSON.stringify({ ...good, retired: Array.from({ length: 65 }, () => good.current) }), true],
      [JSON.stringify({ ...good, current: { ...good.current, pem: 'not a key' } }), false],
    ];
    for (const [value, unparseable] of bad) {
      await writeRing(value);
      await expect(
        startTestBroker({ store: 'redis', clock: clock.clock, config }),
        value.slice(0, 40),
      ).rejects.toThrow();
      await refreshRings(a);
      expect((await a.request('GET', '/healthz')).status).toBe(200);
      expect((await a.request('GET', '/.well-known/jwks.json')).status).toBe(200);
      // The rotation machinery fails loudly rather than overwriting what it cannot read.
      if (unparseable) await expect(rotateDue(rotationDeps(a))).rejects.toThrow();
      expect(kids(await jwksOf(a))).toContain(a.broker.deps.keys.current().kid);
    }
    await writeRing(JSON.stringify(good));
  });

  it('a replica that cannot re-read its ring keeps its keys only until it reads the ring again, then signs only with a key the ring still has', async () => {
    // Another writer (a newer Writ, with a field this version does not know) rotated twice and dropped the
    // key this replica still holds.
    const held = await readRingDoc(a, JWT_RING);
    const heldKid = a.broker.deps.keys.current().kid;
    const fresh = () =>
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
        .privateKey.export({ format: 'pem', type: 'pkcs8' })
        .toString();
    const now = clock.seconds();
    const moved = {
      v: 1,
      sequence: held.sequence + 10,
      current: { pem: fresh(), createdAt: now, activatedAt: now },
      next: { pem: fresh(), createdAt: now },
      retired: [],
    };
    await writeRing(JSON.stringify({ ...moved, compromised: [heldKid] }));
    clock.advance((retainSeconds(a.broker.deps.config) + 1) * 1000);
    await refreshRings(a);
    const storedKids = [await kidOfPem(moved.current.pem), await kidOfPem(moved.next.pem)];
    expect(storedKids).not.toContain(heldKid);
    // This version's rotation machinery refuses to overwrite what it cannot read; the replica keeps serving.
    await expect(rotateDue(rotationDeps(a))).rejects.toThrow();
    expect((await a.request('GET', '/healthz')).status).toBe(200);
    expect(kids(await jwksOf(a))).toContain(heldKid);
    const issue = async () => {
      const jt = await a.admin('POST', '/v1/admin/join-tokens', { spiffeId: WORKLOAD });
      expect(jt.status).toBe(201);
      return a.request('POST', '/v1/svid/jwt', {
        body: { attestor: 'join_token', evidence: { token: jt.body.token }, audience: [AUDIENCE] },
      });
    };
    // Meanwhile it signs with the key it holds, for a bounded real time only (past it, issuance answers 503:
    // test/unit/keys/live-ring-stale.test.ts), never with a key of its own making.
    const during = await issue();
    expect([200, 503]).toContain(during.status);
    if (during.status === 200) expect(kidOf(during.body.token as string)).toBe(heldKid);

    // The ring becomes readable (the newer writer's ring in the format this version reads): at its next
    // re-read the replica follows it, and nothing signed by the dropped key stays live.
    await writeRing(JSON.stringify(moved));
    await refreshRings(a);
    expect(kids(await jwksOf(a)).sort()).toEqual([...storedKids].sort());
    const after = await issue();
    expect(after.status, JSON.stringify(after.body)).toBe(200);
    expect(kidOf(after.body.token as string)).toBe(storedKids[0]);
    expect((await introspect(a, after.body.token as string)).body.active).toBe(true);
    if (during.status === 200)
      await expectInactive(a, during.body.token as string, 'signed by the dropped key');
  });
});

describe('a Redis outage under the rotation machinery (worker job, ring re-reads)', () => {
  let server: RedisServer;
  let b: TestBroker;

  beforeAll(async () => {
    server = await startRedisServer({ appendonly: true });
    b = await startTestBroker({
      store: 'redis',
      config: {
        trustDomain: TD,
        redis: { url: server.url, prefix: uniquePrefix('rotation-attacks-outage') },
        // A 3 s schedule keeps at most 63 retired keys only with a short credential lifetime.
        credentials: { maxTtl: 60, jwtDefaultTtl: 30, x509DefaultTtl: 30 },
        keys: {
          bundleRefreshHint: 1,
          rotation: { jwtInterval: 3, caInterval: 0, checkInterval: 1, refreshInterval: 1 },
        },
      },
    });
  });
  afterAll(async () => {
    await b?.close();
    await server?.stop();
  });

  it('keeps the broker up, issues nothing while Redis is down, and afterwards signs only with published keys', async () => {
    const before = await jwksOf(b);
    await server.stop();
    // Several ring re-reads and rotation checks fail meanwhile (1 s each).
    await sleep(3_000);
    expect((await b.request('GET', '/healthz')).status).toBe(200);
    expect((await b.request('GET', '/readyz')).status).toBe(503);
    const jt = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: WORKLOAD });
    expect(jt.status).toBe(503);
    const res = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: 'x'.repeat(43) }, audience: [AUDIENCE] },
    });
    expect(res.status).not.toBe(200);
    expect(res.status === 503 || res.status === 401).toBe(true);
    const rotate = await b.admin('POST', '/v1/admin/keys/rotate', { ring: 'jwt' });
    expect(rotate.status).toBe(503);
    // The keys held are still served (they are at most one refresh behind).
    expect(kids(await jwksOf(b))).toEqual(kids(before));

    server = await restartRedisServer({ port: server.port, dir: server.dir, appendonly: true });
    const issued = await waitFor(
      async () => {
        const t = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: WORKLOAD });
        if (t.status !== 201) return undefined;
        const r = await b.request('POST', '/v1/svid/jwt', {
          body: { attestor: 'join_token', evidence: { token: t.body.token }, audience: [AUDIENCE] },
        });
        return r.status === 200 ? (r.body as { token: string }) : undefined;
      },
      { what: 'issuance after Redis is back', timeoutMs: 15_000, intervalMs: 200 },
    );
    expect(kids(await jwksOf(b))).toContain(kidOf(issued.token));
    expect((await introspect(b, issued.token)).body.active).toBe(true);
    // The worker's repeatable job survived the outage: the schedule rotates again.
    const current = kids(await jwksOf(b))[0];
    await waitFor(
      async () => {
        const now = kids(await jwksOf(b));
        return now[0] !== current && now.includes(current) ? now : undefined;
      },
      { what: 'a scheduled rotation after the outage', timeoutMs: 20_000, intervalMs: 250 },
    );
  }, 60_000);
});
