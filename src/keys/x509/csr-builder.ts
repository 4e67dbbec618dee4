// Builds PKCS#10 requests for a key held by the caller (the workload side: CLI, SDK, tests and benchmarks).
import { createPublicKey, type KeyObject, sign } from 'node:crypto';
import { bitString, contextConstructed, decode, encode, nul, oid, seq, uint } from './der.ts';
import { OID } from './oids.ts';
import { toPem } from './pem.ts';
import { distinguishedName } from './template.ts';

interface Scheme {
  hash: 'sha256' | 'sha384' | null;
  algorithm: () => ReturnType<typeof seq>;
}

function schemeFor(key: KeyObject): Scheme {
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (details.namedCurve === 'secp384r1')
        return { hash: 'sha384', algorithm: () => seq(oid(OID.ecdsaWithSha384)) };
      return { hash: 'sha256', algorithm: () => seq(oid(OID.ecdsaWithSha256)) };
    case 'rsa':
      return { hash: 'sha256', algorithm: () => seq(oid(OID.sha256WithRsa), nul()) };
    case 'ed25519':
      return { hash: null, algorithm: () => seq(oid(OID.ed25519)) };
    default:
      throw new TypeError('createCsr supports ec, rsa and ed25519 keys');
  }
}

/**
 * A PEM CSR signed by `privateKey`. The subject is decoration only (the broker ignores it and writes the
 * SPIFFE ID itself); it defaults to `O=SPIFFE`.
 */
export function createCsr(privateKey: KeyObject, opts: { commonName?: string } = {}): string {
  if (privateKey.type !== 'private') throw new TypeError('createCsr needs a private key');
  const scheme = schemeFor(privateKey);
  const spkiDer = createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  const subject = distinguishedName(
    opts.commonName === undefined
      ? [{ type: 'O', value: 'SPIFFE' }]
      : [
          { type: 'O', value: 'SPIFFE' },
          { type: 'CN', value: opts.commonName },
        ],
  );
  const info = seq(uint(0), subject, decode(spkiDer, { maxBytes: 4096, maxDepth: 8 }), contextConstructed(0));
  const signature = sign(scheme.hash, encode(info), privateKey);
  return toPem('CERTIFICATE REQUEST', encode(seq(info, scheme.algorithm(), bitString(signature))));
}
