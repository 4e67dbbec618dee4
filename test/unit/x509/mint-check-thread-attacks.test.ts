// Attacks on the mint check's thread: a certificate must never come out of the CA unless the thread said it
// passed, whatever the thread does (dies, hangs, answers for another certificate, answers nonsense).
import { execFile } from 'node:child_process';
import {
  createPrivateKey,
  generateKeyPairSync,
  type KeyObject,
  randomBytes,
  X509Certificate,
} from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { CertificateAuthority, type IssuedCertificate } from '../../../src/keys/x509/ca.ts';
import { readCertificate } from '../../../src/keys/x509/certificate.ts';
import { encode } from '../../../src/keys/x509/der.ts';
import { CaError } from '../../../src/keys/x509/errors.ts';
import { MintChecker, type MintCheckRequest } from '../../../src/keys/x509/mint-checker.ts';
import { OID } from '../../../src/keys/x509/oids.ts';
import { CertificateTemplate, newSerial, signatureSuite } from '../../../src/keys/x509/template.ts';
import { type TempDir, tempDir } from './helpers.ts';

const TD = 'example.org';
const clock = (): number => Date.now();
const NOW = Math.floor(Date.now() / 1000);
const MISBEHAVING = new URL('./mint-check-misbehaving.worker.mjs', import.meta.url);

function keyPair(): { publicKey: KeyObject; spki: Buffer } {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  return { publicKey, spki: publicKey.export({ type: 'spki', format: 'der' }) };
}

/** Settles every promise at once (none rejects unhandled while another is awaited); each must have failed. */
async function rejections(promises: readonly Promise<unknown>[]): Promise<CaError[]> {
  return (await Promise.allSettled(promises)).map((r) => {
    expect(r.status).toBe('rejected');
    const reason = (r as PromiseRejectedResult).reason as unknown;
    expect(reason).toBeInstanceOf(CaError);
    expect((reason as CaError).code).toBe('ERR_CA_MINT_CHECK');
    return reason as CaError;
  });
}

async function rejection(promise: Promise<unknown>): Promise<CaError> {
  const [error] = await rejections([promise]);
  return error!;
}

describe('MintChecker, against a thread that misbehaves', () => {
  const ca = CertificateAuthority.generateRoot({ trustDomain: TD, ttlSeconds: 86_400, clock });
  const subject = keyPair();
  const stranger = keyPair();
  const checkers: MintChecker[] = [];

  const privateKey = createPrivateKey(ca.toPem());
  const suite = signatureSuite('ec-p256');
  const template = new CertificateTemplate(
    {
      subjectDer: readCertificate(ca.certificate.raw).subjectDer,
      keyId: Buffer.from(ca.keyId, 'hex'),
      crlUrl: undefined,
    },
    suite,
  );

  function checker(timeoutMs = 30_000): MintChecker {
    const c = new MintChecker({
      issuerDer: ca.certificate.raw,
      issuerKey: ca.publicKey,
      privateKey,
      hash: suite.hash,
      algorithm: encode(suite.algorithm),
      assemble: (tbs, signature) => template.signedDer(tbs, signature),
      caNotAfter: ca.notAfter,
      eku: [OID.serverAuth, OID.clientAuth],
      timeoutMs,
      workerUrl: MISBEHAVING,
    });
    checkers.push(c);
    return c;
  }

  /** A request for a certificate as the CA would mint it, naming `how` as the thread's behaviour. */
  function request(how: string, key: KeyObject = subject.publicKey): MintCheckRequest {
    const spiffeId = `spiffe://${TD}/${how}`;
    const serial = newSerial();
    const tbs = template.svidDer({
      serial,
      notBefore: NOW,
      notAfter: NOW + 600,
      spki: subject.spki,
      keyId: randomBytes(20),
      spiffeId,
    });
    return {
      tbs,
      serialHex: serial.toString('hex'),
      notBefore: NOW,
      notAfter: NOW + 600,
      key,
      san: `URI:${spiffeId}`,
    };
  }

  /** The check's verdict: null for a pass (with the certificate signed), else the check that failed. */
  async function verdict(c: MintChecker, req: MintCheckRequest): Promise<string | null> {
    const result = await c.check(req);
    if (result.failed === null) {
      const cert = new X509Certificate(result.der);
      expect(cert.serialNumber.toLowerCase()).toBe(req.serialHex);
      expect(cert.verify(ca.publicKey)).toBe(true);
      expect(result.der.equals(template.signedDer(req.tbs, result.signature))).toBe(true);
    }
    return result.failed;
  }

  afterAll(async () => {
    await Promise.all(checkers.map((c) => c.close()));
    await ca.close();
  });

  it('answers as the real thread when it behaves: a pass, and the name of the check that failed', async () => {
    const c = checker();
    expect(await verdict(c, request('ok'))).toBeNull();
    expect(await verdict(c, request('ok', stranger.publicKey))).toBe('public key');
  });

  it('a thread that dies mid-check fails every check it owes, and is replaced', async () => {
    for (const how of ['exit', 'throw']) {
      const c = checker();
      const owed = [c.check(request(how)), ...Array.from({ length: 5 }, () => c.check(request('ok')))];
      for (const e of await rejections(owed)) expect(e.message).toMatch(/could not be checked/);
      expect(await verdict(c, request('ok'))).toBeNull();
    }
  });

  it('a thread that never answers, or hangs, fails at the timeout and is replaced', async () => {
    for (const how of ['silent', 'spin']) {
      const c = checker(300);
      const error = await rejection(c.check(request(how)));
      expect(error.message).toMatch(/did not answer in time/);
      expect(await verdict(c, request('ok'))).toBeNull();
    }
  });

  it('a pass for another certificate is refused: the answer must name the certificate checked', async () => {
    const c = checker();
    expect(await verdict(c, request('ok'))).toBeNull();
    // The thread answers the right request id with a pass naming the previous certificate's serial.
    const error = await rejection(c.check(request('pass-for-another', stranger.publicKey)));
    expect(error.message).toMatch(/unexpected answer/);
    expect(await verdict(c, request('ok'))).toBeNull();
  });

  it('a pass whose certificate is not what the template assembles from the request is refused', async () => {
    const c = checker();
    const error = await rejection(c.check(request('pass-with-other-bytes')));
    expect(error.message).toMatch(/unexpected answer/);
  });

  it('answers swapped between two requests: the failing certificate never gets the passing one’s verdict', async () => {
    const c = checker();
    const bad = c.check(request('swap', stranger.publicKey));
    const good = c.check(request('ok'));
    // The bad certificate's id gets a pass for the good one: the thread is distrusted, both checks fail.
    await rejections([bad, good]);
    expect(await verdict(c, request('ok'))).toBeNull();
  });

  it('an answer to no request, a message that is no answer, or an unknown verdict fails the thread', async () => {
    for (const how of ['unknown-id', 'not-an-object', 'odd-verdict']) {
      const c = checker();
      const owed = [c.check(request(how)), c.check(request('ok'))];
      for (const e of await rejections(owed)) expect(e.message, how).toMatch(/unexpected answer/);
      expect(await verdict(c, request('ok'))).toBeNull();
    }
  });

  it('a second answer to a request already answered fails the thread (nothing pending passes by it)', async () => {
    const c = checker();
    const first = c.check(request('twice'));
    const behind = c.check(request('silent'));
    const [passed, failed] = await Promise.allSettled([first, behind]);
    expect(passed).toMatchObject({ status: 'fulfilled', value: { failed: null } });
    expect(failed).toMatchObject({ status: 'rejected', reason: { code: 'ERR_CA_MINT_CHECK' } });
    expect((failed as PromiseRejectedResult).reason.message).toMatch(/unexpected answer/);
    expect(await verdict(c, request('ok'))).toBeNull();
  });

  it('64 checks at once, one of them killing the thread: no check resolves as passed unless it did', async () => {
    const c = checker();
    const requests = Array.from({ length: 64 }, (_, i) =>
      i === 40 ? request('exit') : request('ok', i % 2 === 0 ? subject.publicKey : stranger.publicKey),
    );
    const results = await Promise.allSettled(requests.map((r) => c.check(r)));
    for (const [i, r] of results.entries()) {
      if (r.status === 'rejected') {
        expect(r.reason, String(i)).toBeInstanceOf(CaError);
        expect(i, 'only the exit and the checks behind it fail').toBeGreaterThanOrEqual(40);
      } else expect(r.value.failed, String(i)).toBe(i % 2 === 0 ? null : 'public key');
    }
    expect(results[40]!.status).toBe('rejected');
  });

  it('close() fails the checks owed at once, and refuses later ones', async () => {
    const c = checker();
    expect(await verdict(c, request('ok'))).toBeNull();
    const owed = Array.from({ length: 16 }, () => c.check(request('ok')));
    const failed = rejections(owed);
    await c.close();
    await failed;
    expect((await rejection(c.check(request('ok')))).message).toMatch(/closed/);
  });
});

describe('issueX509SvidAsync, through the real check thread', () => {
  const ca = CertificateAuthority.generateRoot({ trustDomain: TD, ttlSeconds: 86_400, clock });
  const subject = keyPair();
  const stranger = keyPair();
  let t: TempDir;

  beforeAll(async () => {
    t = await tempDir();
  });
  afterEach(() => {
    vi.restoreAllMocks();
  });
  afterAll(async () => {
    await ca.close();
    await t.cleanup();
  });

  const base = { spki: subject.spki, publicKey: subject.publicKey, notAfter: NOW + 600, now: NOW };

  it('64 at once, half for a key that is not the request’s: exactly the good ones come out, each its own', async () => {
    const results = await Promise.allSettled(
      Array.from({ length: 64 }, (_, i) =>
        ca.issueX509SvidAsync({
          ...base,
          spiffeId: `spiffe://${TD}/w/${i}`,
          publicKey: i % 2 === 0 ? subject.publicKey : stranger.publicKey,
        }),
      ),
    );
    const serials = new Set<string>();
    for (const [i, r] of results.entries()) {
      if (i % 2 === 1) {
        expect(r.status, String(i)).toBe('rejected');
        const error = (r as PromiseRejectedResult).reason as CaError;
        expect(error.code).toBe('ERR_CA_MINT_CHECK');
        expect(error.message).toBe('the minted certificate failed its check: public key');
        continue;
      }
      expect(r.status, String(i)).toBe('fulfilled');
      const issued = (r as PromiseFulfilledResult<IssuedCertificate>).value;
      const cert = new X509Certificate(issued.der);
      expect(cert.subjectAltName).toBe(`URI:spiffe://${TD}/w/${i}`);
      expect(cert.serialNumber.toLowerCase()).toBe(issued.serialHex);
      expect(cert.verify(ca.publicKey)).toBe(true);
      serials.add(issued.serialHex);
    }
    expect(serials.size).toBe(32);
  });

  // Each tampering makes the template write something else than what the CA meant; the signature is the CA's,
  // so only the field check can catch it, on the thread (async) as on the event loop (sync).
  const tamperings: Array<[string, (parts: Parameters<CertificateTemplate['svidDer']>[0]) => object]> = [
    ['serial', (parts) => ({ ...parts, serial: newSerial() })],
    ['validity', (parts) => ({ ...parts, notAfter: parts.notAfter - 1 })],
    ['subject alternative name', (parts) => ({ ...parts, spiffeId: `${parts.spiffeId}x` })],
    ['public key', (parts) => ({ ...parts, spki: stranger.spki })],
  ];

  it.each(tamperings)(
    'a template that writes another %s: refused, asynchronously and synchronously',
    async (what, tamper) => {
      const original = CertificateTemplate.prototype.svidDer;
      vi.spyOn(CertificateTemplate.prototype, 'svidDer').mockImplementation(function (
        this: CertificateTemplate,
        parts,
      ) {
        return original.call(this, tamper(parts) as typeof parts);
      });
      const req = { ...base, spiffeId: `spiffe://${TD}/tampered` };
      const error = await rejection(ca.issueX509SvidAsync(req));
      expect(error.message).toBe(`the minted certificate failed its check: ${what}`);
      expect(() => ca.issueX509Svid(req)).toThrow(`the minted certificate failed its check: ${what}`);
    },
  );

  it('a template that writes another issuer name (signed by the CA): refused as issuer', async () => {
    const original = CertificateTemplate.prototype.svidDer;
    vi.spyOn(CertificateTemplate.prototype, 'svidDer').mockImplementation(function (
      this: CertificateTemplate,
      parts,
    ) {
      const tbs = Buffer.from(original.call(this, parts));
      // The generated root's name carries its serial as hex: flip one digit of it in the issuer name.
      const at = tbs.indexOf(ca.serialHex, 0, 'latin1');
      expect(at).toBeGreaterThan(0);
      tbs[at] = tbs[at] === 0x30 ? 0x31 : 0x30;
      return tbs;
    });
    const req = { ...base, spiffeId: `spiffe://${TD}/tampered` };
    expect((await rejection(ca.issueX509SvidAsync(req))).message).toMatch(/: issuer$/);
    expect(() => ca.issueX509Svid(req)).toThrow(/: issuer$/);
  });

  it('a signature that does not verify: refused as signature', async () => {
    const original = CertificateTemplate.prototype.signedDer;
    vi.spyOn(CertificateTemplate.prototype, 'signedDer').mockImplementation(function (
      this: CertificateTemplate,
      tbs,
      signature,
    ) {
      const bad = Buffer.from(signature);
      bad[bad.length - 1]! ^= 1;
      return original.call(this, tbs, bad);
    });
    const req = { ...base, spiffeId: `spiffe://${TD}/tampered` };
    // Asynchronously the signature is the thread's: the template's assembly is not what the thread checked.
    expect((await rejection(ca.issueX509SvidAsync(req))).message).toMatch(/unexpected answer/);
    expect(() => ca.issueX509Svid(req)).toThrow(/: signature$/);
  });

  it('close() while issuances are under way: each fails, none returns a certificate', async () => {
    const local = CertificateAuthority.generateRoot({ trustDomain: TD, ttlSeconds: 86_400, clock });
    await local.issueX509SvidAsync({ ...base, spiffeId: `spiffe://${TD}/warm` });
    const under = Array.from({ length: 16 }, (_, i) =>
      local.issueX509SvidAsync({ ...base, spiffeId: `spiffe://${TD}/w/${i}` }),
    );
    const failed = rejections(under);
    await local.close();
    await failed;
  });

  it('the thread does not keep a process alive: a script that issues once and never closes the CA exits', async () => {
    const script = await t.write(
      'issue-once.mts',
      [
        `import { generateKeyPairSync } from 'node:crypto';`,
        `import { CertificateAuthority } from ${JSON.stringify(fileURLToPath(new URL('../../../src/keys/x509/ca.ts', import.meta.url)))};`,
        `const ca = CertificateAuthority.generateRoot({ trustDomain: 'example.org', ttlSeconds: 3600, clock: () => Date.now() });`,
        `const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });`,
        `const now = Math.floor(Date.now() / 1000);`,
        `const spki = publicKey.export({ type: 'spki', format: 'der' });`,
        `const issued = await ca.issueX509SvidAsync({ spiffeId: 'spiffe://example.org/w', spki, publicKey, notAfter: now + 60, now });`,
        `console.log(issued.serialHex);`,
      ].join('\n'),
    );
    const out = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(process.execPath, ['--import', 'tsx', script], { cwd: process.cwd() }, (error, stdout) =>
        resolve({ code: error ? Number(error.code ?? 1) : 0, stdout }),
      );
    });
    expect(out).toEqual({ code: 0, stdout: expect.stringMatching(/^[0-9a-f]{32}\n$/) });
  });
});
