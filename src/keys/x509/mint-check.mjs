// The mint check's OpenSSL reading of a leaf, shared by the CA (on the event loop) and its signing and check
// thread: plain JavaScript with node:crypto only, so that a worker thread loads it without a TypeScript loader.
import { sign, X509Certificate } from 'node:crypto';

/** The names readBack fails with: the name of the first check a certificate fails. */
export const MINT_CHECK_FAILURES = Object.freeze([
  'parse',
  'signature',
  'issuer',
  'ca flag',
  'serial',
  'validity',
  'public key',
  'subject alternative name',
  'extended key usage',
]);

function epochOf(nodeTime) {
  return Date.parse(nodeTime) / 1000;
}

/**
 * Mint, then check: an independent parser (OpenSSL through node:crypto) must read back what was meant. Returns
 * `{ failed: null, cert }` when every check passes, else `{ failed }`, the first check that failed (and the
 * parser's error as `cause` when the certificate does not parse). The checks only the certificate's own bytes
 * or the CA's key policy can answer are the caller's.
 */
export function readBack(der, meant) {
  let cert;
  try {
    cert = new X509Certificate(der);
  } catch (cause) {
    return { failed: 'parse', cause };
  }
  if (!cert.verify(meant.issuerKey)) return { failed: 'signature' };
  if (!cert.checkIssued(meant.issuer)) return { failed: 'issuer' };
  // cert.ca is X509_check_ca, which reads CA:TRUE without keyCertSign as no CA: the caller reads the bytes too.
  if (cert.ca) return { failed: 'ca flag' };
  if (cert.serialNumber.toLowerCase() !== meant.serialHex) return { failed: 'serial' };
  const from = epochOf(cert.validFrom);
  const to = epochOf(cert.validTo);
  if (from !== meant.notBefore || to !== meant.notAfter || to > meant.caNotAfter || from >= to) {
    return { failed: 'validity' };
  }
  // The key as OpenSSL reads it back from the certificate, against the key the request was verified with.
  if (meant.key !== undefined && !cert.publicKey.equals(meant.key)) return { failed: 'public key' };
  if (!meant.sanOk(cert)) return { failed: 'subject alternative name' };
  const usages = cert.keyUsage ?? [];
  if (usages.length !== meant.eku.length || !meant.eku.every((u) => usages.includes(u))) {
    return { failed: 'extended key usage' };
  }
  return { failed: null, cert };
}

/** A DER element of `tag` around `parts` (lengths below 2^24, as every certificate here). */
function element(tag, ...parts) {
  const length = parts.reduce((n, p) => n + p.length, 0);
  const head =
    length < 0x80
      ? [tag, length]
      : length < 0x100
        ? [tag, 0x81, length]
        : length < 0x10000
          ? [tag, 0x82, length >> 8, length & 0xff]
          : [tag, 0x83, length >> 16, (length >> 8) & 0xff, length & 0xff];
  // Not from Buffer's pool: posted to another thread, a pooled Buffer would take the whole pool along.
  const out = Buffer.alloc(head.length + length);
  out.set(head);
  let at = head.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The CA thread's answer to one request: signs its TBSCertificate, assembles the certificate and reads it back.
 * A pass carries the certificate and its signature, and names the serial OpenSSL read from it.
 */
export function signAndReadBack(request, ca) {
  const { id, tbs, serialHex, notBefore, notAfter, key, san } = request;
  try {
    const signature = sign(ca.hash, tbs, ca.privateKey);
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
    const der = element(0x30, tbs, ca.algorithm, element(0x03, Buffer.from([0]), signature));
    const result = readBack(der, {
      issuer: ca.issuer,
      issuerKey: ca.issuerKey,
      serialHex,
      notBefore,
      notAfter,
      caNotAfter: ca.caNotAfter,
      key,
      eku: ca.eku,
      sanOk: (cert) => cert.subjectAltName === san,
    });
    if (result.failed !== null) return { id, failed: result.failed, serial: null };
    return { id, failed: null, serial: result.cert.serialNumber.toLowerCase(), der, signature };
  } catch {
    return { id, failed: 'error', serial: null };
  }
}
