// The broker serves HTTPS itself: its own CA-issued certificate in production (clients trust the bundle),
// or configured files reloaded on change; plain HTTP only when insecureHttp says a TLS proxy is in front.
import { X509Certificate } from 'node:crypto';
import { rename, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { connect, type PeerCertificate } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config/loader.ts';
import { configSchema } from '../../src/config/schema.ts';
import { createBrokerServer, startTls, type TlsController } from '../../src/http/tls.ts';
import { generateRootCa } from '../../src/keys/x509/index.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { waitFor } from '../helpers/wait.ts';
import { NEWKEY, opensslOk, type TempDir, tempDir } from '../unit/x509/helpers.ts';

interface HttpsResponse {
  status: number;
  body: string;
  peer: PeerCertificate;
}

/** GET over HTTPS trusting only `ca` (PEM), with Node's default host name checks. */
function httpsGet(url: string, ca: string | undefined): Promise<HttpsResponse> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', ...(ca === undefined ? {} : { ca }), agent: false }, (res) => {
      const peer = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, peer }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The serial of the certificate a TLS server presents (no trust decision: only to watch it change). */
function servedSerial(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const serial = socket.getPeerCertificate().serialNumber.toLowerCase();
      socket.end();
      resolve(serial);
    });
    socket.on('error', reject);
  });
}

describe('HTTPS in production mode (the broker’s own certificate)', () => {
  let b: TestBroker;

  beforeAll(async () => {
    b = await startTestBroker({ store: 'redis', config: { server: { insecureHttp: false } } });
  });
  afterAll(async () => {
    await b?.close();
  });

  it('is reached by a client that trusts only the bundle, and presents a certificate for its names', async () => {
    expect(b.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    // The bundle reaches clients out of band (as with any trust domain); here, from the broker's CA.
    const bundle = b.broker.deps.cas.rootsPem().join('');
    const health = await httpsGet(`${b.url}/healthz`, bundle);
    expect(health.status).toBe(200);
    // what it serves as its bundle is what the client trusted
    const served = await httpsGet(`${b.url}/v1/bundle.pem`, bundle);
    expect(served.body).toBe(bundle);

    const cert = new X509Certificate(health.peer.raw);
    // issued by the current CA (the bundle also holds the next one, published before it issues)
    expect(cert.checkIssued(new X509Certificate(b.broker.deps.ca.rootsPem[0] ?? ''))).toBe(true);
    expect(cert.ca).toBe(false);
    expect(cert.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1']); // serverAuth only
    expect(cert.subjectAltName?.split(', ').sort()).toEqual(
      ['DNS:localhost', 'IP Address:0:0:0:0:0:0:0:1', 'IP Address:127.0.0.1'].sort(),
    );
    // `localhost` works as a name too; the default lifetime is a day
    const port = new URL(b.url).port;
    expect((await httpsGet(`https://localhost:${port}/healthz`, bundle)).status).toBe(200);
    expect(Date.parse(cert.validTo) - Date.now()).toBeLessThanOrEqual(86_400_000);
    expect(Date.parse(cert.validTo) - Date.now()).toBeGreaterThan(86_000_000);

    // the issuer (iss of every JWT-SVID, and the CRL URL's base) is the HTTPS URL
    const discovery = JSON.parse((await httpsGet(`${b.url}/.well-known/openid-configuration`, bundle)).body);
    expect(discovery.issuer).toBe(b.url);
  });

  it('is refused by a client that does not trust the bundle', async () => {
    await expect(httpsGet(`${b.url}/healthz`, undefined)).rejects.toThrow(/certificate/i);
    const stranger = generateRootCa({ trustDomain: 'example.org', ttlSeconds: 3600, clock: Date.now });
    await expect(httpsGet(`${b.url}/healthz`, stranger.rootsPem.join(''))).rejects.toThrow(/certificate/i);
  });

  it('refuses plain HTTP', async () => {
    const port = new URL(b.url).port;
    await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
  });
});

describe('plain HTTP in production mode', () => {
  it('is served only with insecureHttp (a TLS-terminating proxy in front), also from the environment', async () => {
    const b = await startTestBroker({ store: 'redis', config: { server: { insecureHttp: true } } });
    try {
      expect(b.url).toMatch(/^http:\/\//);
      expect((await fetch(`${b.url}/healthz`)).status).toBe(200);
    } finally {
      await b.close();
    }
    const env = { REDIS_URL: 'redis://127.0.0.1:6379', WRIT_ADMIN_TOKEN: 'x'.repeat(32) };
    expect(
      loadConfig({ ...env, WRIT_INSECURE_HTTP: 'true' }, '/nonexistent').config.server.insecureHttp,
    ).toBe(true);
    expect(loadConfig(env, '/nonexistent').config.server.insecureHttp).toBe(false);
    expect(() => loadConfig({ ...env, WRIT_INSECURE_HTTP: 'yes' }, '/nonexistent')).toThrow(ConfigError);
  });
});

describe('server.tls files', () => {
  let t: TempDir;
  let b: TestBroker;

  const makeCert = async (name: string) => {
    await opensslOk(
      [
        'req',
        '-x509',
        ...NEWKEY.p256!,
        '-nodes',
        '-keyout',
        `${name}.key`,
        '-out',
        `${name}.pem`,
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ],
      t.dir,
    );
    return { cert: await t.read(`${name}.pem`), key: await t.read(`${name}.key`) };
  };

  beforeAll(async () => {
    t = await tempDir('writ-https-');
    const first = await makeCert('first');
    await t.write('server.pem', first.cert);
    await t.write('server.key', first.key);
    // dev mode: plain HTTP unless server.tls is set
    b = await startTestBroker({
      store: 'memory',
      config: { server: { tls: { certFile: t.path('server.pem'), keyFile: t.path('server.key') } } },
    });
  });
  afterAll(async () => {
    await b?.close();
    await t?.cleanup();
  });

  it('serves them, and the new pair after the files change (a broken pair is not installed)', async () => {
    expect(b.url).toMatch(/^https:\/\//);
    const first = await t.read('server.pem');
    expect((await httpsGet(`${b.url}/healthz`, first)).status).toBe(200);
    const port = Number(new URL(b.url).port);
    const firstSerial = new X509Certificate(first).serialNumber.toLowerCase();
    expect(await servedSerial(port)).toBe(firstSerial);

    // a key that does not match the certificate: refused, the old pair stays
    const second = await makeCert('second');
    await writeFile(t.path('server.pem'), second.cert);
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await servedSerial(port)).toBe(firstSerial);

    // the matching key arrives (atomically, as secret mounts do): the new pair is served
    await t.write('server.key.tmp', second.key);
    await rename(t.path('server.key.tmp'), t.path('server.key'));
    const secondSerial = new X509Certificate(second.cert).serialNumber.toLowerCase();
    await waitFor(async () => (await servedSerial(port)) === secondSerial, {
      timeoutMs: 5_000,
      what: 'the reloaded certificate',
    });
    expect((await httpsGet(`${b.url}/healthz`, second.cert)).status).toBe(200);
  });
});

describe('the broker’s own certificate is renewed before it expires', () => {
  let tls: TlsController | undefined;
  const server = createBrokerServer({ kind: 'https-issued' });
  afterEach(() => {
    tls?.close();
    server.close();
  });

  it('installs a new certificate when a third of its lifetime remains', async () => {
    const ca = generateRootCa({ trustDomain: 'example.org', ttlSeconds: 3600, clock: Date.now });
    const parsed = configSchema.parse({});
    // Below the schema's minimum (600 s), to watch a renewal happen in a test.
    const config = { ...parsed, server: { ...parsed.server, tlsCertTtl: 3 } };
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    tls = startTls(
      server,
      { kind: 'https-issued' },
      {
        config,
        ca,
        issuer: `https://127.0.0.1:${port}`,
        clock: Date.now,
        logger: createLogger('silent'),
      },
    );
    const first = await servedSerial(port);
    expect(new X509Certificate(tls!.certificatePem).serialNumber.toLowerCase()).toBe(first);
    // renewed at 2 s of its 3 s
    await waitFor(async () => (await servedSerial(port)) !== first, {
      timeoutMs: 5_000,
      what: 'a renewed certificate',
    });
  });
});
