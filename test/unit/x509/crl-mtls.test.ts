import type { AddressInfo } from 'node:net';
import { connect, createServer, type PeerCertificate, type Server, type TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type CertificateAuthority,
  crlToPem,
  generateRootCa,
  type IssuedCertificate,
  loadCa,
} from '../../../src/keys/x509/ca.ts';
import { parseCsr } from '../../../src/keys/x509/csr.ts';
import {
  NEWKEY,
  nowSeconds,
  openssl,
  opensslCsr,
  opensslIssue,
  opensslOk,
  opensslRoot,
  type TempDir,
  tempDir,
} from './helpers.ts';

const TD = 'example.org';
const CRL_URL = 'https://writ.example.org/v1/crl';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** A time as openssl prints it: `Nov  7 21:16:49 2026 GMT`. */
function opensslDate(epochSeconds: number): string {
  const d = new Date(epochSeconds * 1000);
  const p2 = (n: number) => String(n).padStart(2, '0');
  const time = `${p2(d.getUTCHours())}:${p2(d.getUTCMinutes())}:${p2(d.getUTCSeconds())}`;
  return `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${time} ${d.getUTCFullYear()} GMT`;
}

interface Workload {
  id: string;
  key: string;
  svid: IssuedCertificate;
}

async function workload(
  t: TempDir,
  ca: CertificateAuthority,
  name: string,
  keyArgs = NEWKEY.p256!,
): Promise<Workload> {
  const csr = parseCsr(await opensslCsr(t, name, keyArgs));
  const now = nowSeconds();
  const id = `spiffe://${TD}/workload/${name}`;
  const svid = ca.issueX509Svid({
    spiffeId: id,
    spki: csr.spki,
    publicKey: csr.publicKey,
    notAfter: now + 900,
    now,
    backdate: 30,
  });
  return { id, key: await t.read(`${name}.key`), svid };
}

describe('CRLs', () => {
  let t: TempDir;
  const ca = generateRootCa({ trustDomain: TD, ttlSeconds: 86_400, clock: Date.now, crlUrl: CRL_URL });
  let a: Workload;
  let b: Workload;

  beforeAll(async () => {
    t = await tempDir();
    [a, b] = await Promise.all([workload(t, ca, 'crl-a'), workload(t, ca, 'crl-b')]);
    await t.write('bundle.pem', ca.rootsPem.join(''));
    await t.write('a.pem', a.svid.pem);
    await t.write('b.pem', b.svid.pem);
  }, 60_000);
  afterAll(() => t.cleanup());

  it('openssl crl -verify accepts the signature; the CRL lists the revoked serials, reasons and number', async () => {
    const now = nowSeconds();
    const der = ca.signCrl({
      revoked: [
        { serialHex: a.svid.serialHex, revokedAt: now - 5, reason: 'keyCompromise' },
        { serialHex: '0badc0de', revokedAt: now - 3, reason: 'cessationOfOperation' },
        { serialHex: 'ff', revokedAt: now - 2 },
      ],
      crlNumber: 7n,
      thisUpdate: now,
      nextUpdate: now + 600,
    });
    await t.write('crl.der', der);
    await t.write('crl.pem', crlToPem(der));
    const r = await openssl(
      ['crl', '-in', 'crl.pem', '-CAfile', 'bundle.pem', '-verify', '-noout', '-text'],
      t.dir,
    );
    expect(r.code).toBe(0);
    expect(r.stderr).toContain('verify OK');
    expect(r.stdout).toContain('Version 2 (0x1)');
    expect(r.stdout).toMatch(/X509v3 CRL Number: \n\s+7\n/);
    expect(r.stdout).toContain(ca.keyId.toUpperCase().match(/../g)!.join(':')); // AKI = the CA's SKI
    expect(r.stdout).toContain(`Serial Number: ${a.svid.serialHex.toUpperCase()}\n`);
    expect(r.stdout).toContain('Serial Number: 0BADC0DE\n');
    // 0xff alone would be negative: it is written 00 ff, and read back as FF.
    expect(r.stdout).toContain('Serial Number: FF\n');
    expect(r.stdout).not.toContain(b.svid.serialHex.toUpperCase());
    expect(r.stdout).toContain('Key Compromise');
    expect(r.stdout).toContain('Cessation Of Operation');
    expect(r.stdout.match(/CRL Reason Code/g)?.length).toBe(2); // unspecified is left out (RFC 5280 §5.3.1)
    // The DER form is the same CRL.
    const fromDer = await opensslOk(
      ['crl', '-in', 'crl.der', '-inform', 'DER', '-CAfile', 'bundle.pem', '-verify', '-noout'],
      t.dir,
    );
    expect(fromDer).toBe('');
  });

  it('openssl verify -crl_check finds the revoked SVID revoked and the other one fine', async () => {
    const now = nowSeconds();
    await t.write(
      'crl-a.pem',
      crlToPem(
        ca.signCrl({
          revoked: [{ serialHex: a.svid.serialHex, revokedAt: now }],
          crlNumber: 1,
          thisUpdate: now,
          nextUpdate: now + 600,
        }),
      ),
    );
    const revoked = await openssl(
      ['verify', '-x509_strict', '-crl_check', '-CRLfile', 'crl-a.pem', '-CAfile', 'bundle.pem', 'a.pem'],
      t.dir,
    );
    expect(revoked.code).not.toBe(0);
    expect(revoked.stdout + revoked.stderr).toContain('certificate revoked');
    const fine = await openssl(
      ['verify', '-x509_strict', '-crl_check', '-CRLfile', 'crl-a.pem', '-CAfile', 'bundle.pem', 'b.pem'],
      t.dir,
    );
    expect(fine.stdout).toContain('b.pem: OK');
  });

  it('an empty CRL has no revokedCertificates list and verifies', async () => {
    const now = nowSeconds();
    await t.write(
      'empty.pem',
      crlToPem(ca.signCrl({ revoked: [], crlNumber: 0, thisUpdate: now, nextUpdate: now + 60 })),
    );
    const r = await openssl(
      ['crl', '-in', 'empty.pem', '-CAfile', 'bundle.pem', '-verify', '-noout', '-text'],
      t.dir,
    );
    expect(r.stderr).toContain('verify OK');
    expect(r.stdout).toContain('No Revoked Certificates.');
  });

  it('lists a serial revoked twice once, at its first revocation', async () => {
    const now = nowSeconds();
    const der = ca.signCrl({
      revoked: [
        { serialHex: a.svid.serialHex, revokedAt: now - 10 },
        { serialHex: a.svid.serialHex.toUpperCase(), revokedAt: now - 100 },
      ],
      crlNumber: 2,
      thisUpdate: now,
      nextUpdate: now + 60,
    });
    await t.write('dup.pem', crlToPem(der));
    const text = await opensslOk(['crl', '-in', 'dup.pem', '-noout', '-text'], t.dir);
    expect(text.match(/Serial Number:/g)?.length).toBe(1);
    expect(text).toContain(`Revocation Date: ${opensslDate(now - 100)}`);
  });

  it('refuses bad requests with TypeError', () => {
    const now = nowSeconds();
    const ok = { revoked: [], crlNumber: 1, thisUpdate: now, nextUpdate: now + 60 };
    expect(() => ca.signCrl({ ...ok, nextUpdate: now })).toThrow(TypeError);
    expect(() => ca.signCrl({ ...ok, crlNumber: -1 })).toThrow(TypeError);
    expect(() => ca.signCrl({ ...ok, crlNumber: 1n << 160n })).toThrow(TypeError);
    expect(() => ca.signCrl({ ...ok, revoked: [{ serialHex: 'xyz', revokedAt: now }] })).toThrow(TypeError);
    expect(() => ca.signCrl({ ...ok, revoked: [{ serialHex: '00', revokedAt: now }] })).toThrow(TypeError);
  });

  it('a loaded intermediate signs CRLs that openssl verifies against it', async () => {
    await opensslRoot(t, 'root', NEWKEY.p256!);
    await opensslIssue(t, 'int', 'root', NEWKEY.p384!, 'v3_int');
    const inter = loadCa({
      certPem: await t.read('int.pem'),
      keyPem: await t.read('int.key'),
      chainPem: await t.read('root.pem'),
    });
    const now = nowSeconds();
    await t.write(
      'int-crl.pem',
      crlToPem(
        inter.signCrl({
          revoked: [{ serialHex: 'abcdef', revokedAt: now }],
          crlNumber: 1,
          thisUpdate: now,
          nextUpdate: now + 60,
        }),
      ),
    );
    const r = await openssl(['crl', '-in', 'int-crl.pem', '-CAfile', 'int.pem', '-verify', '-noout'], t.dir);
    expect(r.stderr).toContain('verify OK');
    // And not against its root: the check is real.
    const wrong = await openssl(
      ['crl', '-in', 'int-crl.pem', '-CAfile', 'root.pem', '-verify', '-noout'],
      t.dir,
    );
    expect(wrong.code).not.toBe(0);
  });
});

describe('mutual TLS between two workloads holding X509-SVIDs', () => {
  let t: TempDir;
  const ca = generateRootCa({ trustDomain: TD, ttlSeconds: 86_400, clock: Date.now, crlUrl: CRL_URL });
  const bundle = ca.rootsPem.join('');
  let server: Workload;
  let client: Workload;
  let clientRsa: Workload;
  const servers: Server[] = [];

  beforeAll(async () => {
    t = await tempDir();
    [server, client, clientRsa] = await Promise.all([
      workload(t, ca, 'server'),
      workload(t, ca, 'client'),
      workload(t, ca, 'client-rsa', NEWKEY.rsa2048!),
    ]);
  }, 60_000);
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => new Promise((resolve) => s.close(resolve))));
  });
  afterAll(() => t.cleanup());

  /** SPIFFE peers authorize by SPIFFE ID, not host name. */
  function expectPeer(id: string) {
    return (_host: string, cert: PeerCertificate): Error | undefined =>
      cert.subjectaltname === `URI:${id}` ? undefined : new Error(`unexpected peer ${cert.subjectaltname}`);
  }

  interface Outcome {
    ok: boolean;
    serverSawPeer?: string;
    clientSawPeer?: string;
    /** Why the server's TLS stack refused the client (only seen when the server does not reject on its own). */
    authorizationError?: string;
  }

  async function handshake(who: Workload, crl?: string, rejectUnauthorized = true): Promise<Outcome> {
    let serverSawPeer: string | undefined;
    let authorizationError: string | undefined;
    const srv = createServer(
      {
        key: server.key,
        cert: [server.svid.pem, ...ca.chainPem].join(''),
        ca: bundle,
        requestCert: true,
        rejectUnauthorized,
        ...(crl === undefined ? {} : { crl }),
      },
      (socket: TLSSocket) => {
        if (socket.authorized) {
          serverSawPeer = socket.getPeerCertificate().subjectaltname;
          socket.end('hello');
        } else {
          authorizationError = String(socket.authorizationError);
          socket.destroy();
        }
      },
    );
    servers.push(srv);
    await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
    const port = (srv.address() as AddressInfo).port;
    return new Promise<Outcome>((resolve) => {
      let clientSawPeer: string | undefined;
      let data = '';
      const socket = connect({
        host: '127.0.0.1',
        port,
        key: who.key,
        cert: [who.svid.pem, ...ca.chainPem].join(''),
        ca: bundle,
        rejectUnauthorized: true,
        checkServerIdentity: expectPeer(server.id),
      });
      socket.on('secureConnect', () => {
        clientSawPeer = socket.getPeerCertificate().subjectaltname;
      });
      socket.on('data', (d: Buffer) => {
        data += d.toString();
      });
      const done = (ok: boolean) => {
        // The server's view of a refused handshake arrives just after the client's.
        setTimeout(() => resolve({ ok, clientSawPeer, serverSawPeer, authorizationError } as Outcome), 50);
      };
      socket.on('end', () => done(data === 'hello'));
      socket.on('error', () => done(false));
    });
  }

  it('succeeds with both SVIDs, each side seeing the other’s SPIFFE ID', async () => {
    const outcome = await handshake(client);
    expect(outcome).toMatchObject({
      ok: true,
      serverSawPeer: `URI:${client.id}`,
      clientSawPeer: `URI:${server.id}`,
    });
    expect(await handshake(clientRsa)).toMatchObject({ ok: true, serverSawPeer: `URI:${clientRsa.id}` });
  });

  it('still succeeds with a CRL that does not list the client (CRL checking on, CRL valid)', async () => {
    const now = nowSeconds();
    const crl = crlToPem(
      ca.signCrl({
        revoked: [{ serialHex: clientRsa.svid.serialHex, revokedAt: now }],
        crlNumber: 1,
        thisUpdate: now - 5,
        nextUpdate: now + 600,
      }),
    );
    expect(await handshake(client, crl)).toMatchObject({ ok: true, serverSawPeer: `URI:${client.id}` });
  });

  it('fails once a CRL revoking the client’s serial is supplied', async () => {
    const now = nowSeconds();
    const crl = crlToPem(
      ca.signCrl({
        revoked: [{ serialHex: client.svid.serialHex, revokedAt: now, reason: 'cessationOfOperation' }],
        crlNumber: 2,
        thisUpdate: now - 5,
        nextUpdate: now + 600,
      }),
    );
    const outcome = await handshake(client, crl);
    expect(outcome.ok).toBe(false);
    expect(outcome.serverSawPeer).toBeUndefined();
    // The reason, from a server that lets the application decide instead of dropping the connection itself.
    expect((await handshake(client, crl, false)).authorizationError).toBe('CERT_REVOKED');
  });

  it('fails for a client whose SVID comes from another CA', async () => {
    const stranger = generateRootCa({ trustDomain: TD, ttlSeconds: 3600, clock: Date.now });
    const intruder = await workload(t, stranger, 'intruder');
    const outcome = await handshake(intruder);
    expect(outcome.ok).toBe(false);
    expect(outcome.serverSawPeer).toBeUndefined();
    expect((await handshake(intruder, undefined, false)).authorizationError).toBe(
      'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    );
  });
});
