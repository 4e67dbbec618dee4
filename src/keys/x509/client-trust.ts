// Which X.509 authorities a client certificate may chain to (mTLS renewal): the one place that says, so that
// a CA rotation changes the client trust here and the TLS server picks it up with TlsController.refreshTrust().
import type { CertificateAuthority } from './ca.ts';

/** The rotating set of the trust domain's X.509 authorities (current, next, retired). */
export interface ClientTrustAuthorities {
  /** Every root of the trust domain, PEM. */
  rootsPem(): readonly string[];
  /** A published CA by its key id (subject key identifier, lowercase hex). */
  byKeyId(keyId: string): CertificateAuthority | undefined;
}

/** One CA, or the rotating set of them. */
export type ClientTrustSource = CertificateAuthority | ClientTrustAuthorities;

function isAuthorities(source: ClientTrustSource): source is ClientTrustAuthorities {
  return 'byKeyId' in source;
}

/** The trust anchors (PEM) the TLS server verifies client certificates against: the roots, never a leaf. */
export function clientTrustAnchors(source: ClientTrustSource): string[] {
  return [...(isAuthorities(source) ? source.rootsPem() : source.rootsPem)];
}

/**
 * The CA that issued the X.509-SVIDs recorded with key id `kid`, while the broker still trusts it; undefined
 * otherwise. A presented certificate must verify under this CA's own key, not merely chain to a trusted root:
 * a root may have other intermediates, whose serial numbers are not ours.
 */
export function svidIssuer(source: ClientTrustSource, kid: string): CertificateAuthority | undefined {
  if (isAuthorities(source)) return source.byKeyId(kid);
  return source.keyId === kid ? source : undefined;
}
