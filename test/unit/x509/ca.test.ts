import { createHash, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createServer, request, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CertificateAuthority,
  generateRootCa,
  type IssuedCertificate,
  loadCa,
} from '../../../src/keys/x509/ca.ts';
import { parseCsr } from '../../../src/keys/x509/csr.ts';
import { createCsr } from '../../../src/keys/x509/csr-builder.ts';
import { CaError } from '../../../src/keys/x509/errors.ts';
import {
  extensionBlock,
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
const clock = (): number => Date.now();

function caError(run: () => unknown): CaError {
  try {
    run();
  } catch (e) {
    if (e instanceof CaError) return e;
    throw e;
  }
  throw new Error('expected a CaError');
}

/** `openssl verify -x509_strict` of a leaf against the CA's bundle (roots) and served chain. */
async function opensslVerify(
  t: TempDir,
  ca: CertificateAuthority,
  leaf: IssuedCertificate,
  extra: readonly string[] = [],
): Promise<{ ok: boolean; output: string }> {
  const name = `leaf-${leaf.serialHex}`;
  await t.write(`${name}.pem`, leaf.pem);
  await t.write(`${name}.bundle.pem`, ca.rootsPem.join(''));
  const args = ['verify', '-x509_strict', ...extra, '-CAfile', `${name}.bundle.pem`];
  if (ca.chainPem.length > 0) {
    await t.write(`${name}.chain.pem`, ca.chainPem.join(''));
    args.push('-untrusted', `${name}.chain.pem`);
  }
  const r = await openssl([...args, `${name}.pem`], t.dir);
  return { ok: r.code === 0 && r.stdout.includes(': OK'), output: r.stdout + r.stderr };
}

async function x509Text(t: TempDir, cert: IssuedCertificate): Promise<string> {
  await t.write(`text-${cert.serialHex}.pem`, cert.pem);
  return opensslOk(['x509', '-in', `text-${cert.serialHex}.pem`, '-text', '-noout'], t.dir);
}

describe('a generated root CA', () => {
  let t: TempDir;
  const csrs = new Map<string, string>();
  const ca = generateRootCa({ trustDomain: TD, ttlSeconds: 30 * 86_400, clock, crlUrl: CRL_URL });

  beforeAll(async () => {
    t = await tempDir();
    await Promise.all(
      (['p256', 'p384', 'rsa2048', 'ed25519'] as const).map(async (k) =>
        csrs.set(k, await opensslCsr(t, k, NEWKEY[k]!)),
      ),
    );
  }, 60_000);
  afterAll(() => t.cleanup());

  function svid(keyName = 'p256', id = `spiffe://${TD}/ns/prod/sa/api`): IssuedCertificate {
    const csr = parseCsr(csrs.get(keyName)!);
    const now = nowSeconds();
    return ca.issueX509Svid({
      spiffeId: id,
      spki: csr.spki,
      publicKey: csr.publicKey,
      notAfter: now + 900,
      now,
      backdate: 30,
    });
  }

  it('is a self-signed CA that openssl accepts under -x509_strict', async () => {
    await t.write('root.pem', ca.rootsPem[0]!);
    const out = await opensslOk(['verify', '-x509_strict', '-CAfile', 'root.pem', 'root.pem'], t.dir);
    expect(out).toContain('root.pem: OK');
    const text = await opensslOk(['x509', '-in', 'root.pem', '-text', '-noout'], t.dir);
    expect(extensionBlock(text, 'X509v3 Basic Constraints')).toEqual({ critical: true, body: ['CA:TRUE'] });
    expect(extensionBlock(text, 'X509v3 Key Usage')).toEqual({
      critical: true,
      body: ['Certificate Sign, CRL Sign'],
    });
    expect(extensionBlock(text, 'X509v3 Subject Alternative Name')?.body).toEqual([`URI:spiffe://${TD}`]);
    expect(text).toMatch(new RegExp(`Subject: O = Writ, CN = ${TD}, serialNumber = [0-9a-f]{32}`));
    expect(ca.chainPem).toEqual([]);
    expect(ca.rootsPem).toEqual([ca.certificatePem]);
    expect(ca.trustDomain).toBe(TD);
    expect(ca.signatureAlgorithm).toBe('ecdsa-with-SHA256');
  });

  it.each(['p256', 'p384', 'rsa2048', 'ed25519'])(
    'issues an X509-SVID for a %s key that openssl verify -x509_strict accepts for TLS client and server',
    async (keyName) => {
      const leaf = svid(keyName);
      expect((await opensslVerify(t, ca, leaf)).ok).toBe(true);
      expect((await opensslVerify(t, ca, leaf, ['-purpose', 'sslclient'])).ok).toBe(true);
      expect((await opensslVerify(t, ca, leaf, ['-purpose', 'sslserver'])).ok).toBe(true);
    },
  );

  it.each(['p256', 'p384', 'rsa2048', 'ed25519'])(
    'issueX509SvidAsync (threadpool signing and check) issues a %s X509-SVID that openssl accepts',
    async (keyName) => {
      const csr = parseCsr(csrs.get(keyName)!);
      const now = nowSeconds();
      const id = `spiffe://${TD}/ns/prod/sa/async`;
      const leaf = await ca.issueX509SvidAsync({
        spiffeId: id,
        spki: csr.spki,
        publicKey: csr.publicKey,
        notAfter: now + 900,
        now,
        backdate: 30,
      });
      expect((await opensslVerify(t, ca, leaf)).ok).toBe(true);
      const x509 = new X509Certificate(leaf.der);
      expect(x509.verify(ca.publicKey)).toBe(true);
      expect(x509.subjectAltName).toBe(`URI:${id}`);
      expect(x509.serialNumber.toLowerCase()).toBe(leaf.serialHex);
      expect([leaf.notBefore, leaf.notAfter]).toEqual([now - 30, now + 900]);
      expect(x509.publicKey.equals(csr.publicKey)).toBe(true);
    },
  );

  it('issueX509SvidAsync refuses what issueX509Svid refuses, with the same errors', async () => {
    const csr = parseCsr(csrs.get('p256')!);
    const now = nowSeconds();
    const base = { spki: csr.spki, publicKey: csr.publicKey, notAfter: now + 900, now };
    await expect(ca.issueX509SvidAsync({ ...base, spiffeId: 'spiffe://other.org/a' })).rejects.toThrow(
      /trust domain/,
    );
    await expect(ca.issueX509SvidAsync({ ...base, spiffeId: `spiffe://${TD}` })).rejects.toThrow(/workload/);
    // A key that is not the CSR's: the minted certificate fails its check (public key), nothing is returned.
    const other = parseCsr(csrs.get('p384')!);
    const error = await ca
      .issueX509SvidAsync({ ...base, publicKey: other.publicKey, spiffeId: `spiffe://${TD}/a` })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CaError);
    expect((error as CaError).message).toMatch(/public key/);
  });

  it('writes the SPIFFE X509-SVID profile, as openssl x509 -text reads it', async () => {
    const leaf = svid();
    const text = await x509Text(t, leaf);
    const san = extensionBlock(text, 'X509v3 Subject Alternative Name');
    expect(san).toEqual({ critical: false, body: [`URI:spiffe://${TD}/ns/prod/sa/api`] });
    expect(text.match(/URI:/g)?.length).toBe(2); // the SAN and the CRL distribution point, nothing else
    expect(extensionBlock(text, 'X509v3 Basic Constraints')).toEqual({ critical: true, body: ['CA:FALSE'] });
    expect(extensionBlock(text, 'X509v3 Key Usage')).toEqual({ critical: true, body: ['Digital Signature'] });
    expect(extensionBlock(text, 'X509v3 Extended Key Usage')?.body).toEqual([
      'TLS Web Server Authentication, TLS Web Client Authentication',
    ]);
    expect(extensionBlock(text, 'X509v3 CRL Distribution Points')?.body).toEqual([
      'Full Name:',
      `URI:${CRL_URL}`,
    ]);
    expect(text).toContain('Version: 3 (0x2)');
    expect(text).toContain('Subject: O = SPIFFE');
    expect(text).toContain('Signature Algorithm: ecdsa-with-SHA256');
    // SKI is RFC 5280 method 1 (SHA-1 of the key bits); AKI is the CA's SKI.
    const ski = extensionBlock(text, 'X509v3 Subject Key Identifier')!.body[0]!;
    const aki = extensionBlock(text, 'X509v3 Authority Key Identifier')!.body[0]!;
    expect(
      aki
        .replace(/^keyid:/, '')
        .replaceAll(':', '')
        .toLowerCase(),
    ).toBe(ca.keyId);
    const spki = parseCsr(csrs.get('p256')!).spki;
    const keyBits = spki.subarray(spki.length - 65); // a P-256 point: 04 || X || Y ends the SPKI
    expect(ski.replaceAll(':', '').toLowerCase()).toBe(createHash('sha1').update(keyBits).digest('hex'));
    const x509 = new X509Certificate(leaf.der);
    expect(x509.subjectAltName).toBe(`URI:spiffe://${TD}/ns/prod/sa/api`);
    expect(x509.ca).toBe(false);
    expect(x509.checkIssued(ca.certificate)).toBe(true);
  });

  it('back-dates notBefore and honours the requested notAfter', async () => {
    const csr = parseCsr(csrs.get('p256')!);
    const now = nowSeconds();
    const leaf = ca.issueX509Svid({
      spiffeId: `spiffe://${TD}/a`,
      spki: csr.spki,
      notAfter: now + 600,
      now,
      backdate: 45,
    });
    expect(leaf.notBefore).toBe(now - 45);
    expect(leaf.notAfter).toBe(now + 600);
    const x509 = new X509Certificate(leaf.der);
    expect(Date.parse(x509.validFrom) / 1000).toBe(now - 45);
    expect(Date.parse(x509.validTo) / 1000).toBe(now + 600);
  });

  it('never lets a certificate outlive the CA', async () => {
    const shortCa = generateRootCa({ trustDomain: TD, ttlSeconds: 600, clock });
    const csr = parseCsr(csrs.get('p256')!);
    const now = nowSeconds();
    const leaf = shortCa.issueX509Svid({
      spiffeId: `spiffe://${TD}/a`,
      spki: csr.spki,
      notAfter: now + 86_400,
      now,
    });
    expect(leaf.notAfter).toBe(shortCa.notAfter);
    expect(Date.parse(new X509Certificate(leaf.der).validTo) / 1000).toBe(shortCa.notAfter);
    expect(Date.parse(shortCa.certificate.validTo) / 1000).toBe(shortCa.notAfter);
    // Once the CA has ended, nothing is issued.
    expect(
      caError(() =>
        shortCa.issueX509Svid({
          spiffeId: `spiffe://${TD}/a`,
          spki: csr.spki,
          notAfter: now + 7200,
          now: now + 601,
        }),
      ).code,
    ).toBe('ERR_CA_EXPIRED');
  });

  it('gives 1,000 certificates unique, positive 16-byte serials', () => {
    const csr = parseCsr(csrs.get('p256')!);
    const now = nowSeconds();
    const serials = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const leaf = ca.issueX509Svid({
        spiffeId: `spiffe://${TD}/w/${i}`,
        spki: csr.spki,
        notAfter: now + 60,
        now,
      });
      expect(leaf.serialHex).toMatch(/^[4-7][0-9a-f]{31}$/);
      serials.add(leaf.serialHex);
      if (i % 100 === 0) {
        // As an independent parser reads it: the same number, positive (the INTEGER's first octet < 0x80).
        expect(new X509Certificate(leaf.der).serialNumber.toLowerCase()).toBe(leaf.serialHex);
        const at = leaf.der.indexOf(Buffer.from(`0210${leaf.serialHex}`, 'hex'));
        expect(at).toBeGreaterThan(0);
      }
    }
    expect(serials.size).toBe(1000);
  });

  it('refuses caller mistakes with TypeError', () => {
    const csr = parseCsr(csrs.get('p256')!);
    const now = nowSeconds();
    const base = { spki: csr.spki, notAfter: now + 60, now };
    expect(() => ca.issueX509Svid({ ...base, spiffeId: 'spiffe://other.org/a' })).toThrow(/trust domain/);
    expect(() => ca.issueX509Svid({ ...base, spiffeId: `spiffe://${TD}` })).toThrow(/workload/);
    expect(() => ca.issueX509Svid({ ...base, spiffeId: `spiffe://${TD}/a/../b` })).toThrow(TypeError);
    expect(() => ca.issueX509Svid({ ...base, spiffeId: `spiffe://${TD}/a`, notAfter: now })).toThrow(
      TypeError,
    );
    expect(() => ca.issueX509Svid({ ...base, spiffeId: `spiffe://${TD}/a`, backdate: -1 })).toThrow(
      TypeError,
    );
    expect(() =>
      ca.issueX509Svid({ ...base, spiffeId: `spiffe://${TD}/a`, spki: Buffer.from('junk') }),
    ).toThrow(TypeError);
    // A key parseCsr would have refused is refused here too, and the certificate minted for it is dropped.
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'der',
    });
    expect(() => ca.issueX509Svid({ ...base, spiffeId: `spiffe://${TD}/a`, spki: weak })).toThrow(TypeError);
    // A publicKey that is not the SPKI's key fails the mint check.
    const other = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey;
    expect(
      caError(() => ca.issueX509Svid({ ...base, spiffeId: `spiffe://${TD}/a`, publicKey: other })).code,
    ).toBe('ERR_CA_MINT_CHECK');
  });

  it('publishes its root as a SPIFFE bundle key (use x509-svid, x5c) without private parts', () => {
    const [key, ...more] = ca.bundleKeys();
    expect(more).toEqual([]);
    expect(key).toMatchObject({ kty: 'EC', crv: 'P-256', use: 'x509-svid' });
    expect(key!.x5c).toEqual([ca.certificate.raw.toString('base64')]);
    expect(Object.keys(key!).sort()).toEqual(['crv', 'kty', 'use', 'x', 'x5c', 'y']);
    const { use: _u, x5c: _x, ...jwk } = key!;
    expect(createPublicKey({ key: jwk as { kty: string }, format: 'jwk' }).equals(ca.publicKey)).toBe(true);
  });

  it('round-trips through toPem/fromPem (the form stored once in Redis) and keeps issuing', async () => {
    const restored = CertificateAuthority.fromPem(ca.toPem(), { crlUrl: CRL_URL });
    expect(restored.certificatePem).toBe(ca.certificatePem);
    expect(restored.keyId).toBe(ca.keyId);
    expect(restored.trustDomain).toBe(TD);
    expect(restored.notAfter).toBe(ca.notAfter);
    const csr = parseCsr(csrs.get('p256')!);
    const now = nowSeconds();
    const leaf = restored.issueX509Svid({
      spiffeId: `spiffe://${TD}/r`,
      spki: csr.spki,
      notAfter: now + 60,
      now,
    });
    expect((await opensslVerify(t, ca, leaf)).ok).toBe(true);
    expect(caError(() => CertificateAuthority.fromPem(ca.certificatePem)).code).toBe('ERR_CA_INVALID');
  });

  it('a P-384 root signs with ecdsa-with-SHA384', async () => {
    const ca384 = generateRootCa({ trustDomain: TD, curve: 'P-384', ttlSeconds: 3600, clock });
    const csr = parseCsr(csrs.get('p256')!);
    const now = nowSeconds();
    const leaf = ca384.issueX509Svid({
      spiffeId: `spiffe://${TD}/a`,
      spki: csr.spki,
      notAfter: now + 60,
      now,
    });
    expect(ca384.signatureAlgorithm).toBe('ecdsa-with-SHA384');
    expect(await x509Text(t, leaf)).toContain('Signature Algorithm: ecdsa-with-SHA384');
    expect((await opensslVerify(t, ca384, leaf)).ok).toBe(true);
  });

  it('openssl refuses an SVID checked against another root (the verification is not vacuous)', async () => {
    const other = generateRootCa({ trustDomain: TD, ttlSeconds: 3600, clock });
    const leaf = svid();
    const r = await opensslVerify(t, other, leaf);
    expect(r.ok).toBe(false);
    expect(r.output).toMatch(/unable to get local issuer certificate/);
  });
});

describe('a loaded intermediate CA under a root made by openssl', () => {
  let t: TempDir;
  let csrPem: string;

  beforeAll(async () => {
    t = await tempDir();
    await opensslRoot(t, 'root-rsa', NEWKEY.rsa2048!);
    await Promise.all([
      opensslIssue(t, 'int-ec', 'root-rsa', NEWKEY.p256!, 'v3_int'),
      opensslIssue(t, 'int-rsa', 'root-rsa', NEWKEY.rsa2048!, 'v3_int'),
      opensslIssue(t, 'not-ca', 'root-rsa', NEWKEY.p256!, 'v3_leaf'),
      opensslIssue(t, 'no-certsign', 'root-rsa', NEWKEY.p256!, 'v3_int_no_certsign'),
      opensslRoot(t, 'other-root', NEWKEY.p256!),
      opensslRoot(t, 'short-root', NEWKEY.p256!, 1),
      opensslCsr(t, 'workload', NEWKEY.p256!).then((pem) => {
        csrPem = pem;
      }),
    ]);
    await opensslIssue(t, 'int-under-short', 'short-root', NEWKEY.p256!, 'v3_int', 30);
  }, 120_000);
  afterAll(() => t.cleanup());

  async function load(name: string, root = 'root-rsa', extra: Partial<Parameters<typeof loadCa>[0]> = {}) {
    return loadCa({
      certPem: await t.read(`${name}.pem`),
      keyPem: await t.read(`${name}.key`),
      chainPem: await t.read(`${root}.pem`),
      crlUrl: CRL_URL,
      ...extra,
    });
  }

  it.each([
    ['int-ec', 'ecdsa-with-SHA256'],
    ['int-rsa', 'sha256WithRSAEncryption'],
  ])('%s issues SVIDs that openssl verifies with the chain it serves', async (name, alg) => {
    const ca = await load(name);
    expect(ca.signatureAlgorithm).toBe(alg);
    expect(ca.trustDomain).toBe(TD); // from the intermediate's URI SAN
    expect(ca.chainPem).toEqual([ca.certificatePem]);
    expect(ca.rootsPem).toEqual([new X509Certificate(await t.read('root-rsa.pem')).toString()]);
    const csr = parseCsr(csrPem);
    const now = nowSeconds();
    const leaf = ca.issueX509Svid({
      spiffeId: `spiffe://${TD}/w`,
      spki: csr.spki,
      notAfter: now + 900,
      now,
      backdate: 10,
    });
    const result = await opensslVerify(t, ca, leaf);
    expect(result.output).toContain(': OK');
    expect(result.ok).toBe(true);
    expect(await x509Text(t, leaf)).toContain(`Signature Algorithm: ${alg}`);
    // Without the intermediate, the leaf does not chain to the root.
    await t.write('leaf-alone.pem', leaf.pem);
    const alone = await openssl(
      ['verify', '-x509_strict', '-CAfile', 'root-rsa.pem', 'leaf-alone.pem'],
      t.dir,
    );
    expect(alone.code).not.toBe(0);
  });

  it('loads a user root itself as the CA (no chain; the root is the bundle)', async () => {
    const ca = loadCa({ certPem: await t.read('root-rsa.pem'), keyPem: await t.read('root-rsa.key') });
    expect(ca.chainPem).toEqual([]);
    expect(ca.rootsPem).toEqual([ca.certificatePem]);
    expect(ca.trustDomain).toBeUndefined();
    const csr = parseCsr(csrPem);
    const now = nowSeconds();
    const leaf = ca.issueX509Svid({
      spiffeId: 'spiffe://any.example/w',
      spki: csr.spki,
      notAfter: now + 60,
      now,
    });
    expect((await opensslVerify(t, ca, leaf)).ok).toBe(true);
  });

  it('accepts the chain inside certPem (a full-chain file)', async () => {
    const ca = loadCa({
      certPem: (await t.read('int-ec.pem')) + (await t.read('root-rsa.pem')),
      keyPem: await t.read('int-ec.key'),
    });
    expect(ca.chainPem).toEqual([ca.certificatePem]);
  });

  it('caps certificates at the earliest end on the path to the root', async () => {
    const ca = await load('int-under-short', 'short-root');
    const root = new X509Certificate(await t.read('short-root.pem'));
    const intermediate = new X509Certificate(await t.read('int-under-short.pem'));
    expect(Date.parse(intermediate.validTo)).toBeGreaterThan(Date.parse(root.validTo));
    expect(ca.notAfter).toBe(Date.parse(root.validTo) / 1000);
    const csr = parseCsr(csrPem);
    const now = nowSeconds();
    const leaf = ca.issueX509Svid({
      spiffeId: `spiffe://${TD}/w`,
      spki: csr.spki,
      notAfter: now + 7 * 86_400,
      now,
    });
    expect(leaf.notAfter).toBe(Date.parse(root.validTo) / 1000);
  });

  it('round-trips a loaded CA with its chain through toPem/fromPem', async () => {
    const ca = await load('int-ec');
    const restored = CertificateAuthority.fromPem(ca.toPem());
    expect(restored.chainPem).toEqual(ca.chainPem);
    expect(restored.rootsPem).toEqual(ca.rootsPem);
  });

  it.each([
    [
      'a key that is not the certificate’s',
      async () => load('int-ec', 'root-rsa', { keyPem: await t.read('int-rsa.key') }),
      /does not match/,
    ],
    ['a certificate that is not a CA', async () => load('not-ca'), /not a ca/],
    ['a CA without keyCertSign', async () => load('no-certsign'), /keyCertSign/],
    [
      'an intermediate without its chain',
      async () => load('int-ec', 'root-rsa', { chainPem: undefined }),
      /chain/,
    ],
    ['a chain from another root', async () => load('int-ec', 'other-root'), /did not issue/],
    [
      'a CA that has expired by the clock',
      async () => load('int-ec', 'root-rsa', { clock: () => Date.now() + 90 * 86_400_000 }),
      /expired/,
    ],
    ['a key that is not PEM', async () => load('int-ec', 'root-rsa', { keyPem: 'nope' }), /private key/],
    [
      'a trust domain other than the certificate’s',
      async () => load('int-ec', 'root-rsa', { trustDomain: 'other.org' }),
      /another trust domain/,
    ],
    [
      'an encrypted key',
      async () => {
        await opensslOk(
          ['pkcs8', '-topk8', '-in', 'int-ec.key', '-out', 'int-ec.enc.key', '-passout', 'pass:secret'],
          t.dir,
        );
        return load('int-ec', 'root-rsa', { keyPem: await t.read('int-ec.enc.key') });
      },
      /unencrypted/,
    ],
  ])('refuses %s with ERR_CA_INVALID', async (_name, run, message) => {
    const error = await run().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(CaError);
    expect((error as CaError).code).toBe('ERR_CA_INVALID');
    expect((error as CaError).message).toMatch(message);
  });
});

describe('the broker server certificate', () => {
  let t: TempDir;
  let server: Server | undefined;
  const ca = generateRootCa({ trustDomain: TD, ttlSeconds: 86_400, clock, crlUrl: CRL_URL });

  beforeAll(async () => {
    t = await tempDir();
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await t.cleanup();
  });

  it('verifies with openssl -purpose sslserver and carries DNS, IP and URI SANs', async () => {
    const now = nowSeconds();
    const cert = ca.issueServerCertificate({
      dnsNames: ['writ.example.org', 'localhost'],
      ipAddresses: ['127.0.0.1', '::1'],
      spiffeId: `spiffe://${TD}/writ`,
      notAfter: now + 3600,
      now,
    });
    expect((await opensslVerify(t, ca, cert, ['-purpose', 'sslserver'])).ok).toBe(true);
    // serverAuth only: not a client certificate.
    expect((await opensslVerify(t, ca, cert, ['-purpose', 'sslclient'])).ok).toBe(false);
    const text = await x509Text(t, cert);
    expect(extensionBlock(text, 'X509v3 Subject Alternative Name')?.body).toEqual([
      `DNS:writ.example.org, DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, URI:spiffe://${TD}/writ`,
    ]);
    expect(extensionBlock(text, 'X509v3 Extended Key Usage')?.body).toEqual([
      'TLS Web Server Authentication',
    ]);
    expect(extensionBlock(text, 'X509v3 Basic Constraints')).toEqual({ critical: true, body: ['CA:FALSE'] });
    expect(cert.privateKeyPem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
  });

  it('serves HTTPS to a client that trusts only the bundle', async () => {
    const now = nowSeconds();
    const cert = ca.issueServerCertificate({
      dnsNames: ['localhost'],
      ipAddresses: ['127.0.0.1'],
      notAfter: now + 3600,
      now,
      backdate: 60,
    });
    server = createServer(
      { key: cert.privateKeyPem!, cert: [cert.pem, ...ca.chainPem].join('') },
      (_req, res) => {
        res.end('hello over tls');
      },
    );
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const get = (host: string, caPem: string) =>
      new Promise<string>((resolve, reject) => {
        const req = request(
          { host: '127.0.0.1', servername: host === '127.0.0.1' ? '' : host, port, ca: caPem, path: '/' },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => {
              body += c.toString();
            });
            res.on('end', () => resolve(body));
          },
        );
        req.on('error', reject);
        req.end();
      });
    const bundle = ca.rootsPem.join('');
    expect(await get('localhost', bundle)).toBe('hello over tls');
    expect(await get('127.0.0.1', bundle)).toBe('hello over tls');
    const stranger = generateRootCa({ trustDomain: TD, ttlSeconds: 600, clock }).rootsPem.join('');
    await expect(get('localhost', stranger)).rejects.toThrow(/self-signed|unable to verify|local issuer/i);
  });

  it('certifies a given key after the key policy', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'secp384r1' });
    const csr = parseCsr(createCsr(privateKey));
    const now = nowSeconds();
    const cert = ca.issueServerCertificate({
      dnsNames: ['localhost'],
      ipAddresses: [],
      spki: csr.spki,
      notAfter: now + 60,
      now,
    });
    expect(cert.privateKey).toBeUndefined();
    expect(new X509Certificate(cert.der).checkPrivateKey(privateKey)).toBe(true);
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'der',
    });
    expect(() =>
      ca.issueServerCertificate({
        dnsNames: ['localhost'],
        ipAddresses: [],
        spki: weak,
        notAfter: now + 60,
        now,
      }),
    ).toThrow(/at least 2048/);
    expect(() =>
      ca.issueServerCertificate({ dnsNames: ['bad name'], ipAddresses: [], notAfter: now + 60, now }),
    ).toThrow(TypeError);
    expect(() =>
      ca.issueServerCertificate({ dnsNames: [], ipAddresses: ['300.1.1.1'], notAfter: now + 60, now }),
    ).toThrow(TypeError);
    expect(() =>
      ca.issueServerCertificate({ dnsNames: [], ipAddresses: [], notAfter: now + 60, now }),
    ).toThrow(TypeError);
  });
});
