// The broker's X.509 authorities: a CA loaded from PEM files, or a ring of generated roots shared through the
// store and rotated (current, next, retired). Every CA publishes its own CRL at <crlUrl>/<its key id>.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { JWK } from 'jose';
import type { Logger } from 'pino';
import type { Mode } from '../../config/loader.ts';
import type { WritConfig } from '../../config/schema.ts';
import { type Clock, type CredentialStore, seconds } from '../../store/types.ts';
import { FixedRing, LiveRing, type Ring } from '../key-ring.ts';
import { CA_LEGACY_NAME, ringSpec, ringTiming } from '../rotation.ts';
import { type CaBundleOptions, CertificateAuthority, loadCa } from './ca.ts';
import { CaError } from './errors.ts';

/** The store's key material name of a CA generated before rings existed (`keys:x509-ca` in Redis). */
export const STORED_CA_NAME = CA_LEGACY_NAME;

export interface LoadCaDeps {
  config: WritConfig;
  mode: Mode;
  store: CredentialStore;
  /** The broker's issuer URL: the default CRL base is `<issuer>/v1/crl`. */
  issuer: string;
  clock: Clock;
  logger: Logger;
  /** How often the ring is re-read; default keys.rotation.refreshInterval. */
  refreshMs?: number | undefined;
}

/** The base URL of the CRLs: each CA's CRL is at `<base>/<key id>`, the base serves the current CA's. */
export function crlUrlOf(config: WritConfig, issuer: string): string {
  return config.keys.x509.crlUrl ?? `${issuer}/v1/crl`;
}

/** The CRL distribution point of the certificates a CA issues. */
export function crlUrlOfCa(base: string, keyId: string): string {
  return `${base.replace(/\/+$/, '')}/${keyId}`;
}

function readPem(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    throw new CaError('ERR_CA_INVALID', `cannot read keys.x509.${what} ${file}`);
  }
}

/** Builds a CA twice: once to learn its key id, once with the distribution point naming it. */
function withOwnCrlUrl(
  build: (opts: CaBundleOptions) => CertificateAuthority,
  common: { trustDomain: string; clock: Clock },
  base: string,
): CertificateAuthority {
  const probe = build(common);
  return build({ ...common, crlUrl: crlUrlOfCa(base, probe.keyId) });
}

/** The X.509 authorities of the trust domain: the CA that issues now, and every CA relying parties trust. */
export class CaAuthorities {
  readonly #ring: Ring<CertificateAuthority>;

  constructor(ring: Ring<CertificateAuthority>) {
    this.#ring = ring;
  }

  get ring(): Ring<CertificateAuthority> {
    return this.#ring;
  }

  /** The CA that issues now. */
  current(): CertificateAuthority {
    return this.#ring.current();
  }

  /** Current, next, then retired CAs whose certificates may still be alive. */
  published(): readonly CertificateAuthority[] {
    return this.#ring.published();
  }

  byKeyId(keyId: string): CertificateAuthority | undefined {
    return this.#ring.published().find((ca) => ca.keyId === keyId);
  }

  get sequence(): number {
    return this.#ring.sequence;
  }

  /** Every trust anchor (root) of the trust domain, as PEM, without repeats. */
  rootsPem(): string[] {
    return [...new Set(this.published().flatMap((ca) => ca.rootsPem))];
  }

  /** The bundle's X.509 authorities (`use: x509-svid`, `x5c`), one per root. */
  bundleKeys(): JWK[] {
    const seen = new Set<string>();
    return this.published()
      .flatMap((ca) => ca.bundleKeys())
      .filter((k) => {
        const id = k.x5c?.[0] ?? '';
        if (seen.has(id)) return false;
        seen.add(id);
        return true;
      });
  }

  /** Stops following the ring. */
  close(): void {
    this.#ring.close();
  }

  /**
   * Ends each published CA's signing and mint-check thread (checks still owed fail; a rotated-out CA's thread
   * ends on its own once idle). For shutdown, after the server has stopped taking requests.
   */
  async endThreads(): Promise<void> {
    await Promise.all(this.#ring.published().map((ca) => ca.close()));
  }
}

export async function loadCertificateAuthority(deps: LoadCaDeps): Promise<CaAuthorities> {
  const { config, store, clock, logger } = deps;
  const x509 = config.keys.x509;
  const common = { trustDomain: config.trustDomain, clock };
  const base = crlUrlOf(config, deps.issuer);

  let ring: Ring<CertificateAuthority>;
  let source: 'files' | 'ring';
  if (x509.caCertFile !== undefined && x509.caKeyFile !== undefined) {
    const certPem = readPem(x509.caCertFile, 'caCertFile');
    const keyPem = readPem(x509.caKeyFile, 'caKeyFile');
    const chainPem = x509.caChainFile === undefined ? undefined : readPem(x509.caChainFile, 'caChainFile');
    const ca = withOwnCrlUrl((opts) => loadCa({ certPem, keyPem, chainPem, ...opts }), common, base);
    ring = new FixedRing(ca, seconds(clock));
    source = 'files';
  } else {
    // Dev mode keeps the ring in its in-memory store; production shares it through Redis. The first replica
    // to store a ring wins; every replica (and every restart) uses the stored one.
    ring = await LiveRing.open<CertificateAuthority>({
      spec: ringSpec({ config, store, clock }, 'x509'),
      logger,
      ...ringTiming(config, deps.refreshMs),
      decode: async (slot) => {
        try {
          return withOwnCrlUrl((opts) => CertificateAuthority.fromPem(slot.pem, opts), common, base);
        } catch (e) {
          const why = e instanceof Error ? e.message : String(e);
          throw new CaError('ERR_CA_INVALID', `a ca stored in the key ring cannot be used: ${why}`, {
            cause: e,
          });
        }
      },
    });
    source = 'ring';
  }
  const ca = ring.current();
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
      published: ring.published().length,
    },
    'x509 ca ready',
  );
  return new CaAuthorities(ring);
}
