// X.509-SVID renewal over mutual TLS, end to end: a production broker (Redis, HTTPS with its own certificate)
// and workloads that present their SVIDs through Node's TLS stack. Renewal works inside the task, and is
// refused after it, and to every certificate that is not a live SVID of this broker.
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { Agent } from 'node:https';
import type { AddressInfo } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { configSchema } from '../../src/config/schema.ts';
import { createBrokerServer, startTls, type TlsController } from '../../src/http/tls.ts';
import { createCsr, generateRootCa } from '../../src/keys/x509/index.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { HttpsBroker, httpsCall, newKey } from '../helpers/mtls.ts';
import { waitFor } from '../helpers/wait.ts';
import { mutualTls, type X509Workload } from '../helpers/x509.ts';
import { NEWKEY, opensslIssue, opensslOk, opensslRoot, type TempDir, tempDir } from '../unit/x509/helpers.ts';

const TD = 'example.org';
const epoch = () => Math.floor(Date.now() / 1000);
let seq = 0;
const uniqueId = (name: string) => `spiffe://${TD}/mtls/${name}-${++seq}-${process.pid}`;

/** What `openssl ca` needs to sign an SVID-shaped leaf (clientAuth, one URI SAN) with a chosen serial and dates. */
const FORGE_CONFIG = (name: string, spiffeId: string) => `
[ ca ]
default_ca = forge
[ forge ]
database = ${name}.index
new_certs_dir = .
serial = ${name}.serial
default_md = sha256
policy = anything
unique_subject = no
[ anything ]
organizationName = optional
[ v3_svid ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth, clientAuth
subjectAltName = URI:${spiffeId}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
`;

/** Epoch seconds as an ASN.1 GeneralizedTime string. */
const asn1Time = (epochSeconds: number) =>
  `${new Date(epochSeconds * 1000).toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`;

/**
 * An SVID-shaped certificate for a new key, signed by `<issuer>.pem/.key`, with the serial, SPIFFE ID and end
 * of a victim's SVID: what an attacker holding some other CA key (or an SVID key) can make.
 */
async function forge(
  t: TempDir,
  name: string,
  issuer: string,
  victim: { spiffeId: string; id: string; expiresAt: number },
): Promise<{ cert: string; key: string }> {
  await t.write(`${name}.cnf`, FORGE_CONFIG(name, victim.spiffeId));
  await t.write(`${name}.index`, '');
  await t.write(`${name}.serial`, `${victim.id.toUpperCase()}\n`);
  await opensslOk(
    [
      'req',
      '-new',
      ...NEWKEY.p256!,
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      '/O=SPIFFE',
    ],
    t.dir,
  );
  await opensslOk(
    [
      'ca',
      '-batch',
      '-notext',
      '-config',
      `${name}.cnf`,
      '-in',
      `${name}.csr`,
      '-cert',
      `${issuer}.pem`,
      '-keyfile',
      `${issuer}.key`,
      '-startdate',
      asn1Time(epoch() - 60),
      '-enddate',
      asn1Time(victim.expiresAt),
      '-extensions',
      'v3_svid',
      '-out',
      `${name}.pem`,
    ],
    t.dir,
  );
  const cert = new X509Certificate(await t.read(`${name}.pem`));
  // the forgery matches the victim in everything but its issuer
  expect(cert.serialNumber.toLowerCase()).toBe(victim.id);
  expect(cert.subjectAltName).toBe(`URI:${victim.spiffeId}`);
  expect(Date.parse(cert.validTo) / 1000).toBe(victim.expiresAt);
  return { cert: cert.toString(), key: await t.read(`${name}.key`) };
}

describe('X.509-SVID renewal over mTLS (production mode: Redis, HTTPS)', () => {
  let b: TestBroker;
  let h: HttpsBroker;
  let t: TempDir;
  let root: string;
  // The broker's clock runs ahead by this much when a test says so (the TLS stack keeps real time).
  let skewMs = 0;

  beforeAll(async () => {
    t = await tempDir('writ-mtls-');
    b = await startTestBroker({
      store: 'redis',
      clock: () => Date.now() + skewMs,
      config: { trustDomain: TD, server: { insecureHttp: false } },
    });
    expect(b.url).toMatch(/^https:/);
    // The bundle reaches clients out of band; here, the root of the CA that serves (and the others published).
    root = b.broker.deps.ca.rootsPem.join('');
    const served = await new HttpsBroker(b.url, root, b.adminToken).call('/v1/bundle.pem');
    expect(served.text).toContain(root);
    h = new HttpsBroker(b.url, served.text, b.adminToken);
  });
  afterAll(async () => {
    await b?.close();
    await t?.cleanup();
  });

  async function skewed<T>(seconds: number, run: () => Promise<T>): Promise<T> {
    skewMs = seconds * 1000;
    try {
      return await run();
    } finally {
      skewMs = 0;
    }
  }

  it('renews inside the task: same SPIFFE ID and task, a new key and serial, tracked and audited; the new one renews too', async () => {
    const id = uniqueId('renew');
    const w = await h.workload(id, { task: `renew-${seq}` });
    const next = newKey();
    const res = await h.renew(w, { csr: next.csr });
    expect(res.status, res.text).toBe(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(Object.keys(res.body).sort()).toEqual([
      'bundle',
      'certificate',
      'chain',
      'expiresAt',
      'id',
      'renewedFrom',
      'spiffeId',
      'task',
    ]);
    expect(res.body).toMatchObject({ spiffeId: id, task: w.svid.task, renewedFrom: w.svid.id, chain: [] });
    expect(res.body.bundle).toBe(h.bundle);
    expect(res.body.id).toMatch(/^[0-9a-f]{32}$/);
    expect(res.body.id).not.toBe(w.svid.id);
    const cert = new X509Certificate(res.body.certificate);
    expect(cert.subjectAltName).toBe(`URI:${id}`);
    expect(cert.serialNumber.toLowerCase()).toBe(res.body.id);
    expect(cert.checkIssued(new X509Certificate(root))).toBe(true);
    expect(cert.verify(new X509Certificate(root).publicKey)).toBe(true);
    // the CSR's key, not the old one
    expect(cert.publicKey.equals(createPublicKey(next.key))).toBe(true);
    expect(cert.publicKey.equals(new X509Certificate(w.svid.certificate).publicKey)).toBe(false);

    // tracked like any issuance, with the attestation it descends from; the old certificate stays valid
    const view = await h.admin('GET', `/v1/admin/credentials/${res.body.id}`);
    expect(view.status).toBe(200);
    expect(view.body).toMatchObject({
      id: res.body.id,
      type: 'x509',
      spiffeId: id,
      task: w.svid.task,
      attestor: 'join_token',
      expiresAt: res.body.expiresAt,
      status: 'active',
    });
    expect((await h.admin('GET', `/v1/admin/credentials/${w.svid.id}`)).body.status).toBe('active');

    // audited as a renewal, naming the certificate it renewed
    const audit = await h.admin('GET', '/v1/admin/audit?limit=1000');
    const record = (
      audit.body.records as { type: string; subject?: string; details: Record<string, unknown> }[]
    ).find((r) => r.type === 'svid.renewed' && r.subject === `credential:${res.body.id}`);
    expect(record?.details).toMatchObject({
      type: 'x509',
      task: w.svid.task,
      attestor: 'join_token',
      method: 'mtls',
      renewedFrom: w.svid.id,
      expiresAt: res.body.expiresAt,
      keyType: 'ec-p256',
    });

    // the renewed SVID is a working SVID: it renews in turn, and speaks mutual TLS with a peer
    const renewed: X509Workload = { svid: res.body, key: next.key };
    const again = await h.renew(renewed, { csr: newKey().csr });
    expect(again.status, again.text).toBe(200);
    expect(again.body).toMatchObject({ spiffeId: id, task: w.svid.task, renewedFrom: res.body.id });
    const peer = await h.workload(uniqueId('peer'));
    expect((await mutualTls(peer, renewed, h.bundle)).ok).toBe(true);
  });

  it('refuses without a client certificate, and with one of another CA carrying a live serial and SPIFFE ID', async () => {
    const w = await h.workload(uniqueId('victim'));
    const none = await h.renew(undefined, { csr: newKey().csr });
    expect(none.status).toBe(401);
    expect(none.body).toEqual({
      error: 'ERR_CLIENT_CERT_REQUIRED',
      error_description: 'a client certificate is required: present the X.509-SVID to renew',
    });

    // another CA, even of the same trust domain name, with the victim's serial and SPIFFE ID
    await opensslRoot(t, 'stranger', NEWKEY.p256!);
    const forged = await forge(t, 'stranger-leaf', 'stranger', w.svid);
    const stranger = await h.renew(
      { cert: forged.cert + (await t.read('stranger.pem')), key: forged.key },
      { csr: newKey().csr },
    );
    expect(stranger.status).toBe(401);
    expect(stranger.body.error).toBe('ERR_CLIENT_CERT_INVALID');

    // authentication comes first: a bad body from a stranger is still a 401
    const junk = await h.renew({ cert: forged.cert, key: forged.key }, { nonsense: true });
    expect(junk.status).toBe(401);
  });

  it('refuses a certificate chained through an SVID used as a CA, and a server certificate of the CA', async () => {
    const victim = await h.workload(uniqueId('victim'));
    const attacker = await h.workload(uniqueId('attacker'));
    await t.write('attacker.pem', attacker.svid.certificate);
    await t.write('attacker.key', attacker.key);
    // the attacker's SVID signs a leaf naming the victim, with the victim's serial
    const forged = await forge(t, 'via-svid', 'attacker', victim.svid);
    const res = await h.renew(
      { cert: forged.cert + attacker.svid.certificate, key: forged.key },
      { csr: newKey().csr },
    );
    expect(res.status).toBe(401);
    expect(res.body.error).toBe('ERR_CLIENT_CERT_INVALID');

    // a certificate our CA did sign, but not an SVID (serverAuth only, not recorded)
    const now = epoch();
    const server = b.broker.deps.ca.issueServerCertificate({
      dnsNames: ['localhost'],
      ipAddresses: [],
      notAfter: now + 600,
      now,
    });
    const asClient = await h.renew({ cert: server.pem, key: server.privateKeyPem! }, { csr: newKey().csr });
    expect(asClient.status).toBe(401);
    // the TLS stack refuses it for client authentication (serverAuth only), before any lookup
    expect(asClient.body.error).toBe('ERR_CLIENT_CERT_INVALID');
  });

  it('refuses a revoked certificate, also on a kept-alive connection and in a resumed TLS session', async () => {
    // keep-alive: the connection authenticated before the revocation is judged again on every request
    const kept = await h.workload(uniqueId('kept'));
    const keepAlive = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await h.renew(kept, { csr: newKey().csr }, keepAlive);
      expect(first.status, first.text).toBe(200);
      const revoked = await h.admin('POST', `/v1/admin/credentials/${kept.svid.id}/revoke`, {
        reason: 'key_compromise',
      });
      expect(revoked.status, revoked.text).toBe(200);
      const second = await h.renew(kept, { csr: newKey().csr }, keepAlive);
      expect(second.socketReused).toBe(true);
      expect(second.status).toBe(401);
      expect(second.body.error).toBe('ERR_CLIENT_CERT_INACTIVE');
    } finally {
      keepAlive.destroy();
    }

    // a new connection resuming the TLS session of before the revocation
    const resumed = await h.workload(uniqueId('resumed'));
    const sessions = new Agent({ keepAlive: false, maxCachedSessions: 10 });
    try {
      const first = await h.renew(resumed, { csr: newKey().csr }, sessions);
      expect(first.status, first.text).toBe(200);
      expect(first.sessionReused).toBe(false);
      expect((await h.admin('POST', `/v1/admin/credentials/${resumed.svid.id}/revoke`, {})).status).toBe(200);
      const second = await h.renew(resumed, { csr: newKey().csr }, sessions);
      expect(second.socketReused).toBe(false);
      expect(second.sessionReused).toBe(true);
      expect(second.status).toBe(401);
      expect(second.body.error).toBe('ERR_CLIENT_CERT_INACTIVE');
    } finally {
      sessions.destroy();
    }
  });

  it('refuses once the task has ended: completed by the workload, revoked by an admin', async () => {
    const id = uniqueId('completed');
    const task = `completed-${seq}`;
    const w = await h.workload(id, { task });
    // the workload ends its task with a JWT-SVID of it addressed to the broker
    const jt = await h.admin('POST', '/v1/admin/join-tokens', { spiffeId: id });
    const jwt = await h.call('/v1/svid/jwt', {
      method: 'POST',
      body: { attestor: 'join_token', evidence: { token: jt.body.token }, audience: [b.url], task },
    });
    expect(jwt.status, jwt.text).toBe(200);
    const done = await h.call(`/v1/tasks/${task}/complete`, {
      method: 'POST',
      headers: { authorization: `Bearer ${jwt.body.token}` },
    });
    expect(done.status, done.text).toBe(202);
    const afterCompletion = await h.renew(w, { csr: newKey().csr });
    expect(afterCompletion.status).toBe(401);
    expect(afterCompletion.body.error).toBe('ERR_CLIENT_CERT_INACTIVE');

    const r = await h.workload(uniqueId('task-revoked'), { task: `task-revoked-${seq}` });
    const revoked = await h.admin('POST', `/v1/admin/tasks/${r.svid.task}/revoke`, { reason: 'compromised' });
    expect(revoked.status, revoked.text).toBe(202);
    const afterRevocation = await h.renew(r, { csr: newKey().csr });
    expect(afterRevocation.status).toBe(401);
    expect(afterRevocation.body.error).toBe('ERR_CLIENT_CERT_INACTIVE');
  });

  it('never renews past the task deadline, however often, and refuses once it has passed', async () => {
    const id = uniqueId('deadline');
    const entry = await h.admin('POST', '/v1/admin/entries', {
      spiffeId: id,
      selectors: [`join_token:spiffe_id:${id}`],
      taskDeadline: 300,
    });
    expect(entry.status, entry.text).toBe(201);
    const w = await h.workload(id);
    const task = await h.admin('GET', `/v1/admin/tasks/${w.svid.task}`);
    const deadline = task.body.deadline as number;
    // the first certificate already ends with the task (the default 15 min is longer)
    expect(w.svid.expiresAt).toBe(deadline);

    // renewing again and again, asking for a day each time: never a second past the deadline
    let current: X509Workload = w;
    for (let i = 0; i < 3; i++) {
      const next = newKey();
      const res = await h.renew(current, { csr: next.csr, ttl: 86_400 });
      expect(res.status, res.text).toBe(200);
      expect(res.body.task).toBe(w.svid.task);
      expect(res.body.expiresAt).toBeLessThanOrEqual(deadline);
      expect(Date.parse(new X509Certificate(res.body.certificate).validTo) / 1000).toBeLessThanOrEqual(
        deadline,
      );
      current = { svid: res.body, key: next.key };
    }

    // close to the deadline, a renewal gets what is left of the task
    const late = await skewed(deadline - epoch() - 20, () => h.renew(current, { csr: newKey().csr }));
    expect(late.status, late.text).toBe(200);
    expect(late.body.expiresAt).toBe(deadline);

    // past it (the certificate itself is still valid for the TLS stack): refused
    const after = await skewed(deadline - epoch() + 1, () => h.renew(current, { csr: newKey().csr }));
    expect(after.status).toBe(401);
    expect(after.body.error).toBe('ERR_CLIENT_CERT_INACTIVE');
  });

  it('refuses an expired certificate: by the TLS stack, and by the record when the clocks disagree', async () => {
    const short = await h.workload(uniqueId('short'), { ttl: 1 });
    await waitFor(async () => epoch() > short.svid.expiresAt, {
      timeoutMs: 10_000,
      what: 'the certificate to expire',
    });
    const byTls = await h.renew(short, { csr: newKey().csr });
    expect(byTls.status).toBe(401);
    expect(byTls.body.error).toBe('ERR_CLIENT_CERT_INVALID');

    // the broker's clock says it has expired while the TLS stack still accepts it
    const w = await h.workload(uniqueId('expired'));
    const byRecord = await skewed(w.svid.expiresAt - epoch() + 1, () => h.renew(w, { csr: newKey().csr }));
    expect(byRecord.status).toBe(401);
    expect(byRecord.body.error).toBe('ERR_CLIENT_CERT_INACTIVE');
  });

  it('caps the lifetime (no longer than the certificate presented) and refuses ttl abuse and key reuse', async () => {
    const w = await h.workload(uniqueId('lifetime'), { ttl: 120 });
    const before = epoch();
    const long = await h.renew(w, { csr: newKey().csr, ttl: 86_400 });
    expect(long.status, long.text).toBe(200);
    expect(long.body.expiresAt - before).toBeLessThanOrEqual(121);
    const shorter = await h.renew(w, { csr: newKey().csr, ttl: 30 });
    expect(shorter.body.expiresAt - epoch()).toBeLessThanOrEqual(30);

    const tooLong = await h.renew(w, { csr: newKey().csr, ttl: 86_401 });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error).toBe('ERR_TTL_INVALID');
    for (const bad of [
      { ttl: 0 },
      { ttl: -5 },
      { ttl: 1.5 },
      { spiffeId: `spiffe://${TD}/other` },
      { task: 'other' },
    ]) {
      const res = await h.renew(w, { csr: newKey().csr, ...bad });
      expect(res.status, JSON.stringify(bad)).toBe(400);
      expect(res.body.error).toBe('invalid_request');
    }
    const noCsr = await h.renew(w, {});
    expect(noCsr.body.error).toBe('invalid_request');
    const badCsr = await h.renew(w, { csr: 'not a csr' });
    expect(badCsr.body.error).toBe('ERR_CSR_INVALID');

    // the same key again: a renewal rotates the key
    const reused = await h.renew(w, { csr: createCsr(createPrivateKey(w.key)) });
    expect(reused.status).toBe(400);
    expect(reused.body.error).toBe('ERR_CSR_KEY_REUSED');
  });
});

describe('renewal is unavailable without TLS to the broker itself', () => {
  it('answers ERR_MTLS_UNAVAILABLE over plain HTTP (insecureHttp), whatever a header claims', async () => {
    const b = await startTestBroker({
      store: 'redis',
      config: { trustDomain: TD, server: { insecureHttp: true } },
    });
    try {
      expect(b.url).toMatch(/^http:/);
      const jt = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: uniqueId('plain') });
      const issued = await b.request('POST', '/v1/svid/x509', {
        body: { attestor: 'join_token', evidence: { token: jt.body.token }, csr: newKey().csr },
      });
      expect(issued.status).toBe(200);
      const res = await b.request('POST', '/v1/svid/x509/renew', {
        body: { csr: newKey().csr },
        headers: {
          // what a TLS-terminating proxy might forward: never believed
          'x-forwarded-client-cert': `Cert="${encodeURIComponent(issued.body.certificate)}"`,
          'x-client-cert': issued.body.certificate.replace(/\n/g, ''),
        },
      });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('ERR_MTLS_UNAVAILABLE');
    } finally {
      await b.close();
    }
  });

  it('answers ERR_MTLS_UNAVAILABLE over HTTPS with server.clientCertificates off, even to a live SVID', async () => {
    const b = await startTestBroker({
      store: 'redis',
      config: { trustDomain: TD, server: { insecureHttp: false, clientCertificates: 'off' } },
    });
    try {
      const h = new HttpsBroker(b.url, b.broker.deps.ca.rootsPem.join(''), b.adminToken);
      const w = await h.workload(uniqueId('off'));
      const res = await h.renew(w, { csr: newKey().csr });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('ERR_MTLS_UNAVAILABLE');
    } finally {
      await b.close();
    }
  });
});

describe('renewal with a CA under your own root (keys.x509 files)', () => {
  let t: TempDir;
  let b: TestBroker;
  let h: HttpsBroker;

  beforeAll(async () => {
    t = await tempDir('writ-mtls-int-');
    await opensslRoot(t, 'root', NEWKEY.p256!);
    await opensslIssue(t, 'ours', 'root', NEWKEY.p256!, 'v3_int');
    // another intermediate of the same root: the TLS stack trusts what it signs
    await opensslIssue(t, 'sibling', 'root', NEWKEY.p256!, 'v3_int');
    b = await startTestBroker({
      store: 'redis',
      config: {
        trustDomain: TD,
        server: { insecureHttp: false },
        keys: {
          x509: {
            caCertFile: t.path('ours.pem'),
            caKeyFile: t.path('ours.key'),
            caChainFile: t.path('root.pem'),
          },
        },
      },
    });
    h = new HttpsBroker(b.url, await t.read('root.pem'), b.adminToken);
  });
  afterAll(async () => {
    await b?.close();
    await t?.cleanup();
  });

  it('renews an SVID presented with its chain', async () => {
    const w = await h.workload(uniqueId('chained'));
    expect(w.svid.chain).toHaveLength(1);
    const res = await h.renew(w, { csr: newKey().csr });
    expect(res.status, res.text).toBe(200);
    expect(res.body.chain).toEqual(w.svid.chain);
  });

  it('refuses a sibling intermediate’s certificate carrying a live serial, of this or another trust domain', async () => {
    const victim = await h.workload(uniqueId('victim'));
    for (const [name, spiffeId] of [
      ['same-td', victim.svid.spiffeId],
      ['other-td', 'spiffe://other.org/mtls/victim'],
    ] as const) {
      const forged = await forge(t, `sibling-${name}`, 'sibling', { ...victim.svid, spiffeId });
      const res = await h.renew(
        { cert: forged.cert + (await t.read('sibling.pem')), key: forged.key },
        { csr: newKey().csr },
      );
      // the TLS stack accepts it (same root); the broker does not: it did not sign it
      expect(res.status, name).toBe(401);
      expect(res.body.error, name).toBe('ERR_CLIENT_CERT_INACTIVE');
    }
    // the victim's own certificate still renews
    expect((await h.renew(victim, { csr: newKey().csr })).status).toBe(200);
  });
});

describe('renewal under policy', () => {
  let t: TempDir;
  let b: TestBroker;
  let h: HttpsBroker;
  const PERMIT = `
@id("issue")
permit (
  principal is Writ::Workload,
  action in [Writ::Action::"issue_jwt", Writ::Action::"issue_x509"],
  resource is Writ::Audience
);

@id("approve-renewals-of-critical")
@approval("required")
permit (principal is Writ::Workload, action == Writ::Action::"issue_x509", resource is Writ::Audience)
when { context.extra.contains("renewal=true") && principal.spiffe_id == "spiffe://${TD}/critical" };

@id("no-renewal-for-batch")
forbid (principal is Writ::Workload, action == Writ::Action::"issue_x509", resource is Writ::Audience)
when { context.extra.contains("renewal=true") && principal.spiffe_id == "spiffe://${TD}/batch" };
`;
  const SELECTORS = `
@id("no-dev-workloads")
forbid (principal is Writ::Workload, action in Writ::Action::"issue", resource is Writ::Audience)
when { principal.selectors.contains("join_token:spiffe_id:spiffe://${TD}/dev") };
`;

  beforeAll(async () => {
    t = await tempDir('writ-mtls-policy-');
    await t.write('policy.cedar', PERMIT);
    b = await startTestBroker({
      store: 'redis',
      config: { trustDomain: TD, server: { insecureHttp: false }, policy: { dir: t.dir } },
    });
    h = new HttpsBroker(b.url, b.broker.deps.ca.rootsPem.join(''), b.adminToken);
  });
  afterAll(async () => {
    await b?.close();
    await t?.cleanup();
  });

  it('decides a renewal like an issuance, with context.extra renewal=true, and fails closed on selectors', async () => {
    // a policy may single out renewals
    const batch = await h.workload(`spiffe://${TD}/batch`);
    const denied = await h.renew(batch, { csr: newKey().csr });
    expect(denied.status).toBe(403);
    expect(denied.body).toMatchObject({ error: 'access_denied', policies: ['no-renewal-for-batch'] });
    const other = await h.workload(uniqueId('service'));
    expect((await h.renew(other, { csr: newKey().csr })).status).toBe(200);

    // a policy may make renewals wait for an admin's approval, as issuances do
    const critical = await h.workload(`spiffe://${TD}/critical`);
    const pending = await h.renew(critical, { csr: newKey().csr });
    expect(pending.status, pending.text).toBe(202);
    expect(pending.body).toMatchObject({ error: 'ERR_APPROVAL_PENDING', status: 'pending' });
    const approved = await h.admin('POST', `/v1/admin/approvals/${pending.body.approval}/approve`);
    expect(approved.status, approved.text).toBe(200);
    const granted = await h.renew(critical, { csr: newKey().csr, approval: pending.body.approval });
    expect(granted.status, granted.text).toBe(200);
    const replayed = await h.renew(critical, { csr: newKey().csr, approval: pending.body.approval });
    expect(replayed.status).toBe(403);
    expect(replayed.body.error).toBe('ERR_APPROVAL_INVALID');

    // a policy that reads selectors cannot be decided without attestation: every renewal is refused
    await t.write('selectors.cedar', SELECTORS);
    const reload = await h.admin('POST', '/v1/admin/policy/reload');
    expect(reload.status, reload.text).toBe(200);
    const blind = await h.renew(other, { csr: newKey().csr });
    expect(blind.status).toBe(403);
    expect(blind.body).toMatchObject({ error: 'access_denied', policies: ['no-dev-workloads'] });
    // issuance with attestation is decided as before
    await h.workload(uniqueId('service'));

    const audit = await h.admin('GET', '/v1/admin/audit?limit=1000');
    const refusals = (audit.body.records as { type: string; details: Record<string, unknown> }[]).filter(
      (r) => r.type === 'svid.denied' && r.details.method === 'mtls',
    );
    expect(refusals.map((r) => r.details.code)).toEqual([
      'access_denied',
      'ERR_APPROVAL_INVALID',
      'access_denied',
    ]);
  });
});

describe('renewal when the broker serves server.tls files (dev mode, memory store)', () => {
  it('asks for and verifies client certificates there too', async () => {
    const t = await tempDir('writ-mtls-files-');
    let b: TestBroker | undefined;
    try {
      await opensslOk(
        [
          'req',
          '-x509',
          ...NEWKEY.p256!,
          '-nodes',
          '-keyout',
          'server.key',
          '-out',
          'server.pem',
          '-days',
          '1',
          '-subj',
          '/CN=localhost',
          '-addext',
          'subjectAltName=DNS:localhost,IP:127.0.0.1',
        ],
        t.dir,
      );
      b = await startTestBroker({
        store: 'memory',
        config: {
          trustDomain: TD,
          server: { tls: { certFile: t.path('server.pem'), keyFile: t.path('server.key') } },
        },
      });
      // the client trusts the configured server certificate; its own SVID chains to the broker's CA
      const h = new HttpsBroker(b.url, await t.read('server.pem'), b.adminToken);
      const w = await h.workload(uniqueId('files'));
      const res = await h.renew(w, { csr: newKey().csr });
      expect(res.status, res.text).toBe(200);
      expect(res.body.renewedFrom).toBe(w.svid.id);
      expect((await h.renew(undefined, { csr: newKey().csr })).body.error).toBe('ERR_CLIENT_CERT_REQUIRED');
    } finally {
      await b?.close();
      await t.cleanup();
    }
  });
});

describe('the HTTPS server’s client trust', () => {
  const logger = createLogger('silent');
  const config = configSchema.parse({});
  let server: ReturnType<typeof createBrokerServer> | undefined;
  let controller: TlsController | undefined;
  afterEach(async () => {
    controller?.close();
    await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
    server = undefined;
  });

  /** A root CA and a client SVID (cert PEM and key PEM) under it. */
  function authority() {
    const ca = generateRootCa({ trustDomain: TD, ttlSeconds: 3600, clock: Date.now });
    const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const now = epoch();
    const svid = ca.issueX509Svid({
      spiffeId: `spiffe://${TD}/client`,
      spki: publicKey.export({ type: 'spki', format: 'der' }),
      notAfter: now + 600,
      now,
    });
    return { ca, cert: svid.pem, key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() };
  }

  /** Starts a server that answers each request with what its TLS stack made of the client certificate. */
  async function serve(first: ReturnType<typeof authority>, anchors: () => readonly string[]) {
    server = createBrokerServer({ kind: 'https-issued' }, config.server.clientCertificates);
    server.on('request', (req, res) => {
      const socket = req.socket as TLSSocket;
      res.end(
        JSON.stringify({
          authorized: socket.authorized,
          peer: socket.getPeerX509Certificate()?.serialNumber,
        }),
      );
    });
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    controller = startTls(
      server,
      { kind: 'https-issued' },
      {
        config,
        ca: first.ca,
        issuer: `https://127.0.0.1:${port}`,
        clock: Date.now,
        logger,
        clientTrust: anchors,
        trustCheckIntervalMs: 50,
      },
    );
    return `https://127.0.0.1:${port}/`;
  }

  it('trusts the current roots: refreshTrust() after a change, and the watcher by itself', async () => {
    expect(config.server.clientCertificates).toBe('optional');
    const a = authority();
    const b = authority();
    let anchors: readonly string[] = a.ca.rootsPem;
    const url = await serve(a, () => anchors);
    const ca = a.ca.rootsPem.join(''); // the server's own certificate is of `a`
    const authorized = async (who: { cert: string; key: string }) =>
      (await httpsCall(url, { ca, cert: who.cert, key: who.key })).body.authorized as boolean;
    expect(controller!.clientTrustPem).toEqual(a.ca.rootsPem);
    expect(await authorized(a)).toBe(true);
    expect(await authorized(b)).toBe(false);
    // no certificate: the handshake still succeeds (other routes need none)
    expect((await httpsCall(url, { ca })).body).toEqual({ authorized: false });

    anchors = b.ca.rootsPem;
    controller!.refreshTrust();
    expect(controller!.clientTrustPem).toEqual(b.ca.rootsPem);
    expect(await authorized(a)).toBe(false);
    expect(await authorized(b)).toBe(true);

    // no anchors: nothing verifies (never the public root store)
    anchors = [];
    controller!.refreshTrust();
    expect(controller!.clientTrustPem).toEqual([]);
    expect(await authorized(b)).toBe(false);

    // a rotation elsewhere: the controller notices the anchors changed
    anchors = [...a.ca.rootsPem, ...b.ca.rootsPem];
    await waitFor(async () => controller!.clientTrustPem.length === 2, {
      timeoutMs: 5_000,
      what: 'the new anchors',
    });
    expect(await authorized(a)).toBe(true);
    expect(await authorized(b)).toBe(true);
  });

  it('refuses TLS 1.2 renegotiation (which could swap the client certificate under socket.authorized)', async () => {
    const a = authority();
    const url = new URL(await serve(a, () => a.ca.rootsPem));
    const outcome = await new Promise<string>((resolve) => {
      const socket = tlsConnect(
        {
          host: url.hostname,
          port: Number(url.port),
          ca: a.ca.rootsPem.join(''),
          cert: a.cert,
          key: a.key,
          maxVersion: 'TLSv1.2',
        },
        () => {
          const started = socket.renegotiate({ rejectUnauthorized: true }, (err) => {
            resolve(err ? 'refused' : 'renegotiated');
            socket.destroy();
          });
          if (!started) resolve('refused');
        },
      );
      socket.on('error', () => resolve('refused'));
      socket.on('close', () => resolve('refused'));
    });
    expect(outcome).toBe('refused');
  });
});
