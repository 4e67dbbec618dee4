// X.509-SVIDs end to end over HTTP, judged by independent tools: openssl, and Node's TLS stack for mutual TLS.
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr } from '../../src/keys/x509/index.ts';
import { startTestBroker, type TestBroker, type TestResponse } from '../helpers/broker.ts';
import { uniquePrefix } from '../helpers/redis.ts';
import { waitFor } from '../helpers/wait.ts';
import { issueSvid } from '../helpers/workload.ts';
import { issueX509Svid, mutualTls, type X509Svid, type X509Workload } from '../helpers/x509.ts';
import {
  NEWKEY,
  openssl,
  opensslCsr,
  opensslIssue,
  opensslOk,
  opensslRoot,
  type TempDir,
  tempDir,
} from '../unit/x509/helpers.ts';

const TD = 'example.org';
const WORKLOAD = `spiffe://${TD}/x509/workload`;

const epoch = () => Math.floor(Date.now() / 1000);

function p256Workload(): { key: string; csr: string } {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return {
    key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    csr: createCsr(privateKey),
  };
}

/** The CRL's number, serials and reasons as openssl reads them, after it verified the CRL's signature. */
async function readCrl(t: TempDir, b: TestBroker, name: string) {
  const res = await fetch(`${b.url}/v1/crl`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toBe('application/pkix-crl');
  const der = Buffer.from(await res.arrayBuffer());
  await t.write(`${name}.der`, der);
  await t.write('bundle.pem', (await b.request('GET', '/v1/bundle.pem')).text);
  const r = await openssl(
    ['crl', '-inform', 'DER', '-in', `${name}.der`, '-CAfile', 'bundle.pem', '-verify', '-noout', '-text'],
    t.dir,
  );
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toContain('verify OK');
  const number = Number(/X509v3 CRL Number: \n\s+(\d+)\n/.exec(r.stdout)?.[1]);
  const serials = [...r.stdout.matchAll(/Serial Number: ([0-9A-F]+)\n/g)].map((m) => m[1]!.toLowerCase());
  // Node's TLS stack takes CRLs as PEM only
  const pem = `-----BEGIN X509 CRL-----\n${der
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .trim()}\n-----END X509 CRL-----\n`;
  return { der, pem, text: r.stdout, number, serials };
}

describe.each(['memory', 'redis'] as const)('X.509-SVIDs with the %s store', (store) => {
  let b: TestBroker;
  let t: TempDir;

  beforeAll(async () => {
    t = await tempDir('writ-x509-e2e-');
    b = await startTestBroker({ store, config: { trustDomain: TD } });
    await t.write('bundle.pem', (await b.request('GET', '/v1/bundle.pem')).text);
  });
  afterAll(async () => {
    await b?.close();
    await t?.cleanup();
  });

  const exchange = (body: Record<string, unknown>): Promise<TestResponse> =>
    b.request('POST', '/v1/svid/x509', { body });
  const joinToken = async (spiffeId = WORKLOAD): Promise<string> => {
    const jt = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId });
    expect(jt.status).toBe(201);
    return jt.body.token as string;
  };

  it('publishes the root as PEM and in the SPIFFE bundle beside the JWT keys', async () => {
    const pem = await b.request('GET', '/v1/bundle.pem');
    expect(pem.status).toBe(200);
    expect(pem.headers.get('content-type')).toMatch(/^application\/x-pem-file/);
    // The current root and the next one (published before it issues), each self-signed for the trust domain.
    const roots = pem.text
      .split(/(?<=-----END CERTIFICATE-----\n)/)
      .filter(Boolean)
      .map((p) => new X509Certificate(p));
    expect(roots).toHaveLength(2);
    for (const root of roots) {
      expect(root.ca).toBe(true);
      expect(root.checkIssued(root)).toBe(true);
      expect(root.subjectAltName).toBe(`URI:spiffe://${TD}`);
    }
    expect(roots[0]?.raw.equals(new X509Certificate(b.broker.deps.ca.rootsPem[0] ?? '').raw)).toBe(true);

    const bundle = await b.request('GET', '/v1/bundle');
    expect(bundle.body.spiffe_sequence).toBeGreaterThanOrEqual(1);
    expect(bundle.body.spiffe_refresh_hint).toBe(300);
    const uses = (bundle.body.keys as { use: string }[]).map((k) => k.use);
    expect(uses).toEqual(['x509-svid', 'x509-svid', 'jwt-svid', 'jwt-svid']);
    const authorities = bundle.body.keys.slice(0, 2);
    for (const [i, authority] of authorities.entries()) {
      expect(authority).toMatchObject({ kty: 'EC', crv: 'P-256', use: 'x509-svid' });
      expect(authority.x5c).toEqual([roots[i]?.raw.toString('base64')]);
      expect(authority.kid).toBeUndefined();
      expect(authority.d).toBeUndefined();
    }
  });

  it.each([
    ['EC P-256 (openssl req)', NEWKEY.p256!],
    ['RSA 2048 (openssl req)', NEWKEY.rsa2048!],
    ['Ed25519 (openssl req)', NEWKEY.ed25519!],
  ])(
    'certifies a %s CSR: openssl verifies it strictly and reads the SPIFFE profile',
    async (what, keyArgs) => {
      const name = what.split(' ')[0]!.toLowerCase() + what.split(' ')[1]!.toLowerCase();
      const csr = await opensslCsr(t, name, keyArgs);
      const before = epoch();
      const svid = await issueX509Svid(b, WORKLOAD, csr);
      expect(Object.keys(svid).sort()).toEqual([
        'bundle',
        'certificate',
        'chain',
        'expiresAt',
        'id',
        'spiffeId',
        'task',
      ]);
      expect(svid.spiffeId).toBe(WORKLOAD);
      expect(svid.chain).toEqual([]); // the CA is the root
      expect(svid.bundle).toBe(await t.read('bundle.pem'));
      expect(svid.id).toMatch(/^[0-9a-f]{32}$/);
      // the default X.509-SVID lifetime: 15 minutes
      expect(svid.expiresAt - before).toBeGreaterThanOrEqual(899);
      expect(svid.expiresAt - epoch()).toBeLessThanOrEqual(900);
      await t.write(`${name}.pem`, svid.certificate);

      const verified = await openssl(
        ['verify', '-x509_strict', '-CAfile', 'bundle.pem', `${name}.pem`],
        t.dir,
      );
      expect(verified.stdout + verified.stderr).toContain(`${name}.pem: OK`);
      expect(verified.code).toBe(0);

      const text = await opensslOk(['x509', '-in', `${name}.pem`, '-noout', '-text'], t.dir);
      // exactly one SAN, the SPIFFE ID (the other URI in the text is the CRL distribution point)
      const san = /X509v3 Subject Alternative Name: (?:critical)?\n\s+(.+)\n/.exec(text)?.[1];
      expect(san?.split(', ')).toEqual([`URI:${WORKLOAD}`]);
      expect(text.match(/URI:/g)).toHaveLength(2);
      expect(text).toMatch(/X509v3 Basic Constraints: critical\n\s+CA:FALSE\n/);
      expect(text).toMatch(/X509v3 Key Usage: critical\n\s+Digital Signature\n/);
      expect(text).toMatch(
        /X509v3 Extended Key Usage: \n\s+TLS Web Server Authentication, TLS Web Client Authentication\n/,
      );
      expect(text).toContain(`URI:${b.url}/v1/crl`);
      expect(text).toContain('X509v3 Subject Key Identifier');
      expect(text).toContain('X509v3 Authority Key Identifier');
      // the CSR's subject is ignored: the broker writes its own
      expect(text).not.toContain('workload-cn');
      expect(text).toMatch(/Subject: O = SPIFFE\n/);
      const serial = (await opensslOk(['x509', '-in', `${name}.pem`, '-noout', '-serial'], t.dir)).trim();
      expect(serial.replace(/^serial=/, '').toLowerCase()).toBe(svid.id);
      const cert = new X509Certificate(svid.certificate);
      expect(Date.parse(cert.validTo) / 1000).toBe(svid.expiresAt);

      // tracked like a JWT-SVID
      const view = await b.admin('GET', `/v1/admin/credentials/${svid.id}`);
      expect(view.status).toBe(200);
      expect(view.body).toMatchObject({
        id: svid.id,
        type: 'x509',
        spiffeId: WORKLOAD,
        task: svid.task,
        attestor: 'join_token',
        audience: [],
        expiresAt: svid.expiresAt,
        status: 'active',
      });
    },
  );

  it('certifies a CSR made with createCsr (EC P-384)', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const svid = await issueX509Svid(b, WORKLOAD, createCsr(privateKey, { commonName: 'ignored' }));
    const cert = new X509Certificate(svid.certificate);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
    expect(cert.subjectAltName).toBe(`URI:${WORKLOAD}`);
    expect(cert.checkIssued(new X509Certificate(svid.bundle))).toBe(true);
    expect(cert.verify(new X509Certificate(svid.bundle).publicKey)).toBe(true);
  });

  it('caps the lifetime at the entry x509Ttl and refuses a ttl above the hard cap', async () => {
    const id = `spiffe://${TD}/x509/capped`;
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: id,
      selectors: [`join_token:spiffe_id:${id}`],
      x509Ttl: 120,
      jwtTtl: 60,
    });
    expect(entry.status, JSON.stringify(entry.body)).toBe(201);
    const svid = await issueX509Svid(b, id, p256Workload().csr, { ttl: 3600 });
    expect(svid.expiresAt - epoch()).toBeLessThanOrEqual(120);
    expect(svid.expiresAt - epoch()).toBeGreaterThanOrEqual(115);
    // a JWT-SVID of the same identity keeps its own cap
    const jwt = await issueSvid(b, id, { ttl: 3600 });
    expect(jwt.expiresAt - epoch()).toBeLessThanOrEqual(60);

    const tooLong = await exchange({
      attestor: 'join_token',
      evidence: { token: await joinToken() },
      csr: p256Workload().csr,
      ttl: 86_401,
    });
    expect(tooLong.status).toBe(400);
    expect(tooLong.body.error).toBe('ERR_TTL_INVALID');
  });

  it('never outlives its task: the task deadline caps a later certificate of the task', async () => {
    const task = `x509-deadline-${store}`;
    const first = await issueX509Svid(b, WORKLOAD, p256Workload().csr, { task, ttl: 600 });
    const view = await b.admin('GET', `/v1/admin/tasks/${task}`);
    expect(view.body.deadline).toBeGreaterThanOrEqual(first.expiresAt);
    const long = await issueX509Svid(b, WORKLOAD, p256Workload().csr, { task, ttl: 86_400 });
    expect(long.expiresAt).toBeLessThanOrEqual(view.body.deadline);
  });

  it('refuses bad CSRs with 400 and a stable code before attestation, so the join token stays valid', async () => {
    const token = await joinToken();
    const send = (csr: unknown) => exchange({ attestor: 'join_token', evidence: { token }, csr });

    // tampered: one byte of the signed subject changed after signing
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const good = createCsr(privateKey, { commonName: 'tamper-me' });
    const der = Buffer.from(good.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const at = der.indexOf(Buffer.from('tamper-me'));
    expect(at).toBeGreaterThan(0);
    der[at] = 'T'.charCodeAt(0);
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der
      .toString('base64')
      .replace(/(.{64})/g, '$1\n')
      .trim()}\n-----END CERTIFICATE REQUEST-----\n`;
    const refused = await send(tampered);
    expect(refused.status).toBe(400);
    expect(refused.body).toEqual({
      error: 'ERR_CSR_SIGNATURE',
      error_description: expect.any(String),
    });

    const garbage = await send(
      '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n',
    );
    expect(garbage.status).toBe(400);
    expect(garbage.body.error).toBe('ERR_CSR_INVALID');
    expect((await send('not a csr')).body.error).toBe('ERR_CSR_INVALID');
    expect((await send('A'.repeat(20_000))).body.error).toBe('ERR_CSR_INVALID');

    const weak = await send(await opensslCsr(t, 'weak', NEWKEY.rsa1024!));
    expect(weak.status).toBe(400);
    expect(weak.body.error).toBe('ERR_CSR_WEAK_KEY');
    expect((await send(await opensslCsr(t, 'p521', NEWKEY.p521!))).body.error).toBe('ERR_CSR_WEAK_KEY');

    const sha1 = await send(await opensslCsr(t, 'sha1', NEWKEY.p256!, ['-sha1']));
    expect(sha1.status).toBe(400);
    expect(sha1.body.error).toBe('ERR_CSR_UNSUPPORTED_ALGORITHM');

    // not a string, and an unknown field: the body schema refuses (invalid_request)
    expect((await send(42)).body.error).toBe('invalid_request');
    const unknown = await exchange({
      attestor: 'join_token',
      evidence: { token },
      csr: good,
      audience: ['x'],
    });
    expect(unknown.status).toBe(400);
    expect(unknown.body.error).toBe('invalid_request');

    // none of that spent the join token
    const ok = await send(good);
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.spiffeId).toBe(WORKLOAD);
    const replay = await send(p256Workload().csr);
    expect(replay.status).toBe(401);
    expect(replay.body.error).toBe('ERR_ATTESTATION_FAILED');
  });

  it('counts issuances and CSR failures by type in the metrics', async () => {
    const metrics = await b.request('GET', '/metrics');
    expect(metrics.text).toMatch(/writ_svid_issued_total\{type="x509",attestor="join_token"\} [1-9]/);
    expect(metrics.text).toMatch(
      /writ_svid_issuance_failures_total\{type="x509",code="ERR_CSR_SIGNATURE"\} 1/,
    );
  });

  it('mutual TLS between two workloads succeeds, and fails for a revoked certificate once the CRL is supplied', async () => {
    const issue = async (name: string): Promise<X509Workload> => {
      const w = p256Workload();
      return { key: w.key, svid: await issueX509Svid(b, `spiffe://${TD}/mtls/${name}`, w.csr) };
    };
    const [server, client, other] = await Promise.all([issue('server'), issue('client'), issue('other')]);
    const bundle = (await b.request('GET', '/v1/bundle.pem')).text;

    expect(await mutualTls(server, client, bundle)).toMatchObject({
      ok: true,
      serverSawPeer: `URI:${client.svid.spiffeId}`,
      clientSawPeer: `URI:${server.svid.spiffeId}`,
    });
    // CRL checking on, with the broker's current CRL: still fine (it is valid and does not list the client)
    const before = await readCrl(t, b, 'mtls-before');
    expect(await mutualTls(server, client, bundle, { crl: before.pem })).toMatchObject({ ok: true });

    const revoked = await b.admin('POST', `/v1/admin/credentials/${client.svid.id}/revoke`, {
      reason: 'key_compromise',
    });
    expect(revoked.status, JSON.stringify(revoked.body)).toBe(200);
    expect(revoked.body.credential).toMatchObject({ id: client.svid.id, type: 'x509', status: 'revoked' });

    // without the CRL the handshake cannot know; with the new CRL it fails, for the revoked client only
    expect(await mutualTls(server, client, bundle)).toMatchObject({ ok: true });
    const after = await readCrl(t, b, 'mtls-after');
    expect(after.serials).toContain(client.svid.id);
    expect(after.text).toContain('Key Compromise');
    expect(after.number).toBeGreaterThan(before.number);
    const refused = await mutualTls(server, client, bundle, { crl: after.pem });
    expect(refused.ok).toBe(false);
    expect(refused.serverSawPeer).toBeUndefined();
    const reason = await mutualTls(server, client, bundle, { crl: after.pem, rejectUnauthorized: false });
    expect(reason.authorizationError).toBe('CERT_REVOKED');
    expect(await mutualTls(server, other, bundle, { crl: after.pem })).toMatchObject({ ok: true });
  });

  it('revokes the certificates of a task when it completes: on the CRL at once, and in the admin view', async () => {
    const task = `x509-task-${store}`;
    const w = p256Workload();
    const cert = await issueX509Svid(b, WORKLOAD, w.csr, { task });
    const own = await issueSvid(b, WORKLOAD, { task, audience: [b.url] });
    const before = await readCrl(t, b, 'task-before');
    expect(before.serials).not.toContain(cert.id);

    const done = await b.request('POST', `/v1/tasks/${task}/complete`, {
      headers: { authorization: `Bearer ${own.token}` },
    });
    expect(done.status).toBe(202);

    // No waiting: the CRL served right after the task ended lists its certificate.
    const after = await readCrl(t, b, 'task-after');
    expect(after.serials).toContain(cert.id);
    expect(after.number).toBeGreaterThan(before.number);
    expect(after.text).toContain('Cessation Of Operation');
    const view = await b.admin('GET', `/v1/admin/credentials/${cert.id}`);
    expect(view.body).toMatchObject({ type: 'x509', status: 'revoked', revokedReason: 'task_completed' });

    // The fan-out is type-agnostic: the feed announces the certificate like a token, by serial.
    await waitFor(
      async () => {
        const feed = await b.request('GET', '/v1/revocations?limit=1000');
        return (feed.body.events as { credential?: string; credentialType?: string }[]).find(
          (e) => e.credential === cert.id && e.credentialType === 'x509',
        );
      },
      { what: 'the certificate on the revocation feed' },
    );
    // And no certificate is issued for the ended task.
    const late = await exchange({
      attestor: 'join_token',
      evidence: { token: await joinToken() },
      csr: w.csr,
      task,
    });
    expect(late.status).toBe(409);
    expect(late.body.error).toBe('ERR_TASK_ENDED');
    // openssl verify with CRL checking agrees
    await t.write('task-cert.pem', cert.certificate);
    await t.write('task-crl.pem', (await b.request('GET', '/v1/crl?format=pem')).text);
    const checked = await openssl(
      ['verify', '-crl_check', '-CRLfile', 'task-crl.pem', '-CAfile', 'bundle.pem', 'task-cert.pem'],
      t.dir,
    );
    expect(checked.code).not.toBe(0);
    expect(checked.stdout + checked.stderr).toContain('certificate revoked');
  });

  it('serves the CRL as DER and as PEM, numbered monotonically; refuses other formats', async () => {
    const der = await fetch(`${b.url}/v1/crl`);
    const derBytes = Buffer.from(await der.arrayBuffer());
    const pem = await b.request('GET', '/v1/crl?format=pem');
    expect(pem.status).toBe(200);
    expect(pem.headers.get('content-type')).toMatch(/^application\/x-pem-file/);
    expect(pem.text).toMatch(/^-----BEGIN X509 CRL-----\n/);
    // unchanged between the two requests: the same CRL, cached
    expect(Buffer.from(pem.text.replace(/-----[^-]+-----|\s/g, ''), 'base64')).toEqual(derBytes);
    expect(der.headers.get('cache-control')).toBe('no-cache');
    const bad = await b.request('GET', '/v1/crl?format=xml');
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('invalid_request');

    const first = await readCrl(t, b, 'number-1');
    const svid = await issueX509Svid(b, WORKLOAD, p256Workload().csr);
    await b.admin('POST', `/v1/admin/credentials/${svid.id}/revoke`, {});
    const second = await readCrl(t, b, 'number-2');
    expect(second.number).toBeGreaterThan(first.number);
    expect(second.serials).toContain(svid.id);
    // nextUpdate an hour after thisUpdate (keys.x509.crlNextUpdate)
    const crl = await opensslOk(
      ['crl', '-inform', 'DER', '-in', 'number-2.der', '-noout', '-lastupdate', '-nextupdate'],
      t.dir,
    );
    const last = Date.parse(/lastUpdate=(.+)\n/.exec(crl)![1]!) / 1000;
    const next = Date.parse(/nextUpdate=(.+)\n/.exec(crl)![1]!) / 1000;
    expect(next - last).toBe(3600 + 5); // thisUpdate is back-dated by credentials.backdate
  });
});

describe('X.509 CA shared by replicas (Redis)', () => {
  let a: TestBroker;
  let b: TestBroker;
  let t: TempDir;

  beforeAll(async () => {
    t = await tempDir('writ-x509-replicas-');
    const prefix = uniquePrefix('x509-replicas');
    const start = () => startTestBroker({ store: 'redis', config: { trustDomain: TD, redis: { prefix } } });
    [a, b] = await Promise.all([start(), start()]);
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await t?.cleanup();
  });

  it('issues under one CA, and a revocation made on one replica is on the other’s next CRL', async () => {
    const bundleA = (await a.request('GET', '/v1/bundle.pem')).text;
    expect((await b.request('GET', '/v1/bundle.pem')).text).toBe(bundleA);
    const svid: X509Svid = await issueX509Svid(a, WORKLOAD, p256Workload().csr);
    const first = await readCrl(t, b, 'replica-b1');
    expect(first.serials).not.toContain(svid.id);
    const revoked = await b.admin('POST', `/v1/admin/credentials/${svid.id}/revoke`, {});
    expect(revoked.status).toBe(200);
    const fromA = await readCrl(t, a, 'replica-a');
    expect(fromA.serials).toContain(svid.id);
    expect(fromA.number).toBeGreaterThan(first.number);
    const fromB = await readCrl(t, b, 'replica-b2');
    expect(fromB.number).toBeGreaterThan(fromA.number);
  });
});

describe('an intermediate CA loaded from files', () => {
  let t: TempDir;
  let b: TestBroker;

  beforeAll(async () => {
    t = await tempDir('writ-x509-int-');
    await opensslRoot(t, 'root', NEWKEY.p256!);
    await opensslIssue(t, 'int', 'root', NEWKEY.p384!, 'v3_int');
    b = await startTestBroker({
      store: 'memory',
      config: {
        trustDomain: TD,
        keys: {
          x509: {
            caCertFile: t.path('int.pem'),
            caKeyFile: t.path('int.key'),
            caChainFile: t.path('root.pem'),
            crlUrl: 'https://writ.example.org/v1/crl',
          },
        },
      },
    });
  });
  afterAll(async () => {
    await b?.close();
    await t?.cleanup();
  });

  it('serves the chain with every SVID and the user’s root as the bundle', async () => {
    const svid = await issueX509Svid(b, WORKLOAD, p256Workload().csr);
    const root = await t.read('root.pem');
    const intermediate = await t.read('int.pem');
    expect(new X509Certificate(svid.bundle).raw).toEqual(new X509Certificate(root).raw);
    expect(svid.chain.map((c) => new X509Certificate(c).raw)).toEqual([
      new X509Certificate(intermediate).raw,
    ]);
    expect(new X509Certificate((await b.request('GET', '/v1/bundle.pem')).text).raw).toEqual(
      new X509Certificate(root).raw,
    );
    await t.write('leaf.pem', svid.certificate);
    await t.write('chain.pem', svid.chain.join(''));
    const verified = await openssl(
      ['verify', '-x509_strict', '-CAfile', 'root.pem', '-untrusted', 'chain.pem', 'leaf.pem'],
      t.dir,
    );
    expect(verified.stdout).toContain('leaf.pem: OK');
    const text = await opensslOk(['x509', '-in', 'leaf.pem', '-noout', '-text'], t.dir);
    expect(text).toContain('URI:https://writ.example.org/v1/crl');
    // the CRL is signed by the intermediate
    await t.write('crl.der', Buffer.from(await (await fetch(`${b.url}/v1/crl`)).arrayBuffer()));
    const crl = await openssl(
      ['crl', '-inform', 'DER', '-in', 'crl.der', '-CAfile', 'int.pem', '-verify', '-noout'],
      t.dir,
    );
    expect(crl.stderr).toContain('verify OK');
  });

  it('refuses to start with a key that does not match the certificate', async () => {
    await expect(
      startTestBroker({
        store: 'memory',
        config: {
          trustDomain: TD,
          keys: { x509: { caCertFile: t.path('int.pem'), caKeyFile: t.path('root.key') } },
        },
      }),
    ).rejects.toThrow(/does not match/);
  });
});
