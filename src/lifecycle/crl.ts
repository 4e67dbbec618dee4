// The CRL: revoked, unexpired X.509-SVIDs, followed from the revocation feed and signed by the CA on change.
//
// The store's revocation feed is the source of truth, shared by every replica. Each replica folds the feed
// into the set of revoked serials: a credential event of an X.509-SVID names its serial; a task event means
// every credential of the task is revoked at that moment, before the fan-out has announced them one by one,
// so the task's X.509-SVIDs are looked up in the store right away. Before a CRL is served the replica reads
// the feed up to its end, so a certificate revoked on another replica a moment ago is on the CRL it serves.
// While relying parties fetch CRLs, revocations heard from the feed hub trigger a rebuild in the background,
// so that the CRL is ready when asked. CRL numbers come from a counter in the store: monotonic across replicas and restarts.
import type { Logger } from 'pino';
import type { WritConfig } from '../config/schema.ts';
import { type CertificateAuthority, type CrlReason, crlToPem } from '../keys/x509/index.ts';
import { type Clock, type CredentialStore, type RevocationEvent, seconds } from '../store/types.ts';
import { FreshRun } from './fresh-run.ts';
import { REASON_COMPLETED, REASON_DEADLINE } from './jobs.ts';
import { REASON_HOLDER, REASON_PATTERN } from './lifecycle.service.ts';
import type { RevocationHub } from './revocation-feed.ts';

export const CRL_SEQUENCE = 'crl';
const FEED_PAGE = 1000;
const TASK_PAGE = 1000;
/** A rebuild waits this long for more of a burst of revocations (a task's fan-out) before signing. */
const DEBOUNCE_MS = 25;

/** Writ's public reason codes (on the feed) as RFC 5280 CRL reasons; others are `unspecified`. */
const CRL_REASONS: Readonly<Record<string, CrlReason>> = {
  [REASON_COMPLETED]: 'cessationOfOperation',
  [REASON_DEADLINE]: 'cessationOfOperation',
  [REASON_HOLDER]: 'cessationOfOperation',
  key_compromise: 'keyCompromise',
  superseded: 'superseded',
  affiliation_changed: 'affiliationChanged',
  privilege_withdrawn: 'privilegeWithdrawn',
  cessation_of_operation: 'cessationOfOperation',
};

export function crlReasonOf(reason: string): CrlReason {
  return REASON_PATTERN.test(reason) && Object.hasOwn(CRL_REASONS, reason)
    ? (CRL_REASONS[reason] ?? 'unspecified')
    : 'unspecified';
}

export interface SignedCrl {
  readonly der: Buffer;
  readonly pem: string;
  readonly number: number;
  /** Epoch seconds. */
  readonly thisUpdate: number;
  readonly nextUpdate: number;
  /** Serials (lowercase hex) on it. */
  readonly serials: readonly string[];
}

interface Revoked {
  revokedAt: number;
  reason: CrlReason;
  /** The certificate's notAfter: once passed, it leaves the CRL (RFC 5280 §3.3). */
  expiresAt: number;
}

/** The CAs whose CRLs are served: after a rotation, retired CAs keep theirs while their certificates live. */
export interface CrlAuthorities {
  current(): CertificateAuthority;
  byKeyId(keyId: string): CertificateAuthority | undefined;
}

export interface CrlDeps {
  store: CredentialStore;
  /** One CA, or the rotating set of them. */
  ca: CertificateAuthority | CrlAuthorities;
  clock: Clock;
  logger: Logger;
  config: Pick<WritConfig, 'keys' | 'credentials'>;
  feed?: RevocationHub | undefined;
}

export class CrlPublisher {
  readonly #deps: CrlDeps;
  readonly #revoked = new Map<string, Revoked>();
  /** The last feed event folded in; undefined until the first catch-up, which reads the whole feed. */
  #cursor: string | undefined;
  /** Bumped whenever the revoked set changes; each signed CRL remembers the version it lists. */
  #version = 0;
  /** The last CRL signed by each CA (by key id), with the revoked-set version it lists. */
  readonly #signed = new Map<string, { crl: SignedCrl; version: number }>();
  /** Catching up with the feed: one run at a time, and a caller joins a run that starts after it asked. */
  readonly #refreshes = new FreshRun(() => this.#catchUpAndExpire());
  #timer: NodeJS.Timeout | undefined;
  #unsubscribe: (() => void) | undefined;
  #closed = false;
  /** When a CRL was last asked for (epoch seconds). */
  #lastAsked: number | undefined;

  constructor(deps: CrlDeps) {
    this.#deps = deps;
  }

  /**
   * Follows the feed hub: an X.509 revocation or a task end rebuilds the CRL in the background, while relying
   * parties fetch CRLs from this replica (within one CRL validity of the last request). A broker whose CRL
   * nobody asks for does no CRL work at all (JWT-only deployments); the first request catches up.
   */
  start(): void {
    if (this.#unsubscribe || !this.#deps.feed) return;
    this.#unsubscribe = this.#deps.feed.subscribe(
      (events) => {
        if (this.#inDemand() && events.some(concernsCertificates)) this.#schedule();
      },
      { internal: true },
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    if (this.#timer) clearTimeout(this.#timer);
    await this.#refreshes.settled();
  }

  /**
   * The CRL as of the feed's end now: catches up with the feed (one store read when nothing changed) and
   * signs a new CRL when the set changed or the last one has used half its validity. When the store is
   * unreachable, the last CRL is served while it is valid; else the store's error propagates (503).
   */
  current(): Promise<SignedCrl>;
  /** The CRL of the published CA with this key id; undefined when no such CA is published. */
  current(keyId: string | undefined): Promise<SignedCrl | undefined>;
  async current(keyId?: string): Promise<SignedCrl | undefined> {
    const ca = this.#authority(keyId);
    if (!ca) return undefined;
    this.#lastAsked = seconds(this.#deps.clock);
    try {
      await this.#refreshes.run();
      return await this.#signedBy(ca);
    } catch (err) {
      const last = this.#signed.get(ca.keyId)?.crl;
      if (last && seconds(this.#deps.clock) < last.nextUpdate) {
        this.#deps.logger.warn({ err }, 'crl: cannot read the revocation feed; serving the last crl');
        return last;
      }
      throw err;
    }
  }

  /** The CA of `keyId` (current when undefined), if it is one of ours. */
  #authority(keyId: string | undefined): CertificateAuthority | undefined {
    const { ca } = this.#deps;
    if (!('current' in ca)) return keyId === undefined || keyId === ca.keyId ? ca : undefined;
    return keyId === undefined ? ca.current() : ca.byKeyId(keyId);
  }

  #inDemand(): boolean {
    const validity = this.#deps.config.keys.x509.crlNextUpdate;
    return this.#lastAsked !== undefined && seconds(this.#deps.clock) - this.#lastAsked < validity;
  }

  #schedule(): void {
    if (this.#closed || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      const ca = this.#authority(undefined);
      this.#refreshes
        .run()
        .then(() => (ca ? this.#signedBy(ca) : undefined))
        .catch((err: unknown) =>
          this.#deps.logger.warn({ err }, 'crl: background rebuild failed; the next request retries'),
        );
    }, DEBOUNCE_MS);
    this.#timer.unref();
  }

  async #catchUpAndExpire(): Promise<void> {
    await this.#catchUp();
    const now = seconds(this.#deps.clock);
    for (const [serial, entry] of this.#revoked) {
      if (entry.expiresAt <= now) {
        this.#revoked.delete(serial);
        this.#version++;
      }
    }
  }

  /**
   * The CA's CRL as of the set folded in: its last one while nothing changed and half its validity remains,
   * else a new one. Every CA lists every revoked serial: serials are random (128 bits), so a serial another
   * CA issued names nothing of this one's, and a replica needs no record of which CA issued what.
   */
  async #signedBy(ca: CertificateAuthority): Promise<SignedCrl> {
    const now = seconds(this.#deps.clock);
    const validity = this.#deps.config.keys.x509.crlNextUpdate;
    const last = this.#signed.get(ca.keyId);
    if (last && last.version === this.#version && now < last.crl.thisUpdate + Math.floor(validity / 2)) {
      return last.crl;
    }
    return this.#sign(ca, now, validity);
  }

  async #catchUp(): Promise<void> {
    const { store } = this.#deps;
    for (;;) {
      const events = await store.readRevocations(this.#cursor, FEED_PAGE);
      for (const event of events) {
        await this.#apply(event);
        this.#cursor = event.id;
      }
      if (events.length < FEED_PAGE) break;
    }
    // An empty feed: start after its (future) first event rather than re-reading from the oldest each time.
    this.#cursor ??= '0-0';
  }

  async #apply(event: RevocationEvent): Promise<void> {
    const now = seconds(this.#deps.clock);
    if (event.expiresAt <= now) return; // nothing it concerns is still valid
    const reason = crlReasonOf(event.reason);
    if (event.kind === 'credential') {
      if (event.credentialType === 'x509' && event.credential !== undefined) {
        this.#add(event.credential, { revokedAt: event.revokedAt, reason, expiresAt: event.expiresAt });
      }
      return;
    }
    // A task ended: every credential of it is revoked now. Its certificates are looked up at once (the fan-out
    // announces each one later). A task can gain no credential once ended, so one lookup is complete.
    let cursor: string | undefined;
    do {
      const page = await this.#deps.store.listCredentials({ task: event.task }, { cursor, limit: TASK_PAGE });
      for (const { credential } of page.items) {
        if (credential.type !== 'x509' || credential.expiresAt <= now) continue;
        this.#add(credential.id, { revokedAt: event.revokedAt, reason, expiresAt: credential.expiresAt });
      }
      cursor = page.next;
    } while (cursor !== undefined);
  }

  #add(serial: string, entry: Revoked): void {
    if (!/^[0-9a-f]{1,40}$/.test(serial)) {
      this.#deps.logger.warn(
        { serial: serial.slice(0, 64) },
        'crl: skipping a credential id that is no serial',
      );
      return;
    }
    const prior = this.#revoked.get(serial);
    if (prior && prior.revokedAt <= entry.revokedAt) return;
    this.#revoked.set(serial, entry);
    this.#version++;
  }

  async #sign(ca: CertificateAuthority, now: number, validity: number): Promise<SignedCrl> {
    const { store, config } = this.#deps;
    const version = this.#version;
    // One counter for every CA: monotonic for each issuer, across replicas and restarts.
    const number = await store.nextSequence(CRL_SEQUENCE);
    // Back-dated like every credential, so a relying party whose clock is a little behind accepts it at once.
    const thisUpdate = now - config.credentials.backdate;
    const revoked = [...this.#revoked].map(([serialHex, e]) => ({
      serialHex,
      revokedAt: e.revokedAt,
      reason: e.reason,
    }));
    const der = ca.signCrl({ revoked, crlNumber: number, thisUpdate, nextUpdate: now + validity });
    const signed: SignedCrl = {
      der,
      pem: crlToPem(der),
      number,
      thisUpdate,
      nextUpdate: now + validity,
      serials: revoked.map((r) => r.serialHex),
    };
    this.#signed.set(ca.keyId, { crl: signed, version });
    // CRLs of CAs no longer published are dropped (retired CAs leave once their certificates expired).
    for (const keyId of this.#signed.keys()) if (!this.#authority(keyId)) this.#signed.delete(keyId);
    this.#deps.logger.debug({ number, revoked: revoked.length, ca: ca.keyId }, 'crl signed');
    return signed;
  }
}

function concernsCertificates(event: RevocationEvent): boolean {
  return event.kind === 'task' || event.credentialType === 'x509';
}
