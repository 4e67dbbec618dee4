// Attacks on the asynchronous CSR check of the X.509 hot path (parseCsrAsync): every tampered request the
// synchronous parseCsr refuses is refused the same way, and no tampered request gets through.
import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { CsrError, createCsr, parseCsr, parseCsrAsync, toPem } from '../../../src/keys/x509/index.ts';

const keys: Record<string, () => { privateKey: KeyObject }> = {
  'P-256': () => generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  'P-384': () => generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  'RSA-2048': () => generateKeyPairSync('rsa', { modulusLength: 2048 }),
  Ed25519: () => generateKeyPairSync('ed25519'),
};

function derOf(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

const pemOf = (der: Buffer) => toPem('CERTIFICATE REQUEST', der);

async function outcome(pem: string): Promise<string> {
  try {
    await parseCsrAsync(pem);
    return 'accepted';
  } catch (e) {
    return e instanceof CsrError ? e.code : `other: ${(e as Error).message}`;
  }
}

function syncOutcome(pem: string): string {
  try {
    parseCsr(pem);
    return 'accepted';
  } catch (e) {
    return e instanceof CsrError ? e.code : `other: ${(e as Error).message}`;
  }
}

describe.each(Object.keys(keys))('parseCsrAsync with a %s key', (name) => {
  const { privateKey } = keys[name]!();
  const good = createCsr(privateKey, { commonName: 'workload-cn' });
  const der = derOf(good);

  it('accepts the genuine request, like parseCsr', async () => {
    const parsed = await parseCsrAsync(good);
    expect(parsed.spki.equals(createPublicKey(privateKey).export({ type: 'spki', format: 'der' }))).toBe(
      true,
    );
    expect(syncOutcome(good)).toBe('accepted');
  });

  it('refuses a changed subject, a flipped signature bit and a swapped subject key, as parseCsr does', async () => {
    const tampered: Record<string, Buffer> = {};
    const cn = der.indexOf(Buffer.from('workload-cn'));
    expect(cn).toBeGreaterThan(0);
    tampered.subject = Buffer.from(der);
    tampered.subject[cn] = 'W'.charCodeAt(0);
    tampered.signature = Buffer.from(der);
    tampered.signature[der.length - 1]! ^= 0x01;
    tampered.signatureMiddle = Buffer.from(der);
    tampered.signatureMiddle[der.length - 10]! ^= 0x80;
    // Another key of the same type in place of the subject key (same length), the signature left as it was.
    const other = createPublicKey(keys[name]!().privateKey).export({ type: 'spki', format: 'der' });
    const mine = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
    const at = der.indexOf(mine);
    expect(at).toBeGreaterThan(0);
    if (other.length === mine.length) {
      tampered.key = Buffer.concat([der.subarray(0, at), other, der.subarray(at + mine.length)]);
    }
    for (const [what, bytes] of Object.entries(tampered)) {
      const pem = pemOf(bytes);
      const got = await outcome(pem);
      expect(got, what).not.toBe('accepted');
      expect(got, what).toBe(syncOutcome(pem));
    }
  });

  it('refuses two requests in one PEM, trailing DER and a request wrapped in another label', async () => {
    const other = createCsr(keys[name]!().privateKey);
    for (const pem of [
      `${good}${other}`,
      pemOf(Buffer.concat([der, Buffer.from([0x00])])),
      good.replaceAll('CERTIFICATE REQUEST', 'CERTIFICATE'),
      good.slice(0, good.length - 40),
    ]) {
      const got = await outcome(pem);
      expect(got).not.toBe('accepted');
      expect(got).toBe(syncOutcome(pem));
    }
  });
});
