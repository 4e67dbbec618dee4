import { createPublicKey, ECDH, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CSR_MAX_PEM_CHARS, parseCsr, parseCsrAsync } from '../../../src/keys/x509/csr.ts';
import { createCsr } from '../../../src/keys/x509/csr-builder.ts';
import {
  type Asn1,
  bitString,
  contextConstructed,
  decode,
  encode,
  nul,
  oid,
  seq,
  uint,
  uintFromBytes,
} from '../../../src/keys/x509/der.ts';
import { CsrError, type CsrErrorCode } from '../../../src/keys/x509/errors.ts';
import { toPem } from '../../../src/keys/x509/pem.ts';
import { distinguishedName } from '../../../src/keys/x509/template.ts';
import {
  NEWKEY,
  openssl,
  opensslCsr,
  opensslCsrForKey,
  opensslOk,
  type TempDir,
  tempDir,
} from './helpers.ts';

function pemToDer(pem: string): Buffer {
  const body = pem.replace(/-----[A-Z ]+-----/g, '').replace(/\s+/g, '');
  return Buffer.from(body, 'base64');
}

function csrPem(der: Buffer): string {
  return toPem('CERTIFICATE REQUEST', der);
}

function refusal(run: () => unknown): CsrError {
  try {
    run();
  } catch (e) {
    if (e instanceof CsrError) return e;
    throw e;
  }
  throw new Error('expected a CsrError, nothing was thrown');
}

function expectRefused(pem: string, code: CsrErrorCode): CsrError {
  const e = refusal(() => parseCsr(pem));
  expect(e.code).toBe(code);
  // Safe for the wire: our own lowercase text, no library message.
  expect(e.message).toBe(e.message.toLowerCase());
  expect(e.message).not.toMatch(/asn\.1|forge|openssl|error:/i);
  return e;
}

/**
 * `openssl req -verify`'s verdict. OpenSSL 3.0 exits 0 even when the signature fails, so the verdict is read
 * from what it prints.
 */
async function opensslVerifiesCsr(t: TempDir, file: string): Promise<boolean> {
  const r = await openssl(['req', '-in', file, '-verify', '-noout'], t.dir);
  const said = r.stdout + r.stderr;
  return r.code === 0 && said.includes('self-signature verify OK') && !said.includes('failure');
}

function flipByteAt(der: Buffer, index: number): Buffer {
  const copy = Buffer.from(der);
  copy[index] = copy[index]! ^ 0x01;
  return copy;
}

/** Builds a CSR from parts, signing the info with `key` (for inputs openssl will not make). */
function craftCsr(parts: {
  spki: Asn1;
  attributes?: Asn1;
  algorithm: Asn1;
  key: KeyObject;
  hash: string | null;
}) {
  const info = seq(
    uint(0),
    distinguishedName([{ type: 'CN', value: 'crafted' }]),
    parts.spki,
    parts.attributes ?? contextConstructed(0),
  );
  const signature = sign(parts.hash, encode(info), parts.key);
  return csrPem(encode(seq(info, parts.algorithm, bitString(signature))));
}

const ACCEPTED = [
  { name: 'p256', args: NEWKEY.p256!, keyType: 'ec-p256', alg: 'ecdsa-with-SHA256' },
  { name: 'p384', args: NEWKEY.p384!, keyType: 'ec-p384', alg: 'ecdsa-with-SHA256' },
  { name: 'p256-sha512', args: [...NEWKEY.p256!, '-sha512'], keyType: 'ec-p256', alg: 'ecdsa-with-SHA512' },
  { name: 'p384-sha384', args: [...NEWKEY.p384!, '-sha384'], keyType: 'ec-p384', alg: 'ecdsa-with-SHA384' },
  { name: 'rsa2048', args: NEWKEY.rsa2048!, keyType: 'rsa', alg: 'sha256WithRSAEncryption' },
  { name: 'rsa3072', args: [...NEWKEY.rsa3072!, '-sha384'], keyType: 'rsa', alg: 'sha384WithRSAEncryption' },
  { name: 'rsa4096', args: [...NEWKEY.rsa4096!, '-sha512'], keyType: 'rsa', alg: 'sha512WithRSAEncryption' },
  {
    name: 'rsa-pss',
    args: [...NEWKEY.rsa2048!, '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:32'],
    keyType: 'rsa',
    alg: 'RSASSA-PSS',
  },
  { name: 'ed25519', args: NEWKEY.ed25519!, keyType: 'ed25519', alg: 'Ed25519' },
] as const;

describe('parseCsr with CSRs made by openssl req -new', () => {
  let t: TempDir;
  const pems = new Map<string, string>();

  beforeAll(async () => {
    t = await tempDir();
    await Promise.all(ACCEPTED.map(async (c) => pems.set(c.name, await opensslCsr(t, c.name, c.args))));
  }, 120_000);
  afterAll(() => t.cleanup());

  it.each(ACCEPTED)('accepts $name ($alg), returning the SPKI exactly as openssl wrote it', async (c) => {
    const pem = pems.get(c.name)!;
    const csr = parseCsr(pem);
    expect(csr.keyType).toBe(c.keyType);
    expect(csr.signatureAlgorithm).toBe(c.alg);
    const pubkeyPem = await opensslOk(['req', '-in', `${c.name}.csr`, '-pubkey', '-noout'], t.dir);
    expect(csr.spki.equals(pemToDer(pubkeyPem))).toBe(true);
    expect(pemToDer(pem).includes(csr.spki)).toBe(true);
    expect(csr.publicKey.equals(createPublicKey(pubkeyPem))).toBe(true);
  });

  it('agrees with openssl req -verify on valid and tampered CSRs', async () => {
    for (const c of ACCEPTED) {
      const der = pemToDer(pems.get(c.name)!);
      const tampered = flipByteAt(der, der.indexOf(Buffer.from('workload-cn')));
      const cases = [
        { file: `${c.name}.csr`, pem: pems.get(c.name)! },
        { file: `${c.name}-tampered.csr`, pem: csrPem(tampered) },
      ];
      for (const k of cases) {
        await t.write(k.file, k.pem);
        const theirs = await opensslVerifiesCsr(t, k.file);
        let ours = true;
        try {
          parseCsr(k.pem);
        } catch {
          ours = false;
        }
        expect({ file: k.file, ours }).toEqual({ file: k.file, ours: theirs });
        // The hot path's variant (signature verified on the threadpool) gives the same verdict and result.
        const async = await parseCsrAsync(k.pem).then(
          (parsed) => parsed,
          () => null,
        );
        expect({ file: k.file, ours: async !== null }).toEqual({ file: k.file, ours: theirs });
        if (async !== null) {
          const sync = parseCsr(k.pem);
          expect(async.spki.equals(sync.spki)).toBe(true);
          expect(async.publicKey.equals(sync.publicKey)).toBe(true);
          expect([async.keyType, async.signatureAlgorithm]).toEqual([sync.keyType, sync.signatureAlgorithm]);
        }
      }
    }
  });

  it.each(['p256', 'rsa2048', 'ed25519', 'rsa-pss'])(
    'refuses a %s CSR with a tampered subject byte with ERR_CSR_SIGNATURE',
    (name) => {
      const der = pemToDer(pems.get(name)!);
      const at = der.indexOf(Buffer.from('workload-cn'));
      expect(at).toBeGreaterThan(0);
      expectRefused(csrPem(flipByteAt(der, at + 3)), 'ERR_CSR_SIGNATURE');
    },
  );

  it.each(['p256', 'p384', 'rsa2048', 'ed25519'])(
    'refuses a %s CSR with a tampered public key byte with ERR_CSR_SIGNATURE',
    (name) => {
      const der = pemToDer(pems.get(name)!);
      const spki = parseCsr(pems.get(name)!).spki;
      const at = der.indexOf(spki);
      // Inside the key bits, away from the encoding's structure (an EC coordinate, the RSA modulus).
      expectRefused(csrPem(flipByteAt(der, at + spki.length - 10)), 'ERR_CSR_SIGNATURE');
    },
  );

  it.each(['p256', 'rsa2048', 'ed25519'])('refuses a %s CSR with a tampered signature', (name) => {
    const der = pemToDer(pems.get(name)!);
    expectRefused(csrPem(flipByteAt(der, der.length - 2)), 'ERR_CSR_SIGNATURE');
  });

  it.each(['p256', 'rsa2048', 'ed25519', 'rsa-pss'])(
    'parseCsrAsync refuses a %s CSR with a tampered subject, key or signature byte with ERR_CSR_SIGNATURE',
    async (name) => {
      const der = pemToDer(pems.get(name)!);
      const spki = parseCsr(pems.get(name)!).spki;
      for (const at of [
        der.indexOf(Buffer.from('workload-cn')) + 3,
        der.indexOf(spki) + spki.length - 10,
        der.length - 2,
      ]) {
        const error = await parseCsrAsync(csrPem(flipByteAt(der, at))).catch((e: unknown) => e);
        expect(error).toBeInstanceOf(CsrError);
        expect((error as CsrError).code).toBe('ERR_CSR_SIGNATURE');
      }
    },
  );

  it('accepts the legacy NEW CERTIFICATE REQUEST label', () => {
    const pem = pems.get('p256')!.replaceAll('CERTIFICATE REQUEST', 'NEW CERTIFICATE REQUEST');
    expect(parseCsr(pem).keyType).toBe('ec-p256');
  });

  it('ignores whitespace around the block and CRLF line ends', () => {
    const pem = `\n  ${pems.get('p256')!.replaceAll('\n', '\r\n')}\n\n`;
    expect(parseCsr(pem).keyType).toBe('ec-p256');
  });
});

describe('parseCsr refuses weak and unsupported keys and algorithms', () => {
  let t: TempDir;
  const pems = new Map<string, string>();

  beforeAll(async () => {
    t = await tempDir();
    const jobs: Promise<unknown>[] = [];
    for (const name of ['rsa1024', 'p224', 'secp256k1', 'p521', 'ed448'] as const) {
      jobs.push(opensslCsr(t, name, NEWKEY[name]!).then((pem) => pems.set(name, pem)));
    }
    jobs.push(
      (async () => {
        await opensslOk(
          [
            'genpkey',
            '-genparam',
            '-algorithm',
            'DSA',
            '-pkeyopt',
            'dsa_paramgen_bits:2048',
            '-out',
            'dsa.param',
          ],
          t.dir,
        );
        await opensslOk(['genpkey', '-paramfile', 'dsa.param', '-out', 'dsa.key'], t.dir);
        pems.set('dsa', await opensslCsrForKey(t, 'dsa', 'dsa.key'));
      })(),
    );
    jobs.push(
      (async () => {
        await opensslOk(
          [
            'genpkey',
            '-algorithm',
            'RSA',
            '-pkeyopt',
            'rsa_keygen_bits:2048',
            '-pkeyopt',
            'rsa_keygen_pubexp:3',
            '-out',
            'e3.key',
          ],
          t.dir,
        );
        pems.set('rsa-e3', await opensslCsrForKey(t, 'rsa-e3', 'e3.key'));
      })(),
    );
    jobs.push(
      (async () => {
        pems.set('rsa-sha1', await opensslCsr(t, 'rsa-sha1', NEWKEY.rsa2048!, ['-sha1']));
        pems.set('rsa-sha224', await opensslCsrForKey(t, 'rsa-sha224', 'rsa-sha1.key', ['-sha224']));
        pems.set('ecdsa-sha1', await opensslCsr(t, 'ecdsa-sha1', NEWKEY.p256!, ['-sha1']));
      })(),
    );
    await Promise.all(jobs);
  }, 180_000);
  afterAll(() => t.cleanup());

  it.each([
    ['rsa1024', /at least 2048/],
    ['p224', /too weak/],
    ['secp256k1', /too weak/],
    ['dsa', /dsa/],
    ['rsa-e3', /exponent/],
    ['p521', /not supported/],
    ['ed448', /not supported/],
  ])('refuses %s with ERR_CSR_WEAK_KEY', async (name, message) => {
    const pem = pems.get(name)!;
    // openssl itself finds the self-signature fine: the refusal is the key policy's.
    await t.write(`${name}.check.csr`, pem);
    expect(await opensslVerifiesCsr(t, `${name}.check.csr`)).toBe(true);
    expect(expectRefused(pem, 'ERR_CSR_WEAK_KEY').message).toMatch(message);
  });

  it('refuses an RSA key above 4096 bits (the key policy is applied before the signature is checked)', () => {
    // A real 4608-bit key takes seconds to generate; a random odd modulus loads just as well.
    const n = randomBytes(576);
    n[0] = n[0]! | 0x80;
    n[575] = n[575]! | 1;
    const rsaPublicKey = encode(seq(uintFromBytes(n), uint(65537)));
    const spki = seq(seq(oid('1.2.840.113549.1.1.1'), nul()), bitString(rsaPublicKey));
    const info = seq(uint(0), distinguishedName([]), spki, contextConstructed(0));
    const pem = csrPem(
      encode(seq(info, seq(oid('1.2.840.113549.1.1.11'), nul()), bitString(randomBytes(576)))),
    );
    expect(expectRefused(pem, 'ERR_CSR_WEAK_KEY').message).toMatch(/at most 4096/);
  });

  it.each(['rsa-sha1', 'rsa-sha224', 'ecdsa-sha1'])(
    'refuses a %s-signed CSR with ERR_CSR_UNSUPPORTED_ALGORITHM',
    (name) => {
      expectRefused(pems.get(name)!, 'ERR_CSR_UNSUPPORTED_ALGORITHM');
    },
  );

  it('refuses a signature algorithm that does not fit the key', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const pem = craftCsr({
      spki: decode(publicKey.export({ type: 'spki', format: 'der' }), { maxBytes: 4096, maxDepth: 8 }),
      algorithm: seq(oid('1.2.840.113549.1.1.11')),
      key: privateKey,
      hash: 'sha256',
    });
    expect(expectRefused(pem, 'ERR_CSR_UNSUPPORTED_ALGORITHM').message).toMatch(/does not fit/);
  });

  it('refuses a compressed EC point, even with a valid signature', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const jwk = publicKey.export({ format: 'jwk' });
    const point = Buffer.concat([
      Buffer.from([4]),
      Buffer.from(jwk.x!, 'base64url'),
      Buffer.from(jwk.y!, 'base64url'),
    ]);
    const compressed = ECDH.convertKey(point, 'prime256v1', undefined, undefined, 'compressed') as Buffer;
    const spki = seq(seq(oid('1.2.840.10045.2.1'), oid('1.2.840.10045.3.1.7')), bitString(compressed));
    const pem = craftCsr({
      spki,
      algorithm: seq(oid('1.2.840.10045.4.3.2')),
      key: privateKey,
      hash: 'sha256',
    });
    expect(expectRefused(pem, 'ERR_CSR_WEAK_KEY').message).toMatch(/compressed/);
  });

  it('refuses an OID with a padded arc, which OpenSSL would not read back from the certificate', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const jwk = publicKey.export({ format: 'jwk' });
    const point = Buffer.concat([
      Buffer.from([4]),
      Buffer.from(jwk.x!, 'base64url'),
      Buffer.from(jwk.y!, 'base64url'),
    ]);
    // 1.2.840.10045.3.1.7 with its last arc written 0x80 0x07 instead of 0x07.
    const paddedCurve = {
      ...oid('1.2.840.10045.3.1.7'),
      value: Buffer.from('2a8648ce3d03018007', 'hex').toString('latin1'),
    };
    const spki = seq(seq(oid('1.2.840.10045.2.1'), paddedCurve), bitString(point));
    const pem = craftCsr({
      spki,
      algorithm: seq(oid('1.2.840.10045.4.3.2')),
      key: privateKey,
      hash: 'sha256',
    });
    expect(expectRefused(pem, 'ERR_CSR_INVALID').message).toMatch(/malformed/);
  });

  it('accepts a crafted CSR built the same way with an uncompressed point (the control)', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const spki = decode(publicKey.export({ type: 'spki', format: 'der' }), { maxBytes: 4096, maxDepth: 8 });
    const pem = craftCsr({
      spki,
      algorithm: seq(oid('1.2.840.10045.4.3.2')),
      key: privateKey,
      hash: 'sha256',
    });
    expect(parseCsr(pem).publicKey.equals(publicKey)).toBe(true);
  });
});

describe('parseCsr refuses malformed input with ERR_CSR_INVALID', () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const good = createCsr(privateKey);
  const der = pemToDer(good);

  it('the builder control parses', () => {
    expect(parseCsr(good).keyType).toBe('ec-p256');
  });

  it.each([
    ['empty input', ''],
    ['whitespace only', '  \n'],
    ['garbage', 'hello, this is not a csr'],
    ['a truncated pem (no footer)', good.slice(0, good.indexOf('-----END'))],
    ['truncated der', csrPem(der.subarray(0, der.length - 12))],
    ['two concatenated pems', good + good],
    ['trailing text after the block', `${good}trailing`],
    ['leading text before the block', `subject=/CN=x\n${good}`],
    ['trailing bytes after the der', csrPem(Buffer.concat([der, Buffer.from([0, 0])]))],
    ['a certificate label', good.replaceAll('CERTIFICATE REQUEST', 'CERTIFICATE')],
    ['mismatched labels', good.replace('-----END CERTIFICATE REQUEST', '-----END NEW CERTIFICATE REQUEST')],
    ['a non-base64 character', good.replace(/\n[A-Za-z0-9+/]{10}/, (m) => `${m.slice(0, 5)}*${m.slice(6)}`)],
    ['pem headers', good.replace('-----\n', '-----\nProc-Type: 4,ENCRYPTED\n\n')],
    ['an empty block', '-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n'],
    [
      'a huge pem',
      `-----BEGIN CERTIFICATE REQUEST-----\n${'A'.repeat(CSR_MAX_PEM_CHARS)}\n-----END CERTIFICATE REQUEST-----\n`,
    ],
    ['der that is not a csr', csrPem(encode(seq(uint(1), uint(2))))],
  ])('%s', (_name, pem) => {
    expectRefused(pem, 'ERR_CSR_INVALID');
  });

  it('refuses non-canonical DER (a long-form length where a short one fits), though BER allows it', () => {
    // Outer header 30 81 LL becomes 30 82 00 LL: the same value, a different encoding.
    expect(der[1]).toBe(0x81);
    const ber = Buffer.concat([Buffer.from([0x30, 0x82, 0x00, der[2]!]), der.subarray(3)]);
    expect(expectRefused(csrPem(ber), 'ERR_CSR_INVALID').message).toMatch(/canonical/);
  });

  it('refuses an indefinite-length encoding', () => {
    const ber = Buffer.concat([Buffer.from([0x30, 0x80]), der.subarray(3), Buffer.from([0, 0])]);
    expectRefused(csrPem(ber), 'ERR_CSR_INVALID');
  });

  it('refuses deeply nested attributes before recursing into them', () => {
    let deep: Asn1 = seq();
    for (let i = 0; i < 60; i++) deep = seq(deep);
    const { privateKey: k, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const spki = decode(publicKey.export({ type: 'spki', format: 'der' }), { maxBytes: 4096, maxDepth: 8 });
    const pem = craftCsr({
      spki,
      attributes: contextConstructed(0, deep),
      algorithm: seq(oid('1.2.840.10045.4.3.2')),
      key: k,
      hash: 'sha256',
    });
    expect(pem.length).toBeLessThan(CSR_MAX_PEM_CHARS);
    expect(expectRefused(pem, 'ERR_CSR_INVALID').message).toMatch(/malformed/);
  });

  it('a non-string is a caller error', () => {
    expect(() => parseCsr(42 as unknown as string)).toThrow(TypeError);
  });
});
