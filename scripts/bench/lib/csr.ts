// P-256 PKCS#10 certificate signing requests for the X.509 scenario, DER-encoded by hand (node:crypto signs;
// it has no CSR builder, and forge builds only RSA ones).
import { generateKeyPairSync, sign } from 'node:crypto';

function tlv(tag: number, content: Buffer): Buffer {
  const len = content.length;
  let header: Buffer;
  if (len < 0x80) header = Buffer.from([tag, len]);
  else if (len < 0x100) header = Buffer.from([tag, 0x81, len]);
  else header = Buffer.from([tag, 0x82, len >> 8, len & 0xff]);
  return Buffer.concat([header, content]);
}

const seq = (...parts: Buffer[]) => tlv(0x30, Buffer.concat(parts));
const OID_ECDSA_SHA256 = Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
const OID_COMMON_NAME = Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]);

/** One CSR (PEM) for a fresh P-256 key; the subject is a throwaway CN (the broker ignores it). */
export function p256Csr(commonName = 'writ-bench'): string {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const spki = publicKey.export({ format: 'der', type: 'spki' });
  const subject = seq(tlv(0x31, seq(OID_COMMON_NAME, tlv(0x0c, Buffer.from(commonName, 'utf8')))));
  const info = seq(Buffer.from([0x02, 0x01, 0x00]), subject, spki, Buffer.from([0xa0, 0x00]));
  const signature = sign('sha256', info, privateKey); // DER-encoded ECDSA signature
  const der = seq(info, seq(OID_ECDSA_SHA256), tlv(0x03, Buffer.concat([Buffer.from([0]), signature])));
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64.trimEnd()}\n-----END CERTIFICATE REQUEST-----\n`;
}
