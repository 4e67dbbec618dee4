// The dependencies every service and route receives; built only by the composition root (src/server.ts).
import type { Logger } from 'pino';
import type { AdminAccounts } from './admin/accounts.ts';
import type { Approvals } from './admin/approvals.ts';
import type { AttestorFacade } from './attestation/facade.ts';
import type { AuditLog } from './audit/audit-log.ts';
import type { Mode } from './config/loader.ts';
import type { WritConfig } from './config/schema.ts';
import type { KeyManager } from './keys/signing-keys.ts';
import type { CertificateAuthority } from './keys/x509/ca.ts';
import type { CaAuthorities } from './keys/x509/ca-loader.ts';
import type { CrlPublisher } from './lifecycle/crl.ts';
import type { Lifecycle } from './lifecycle/lifecycle.service.ts';
import type { RevocationHub } from './lifecycle/revocation-feed.ts';
import type { LegacyIssuanceLog } from './observability/legacy-log.ts';
import type { Metrics } from './observability/metrics.ts';
import type { PolicyEngine } from './policy/engine.ts';
import type { Clock, CredentialStore } from './store/types.ts';

export interface Deps {
  config: WritConfig;
  mode: Mode;
  /** `iss` of every JWT-SVID; no trailing slash. */
  issuer: string;
  store: CredentialStore;
  keys: KeyManager;
  /**
   * The X.509 CA that issues now (X.509-SVIDs, the broker's own server certificate): a getter, so that a
   * rotation takes effect at once. Read it once per issuance.
   */
  readonly ca: CertificateAuthority;
  /** Every X.509 authority of the trust domain (current, next, retired): bundle, CRLs, client trust. */
  cas: CaAuthorities;
  crl: CrlPublisher;
  attestors: AttestorFacade;
  lifecycle: Lifecycle;
  policy: PolicyEngine;
  approvals: Approvals;
  accounts: AdminAccounts;
  audit: AuditLog;
  feed: RevocationHub;
  logger: Logger;
  /** The warning for credentials issued on legacy evidence: in full per workload, then summed up. */
  legacyLog: LegacyIssuanceLog;
  metrics: Metrics;
  clock: Clock;
  /** SHA-256 of the bootstrap admin token; the token itself is not kept. */
  adminTokenHash: Buffer;
}
