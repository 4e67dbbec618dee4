// x509pop attestor, without HTTP: exact selectors and expiry, configuration checks, caFile.
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestationError, type AttestorHost } from '../../src/attestation/types.ts';
import { configSchema } from '../../src/config/schema.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { MemoryStore } from '../../src/store/memory/memory.store.ts';
import { FakeClock } from '../../test/helpers/clock.ts';
import { parsePemCertificate } from './chain.ts';
import { x509PopConfigSchema } from './config.ts';
import { createChallenge, x509PopPlugin } from './index.ts';
import { signNonce, type TestCert, TestPki } from './test-pki.ts';

describe('x509pop attestor', () => {
  const pki = new TestPki();
  const dir = mkdtempSync(join(tmpdir(), 'writ-x509pop-config-'));
  let root: TestCert;
  let inter: TestCert;
  let leaf: TestCert;
  let clock: FakeClock;
  let host: AttestorHost;

  beforeAll(() => {
    root = pki.issue({ cn: 'Unit Root', ca: true, days: 3650 });
    inter = pki.issue({ cn: 'Unit Issuing CA', ca: true, pathLen: 0, issuer: root, days: 3650 });
    leaf = pki.issue({
      cn: 'billing worker',
      issuer: inter,
      days: 10,
      san: ['DNS:billing.internal', 'DNS:billing-2.internal', 'URI:spiffe://legacy.example/billing'],
    });
    clock = new FakeClock(Math.floor(Date.now() / 1000) * 1000 + 5_000);
    host = {
      store: new MemoryStore({ clock: clock.clock }),
      clock: clock.clock,
      logger: createLogger('silent'),
      trustDomain: 'writ.local',
    };
  });
  afterAll(() => {
    pki.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('yields selectors from the leaf and the anchoring CA, and the leaf expiry; no task', async () => {
    const config = x509PopConfigSchema.parse({ caBundle: root.pem });
    const attestor = x509PopPlugin.create(config, host);
    expect(attestor).toMatchObject({ name: 'x509pop', legacy: false });
    const { nonce } = await createChallenge(host, config);
    const result = await attestor.attest(
      { nonce, chain: [leaf.pem, inter.pem], signature: signNonce(leaf, nonce) },
      { signal: new AbortController().signal },
    );
    const x509 = new X509Certificate(leaf.pem);
    const rootFingerprint = new X509Certificate(root.pem).fingerprint256.replace(/:/g, '').toLowerCase();
    const serial = x509.serialNumber.toLowerCase().replace(/^0+/, '');
    expect(result.selectors.sort()).toEqual(
      [
        'x509pop:subject:cn:billing worker',
        'x509pop:san:dns:billing.internal',
        'x509pop:san:dns:billing-2.internal',
        'x509pop:san:uri:spiffe://legacy.example/billing',
        `x509pop:ca:fingerprint:${rootFingerprint}`,
        `x509pop:serial:${serial}`,
      ].sort(),
    );
    expect(result.expiresAt).toBe(Math.floor(Date.parse(x509.validTo) / 1000));
    expect(result.task).toBeUndefined();
    expect(result.spiffeId).toBeUndefined();
  });

  it('reads the CAs from caFile', async () => {
    const file = join(dir, 'ca.pem');
    writeFileSync(file, `# the test root\n${root.pem}`);
    const config = x509PopConfigSchema.parse({ caFile: file, nonceTtl: 30 });
    const attestor = x509PopPlugin.create(config, host);
    const { nonce, expiresAt } = await createChallenge(host, config);
    expect(expiresAt).toBe(clock.seconds() + 30);
    const result = await attestor.attest(
      { nonce, chain: [leaf.pem, inter.pem], signature: signNonce(leaf, nonce) },
      { signal: new AbortController().signal },
    );
    expect(result.selectors).toContain('x509pop:subject:cn:billing worker');
    expect(() => x509PopPlugin.create({ caFile: join(dir, 'missing.pem'), nonceTtl: 60 }, host)).toThrow(
      /attestors\.x509pop\.caFile: cannot read/,
    );
  });

  it('throws AttestationError (never anything else) for bad evidence', async () => {
    const attestor = x509PopPlugin.create(x509PopConfigSchema.parse({ caBundle: root.pem }), host);
    const ctx = { signal: new AbortController().signal };
    await expect(attestor.attest({ nonce: 1 }, ctx)).rejects.toBeInstanceOf(AttestationError);
    await expect(attestor.attest('x', ctx)).rejects.toThrow(/^evidence must be/);
  });

  it('parses certificate fields from DER', () => {
    const parsed = parsePemCertificate(inter.pem);
    expect(parsed.pathLength).toBe(0);
    expect(parsed.keyUsage).toEqual({ digitalSignature: false, keyCertSign: true });
    expect(parsed.commonNames).toEqual(['Unit Issuing CA']);
    const l = parsePemCertificate(leaf.pem);
    expect(l.keyUsage).toEqual({ digitalSignature: true, keyCertSign: false });
    expect(l.extKeyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(l.dnsNames).toEqual(['billing.internal', 'billing-2.internal']);
    expect(l.uris).toEqual(['spiffe://legacy.example/billing']);
    expect(l.pathLength).toBeUndefined();
  });

  describe('configuration', () => {
    const problems = (x509pop: unknown): string[] => {
      const r = configSchema.safeParse({ attestors: { x509pop } });
      return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
    };

    it('needs exactly one of caBundle and caFile', () => {
      expect(problems({})).toEqual(['attestors.x509pop.caBundle: set exactly one of caBundle and caFile']);
      expect(problems({ caBundle: root.pem, caFile: '/x' })).toEqual([
        'attestors.x509pop.caBundle: set exactly one of caBundle and caFile',
      ]);
      expect(problems({ caBundle: root.pem })).toEqual([]);
    });

    it('refuses a bundle without certificates, or with a certificate that is not a CA', () => {
      expect(problems({ caBundle: 'nothing here' })).toEqual([
        'attestors.x509pop.caBundle: no PEM certificate found',
      ]);
      const [problem] = problems({ caBundle: `${root.pem}${leaf.pem}` });
      expect(problem).toMatch(/^attestors\.x509pop\.caBundle: certificate 2 .* is not a CA certificate/);
    });

    it('bounds nonceTtl and refuses unknown keys', () => {
      expect(problems({ caBundle: root.pem, nonceTtl: 0 })).toHaveLength(1);
      expect(problems({ caBundle: root.pem, nonceTtl: 601 })).toHaveLength(1);
      expect(problems({ caBundle: root.pem, trustChainRoot: true })[0]).toMatch(/trustChainRoot/);
    });
  });
});
