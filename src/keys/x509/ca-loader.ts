// The broker's X.509 CA: loaded from PEM files, generated (dev), or generated once and shared through the store.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import type { Mode } from '../../config/loader.ts';
import type { WritConfig } from '../../config/schema.ts';
import type { Clock, CredentialStore } from '../../store/types.ts';
import { CertificateAuthority, generateRootCa, loadCa } from './ca.ts';
import { CaError } from './errors.ts';

/** The store's key material name of a generated production CA (`keys:x509-ca` in Redis). */
export const STORED_CA_NAME = 'x509-ca';

export interface LoadCaDeps {
  config: WritConfig;
  mode: Mode;
  store: CredentialStore;
  /** The broker's issuer URL: the default CRL distribution point is `<issuer>/v1/crl`. */
  issuer: string;
  clock: Clock;
  logger: Logger;
}

/** The CRL distribution point written into every certificate the CA issues. */
export function crlUrlOf(config: WritConfig, issuer: string): string {
  return config.keys.x509.crlUrl ?? `${issuer}/v1/crl`;
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    throw new CaError('ERR_CA_INVALID', `cannot read keys.x509.${what} ${file}`);
  }
}

export async function loadCertificateAuthority(deps: LoadCaDeps): Promise<CertificateAuthority> {
  const { config, mode, store, clock, logger } = deps;
  const x509 = config.keys.x509;
  const common = { trustDomain: config.trustDomain, crlUrl: crlUrlOf(config, deps.issuer), clock };

  let ca: CertificateAuthority;
  let source: 'files' | 'generated' | 'store';
  if (x509.caCertFile !== undefined && x509.caKeyFile !== undefined) {
    ca = loadCa({
      certPem: readPem(x509.caCertFile, 'caCertFile'),
      keyPem: readPem(x509.caKeyFile, 'caKeyFile'),
      chainPem: x509.caChainFile === undefined ? undefined : readPem(x509.caChainFile, 'caChainFile'),
      ...common,
    });
    source = 'files';
  } else if (mode === 'dev') {
    ca = generateRoot(config, common);
    source = 'generated';
  } else {
    // The first replica to store its root wins; every replica (and every restart) uses the stored one.
    const stored =
      (await store.getKeyMaterial(STORED_CA_NAME)) ??
      (await store.putKeyMaterialIfAbsent(STORED_CA_NAME, generateRoot(config, common).toPem()));
    try {
      ca = CertificateAuthority.fromPem(stored, common);
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new CaError('ERR_CA_INVALID', `the ca stored as ${STORED_CA_NAME} cannot be used: ${why}`, {
        cause: e,
      });
    }
    source = 'store';
  }
  logger.info(
    {
      source,
      keyId: ca.keyId,
      // What an operator compares when handing the bundle to clients out of band.
      rootSha256: new X509Certificate(ca.rootsPem[0] ?? ca.certificatePem).fingerprint256,
      keyType: ca.keyType,
      notAfter: new Date(ca.notAfter * 1000).toISOString(),
      intermediates: ca.chainPem.length,
      crlUrl: ca.crlUrl,
    },
    'x509 ca ready',
  );
  return ca;
}

function generateRoot(
  config: WritConfig,
  common: { trustDomain: string; crlUrl: string; clock: Clock },
): CertificateAuthority {
  return generateRootCa({ ...common, curve: config.keys.x509.caCurve, ttlSeconds: config.keys.x509.caTtl });
}
