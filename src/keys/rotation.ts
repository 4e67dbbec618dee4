// Rotation of the JWT signing keys and the CA. Rings live in the store (see key-ring.ts); this module says
// which rings exist for a configuration, when each is due, and how one is rotated. It needs no decoded keys:
// the lifecycle worker (BullMQ repeatable job, possibly another process), the dev timer and the admin
// endpoint all rotate through it, and every broker replica picks the new ring up by re-reading the store.
import { generateKeyPairSync } from 'node:crypto';
import type { Logger } from 'pino';
import type { JwtAlgorithm, WritConfig } from '../config/schema.ts';
import { type Clock, type CredentialStore, seconds } from '../store/types.ts';
import {
  ensureRing,
  MAX_RETIRED,
  pruned,
  type RingDoc,
  type RingSpec,
  type RingUpdate,
  replaced,
  rotated,
  updateRing,
  withFreshNext,
} from './key-ring.ts';
import { generateRootCa } from './x509/ca.ts';

export type RingName = 'jwt' | 'x509';
export const RING_NAMES: readonly RingName[] = ['jwt', 'x509'];

/** Key material names of the rings, and of the single keys stored before rings existed. */
export const jwtRingName = (alg: JwtAlgorithm) => `jwt-ring:${alg}`;
export const jwtLegacyName = (alg: JwtAlgorithm) => `jwt-signing:${alg}`;
export const CA_RING_NAME = 'x509-ca-ring';
export const CA_LEGACY_NAME = 'x509-ca';

/** Margin for clock differences between replicas, workers and relying parties, seconds. */
const CLOCK_MARGIN = 60;

export type RotationConfig = Pick<WritConfig, 'keys' | 'credentials' | 'trustDomain'>;

export interface RotationDeps {
  store: CredentialStore;
  clock: Clock;
  logger: Logger;
  config: RotationConfig;
}

const EC_CURVE: Partial<Record<JwtAlgorithm, string>> = { ES256: 'prime256v1', ES384: 'secp384r1' };

/** A new private key for `alg`, as PKCS#8 PEM. */
export function generateJwtKeyPem(alg: JwtAlgorithm): string {
  const curve = EC_CURVE[alg];
  const { privateKey } = curve
    ? generateKeyPairSync('ec', { namedCurve: curve })
    : generateKeyPairSync('rsa', { modulusLength: 3072 });
  return privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
}

/** Whether Writ owns the keys of a ring (false when the operator gave them as files). */
export function isRotatable(config: RotationConfig, ring: RingName): boolean {
  return ring === 'jwt'
    ? config.keys.jwtPrivateKeyFile === undefined
    : config.keys.x509.caCertFile === undefined;
}

export function ringSpec(deps: Pick<RotationDeps, 'store' | 'clock' | 'config'>, ring: RingName): RingSpec {
  const { config, store, clock } = deps;
  if (ring === 'jwt') {
    const alg = config.keys.jwtAlgorithm;
    return {
      store,
      clock,
      name: jwtRingName(alg),
      legacyName: jwtLegacyName(alg),
      generate: () => ({ pem: generateJwtKeyPem(alg) }),
    };
  }
  const { caCurve, caTtl } = config.keys.x509;
  return {
    store,
    clock,
    name: CA_RING_NAME,
    legacyName: CA_LEGACY_NAME,
    generate: () => {
      const ca = generateRootCa({
        trustDomain: config.trustDomain,
        curve: caCurve,
        ttlSeconds: caTtl,
        clock,
      });
      return { pem: ca.toPem(), notAfter: ca.notAfter };
    },
  };
}

/**
 * How long a retired key stays published: everything it signed expires within credentials.maxTtl of its
 * retirement, plus the time other replicas may still sign with it (one ring refresh) and clock skew.
 */
export function retainSeconds(config: RotationConfig): number {
  const { maxTtl, backdate } = config.credentials;
  return maxTtl + backdate + config.keys.rotation.refreshInterval + CLOCK_MARGIN;
}

/**
 * How a replica follows a ring: re-read every keys.rotation.refreshInterval; and stop handing out the signing
 * key when reads have failed for longer than a retired key outlives its credentials' maxTtl (backdate,
 * one refresh, margin), so that nothing it signs can outlive the key's publication.
 */
export function ringTiming(
  config: RotationConfig,
  refreshMs?: number | undefined,
): { refreshMs: number; staleAfterMs: number } {
  const every = refreshMs ?? config.keys.rotation.refreshInterval * 1000;
  const stale = (retainSeconds(config) - config.credentials.maxTtl) * 1000;
  return { refreshMs: every, staleAfterMs: every > 0 ? stale : 0 };
}

/** Seconds a next key must have been published before it may sign: every relying party's cache holds it. */
export function publicationLead(config: RotationConfig): number {
  return config.keys.bundleRefreshHint + config.keys.rotation.refreshInterval;
}

/** A CA within this much of its end is rotated out (and no next CA this close to its end takes over). */
function caEndMargin(config: RotationConfig): number {
  return 2 * config.credentials.maxTtl + publicationLead(config);
}

/** Why a ring is due for rotation now, or undefined. */
export function dueReason(
  config: RotationConfig,
  ring: RingName,
  doc: RingDoc,
  now: number,
): string | undefined {
  const { rotation } = config.keys;
  const interval = ring === 'jwt' ? rotation.jwtInterval : rotation.caInterval;
  // The next key must have been published long enough for every relying party's cache to hold it.
  if (now - doc.next.createdAt <= publicationLead(config)) return undefined;
  const activated = doc.current.activatedAt ?? doc.current.createdAt;
  if (interval > 0 && now - activated >= interval) return 'interval';
  // A CA near its end would cut every certificate short: rotate while the next CA has its life ahead.
  const notAfter = doc.current.notAfter;
  if (ring === 'x509' && notAfter !== undefined && notAfter - now < caEndMargin(config)) return 'ca_expiring';
  return undefined;
}

/** A next CA that would be near its end by the time it could issue is replaced by a fresh one first. */
function nextCaTooShort(config: RotationConfig, ring: RingName, doc: RingDoc, now: number): boolean {
  const notAfter = doc.next.notAfter;
  return (
    ring === 'x509' &&
    notAfter !== undefined &&
    notAfter - now < caEndMargin(config) + publicationLead(config)
  );
}

export interface RotationOutcome {
  ring: RingName;
  rotated: boolean;
  /** Retired keys dropped because everything they signed has expired (or all of them, after a compromise). */
  pruned: number;
  sequence: number;
  reason?: string | undefined;
}

function outcome(
  ring: RingName,
  update: RingUpdate,
  before: RingDoc | undefined,
  reason?: string,
): RotationOutcome {
  const rotatedNow = before !== undefined && update.changed && update.doc.current.pem !== before.current.pem;
  const kept = new Set(update.doc.retired.map((s) => s.pem));
  const prunedCount = before && update.changed ? before.retired.filter((s) => !kept.has(s.pem)).length : 0;
  return { ring, rotated: rotatedNow, pruned: prunedCount, sequence: update.doc.sequence, reason };
}

/**
 * Rotates the rings that are due, replaces a next CA that would be too close to its end, and drops retired
 * keys whose credentials have all expired (the scheduled job).
 */
export async function rotateDue(deps: RotationDeps): Promise<RotationOutcome[]> {
  const out: RotationOutcome[] = [];
  for (const ring of RING_NAMES) {
    if (!isRotatable(deps.config, ring)) continue;
    let before: RingDoc | undefined;
    let reason: string | undefined;
    const spec = ringSpec(deps, ring);
    const update = await updateRing(spec, (doc, now) => {
      before = doc;
      if (nextCaTooShort(deps.config, ring, doc, now)) {
        reason = 'next_ca_expiring';
        return withFreshNext(pruned(doc, now) ?? doc, now, spec);
      }
      reason = dueReason(deps.config, ring, doc, now);
      return reason ? rotated(doc, now, retainSeconds(deps.config), spec) : pruned(doc, now);
    });
    const result = outcome(ring, update, before, reason);
    if (result.rotated) deps.logger.info({ ring, reason, sequence: result.sequence }, 'key ring rotated');
    else if (update.changed && reason) deps.logger.info({ ring, reason }, 'key ring: next key replaced');
    if (result.pruned > 0) deps.logger.info({ ring, pruned: result.pruned }, 'retired keys dropped');
    out.push(result);
  }
  return out;
}

/** A rotation that cannot happen yet: the next key has not been published long enough, or too many retired. */
export class RotationTooSoonError extends Error {
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds: number) {
    super(message);
    this.name = 'RotationTooSoonError';
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export interface RotateNowOptions {
  /**
   * The keys may have leaked (the ring document holds current, next and retired keys alike): every key of the
   * ring leaves publication at once, so what they signed stops verifying, and fresh current and next keys
   * are generated. Relying parties must refetch the bundle before they accept what the new key signs.
   */
  compromised?: boolean | undefined;
}

/**
 * Rotates one ring now (the admin endpoint). The next key signs only once it has been published for
 * publicationLead seconds (else RotationTooSoonError), unless the keys are compromised. A rotation another
 * replica made meanwhile counts as this one: the key current when the request was read is retired once.
 */
export async function rotateNow(
  deps: RotationDeps,
  ring: RingName,
  opts: RotateNowOptions = {},
): Promise<RotationOutcome> {
  let retiring: string | undefined;
  let before: RingDoc | undefined;
  const spec = ringSpec(deps, ring);
  const update = await updateRing(spec, (doc, now) => {
    before = doc;
    if (opts.compromised) return replaced(doc, now, spec);
    retiring ??= doc.current.pem;
    if (doc.current.pem !== retiring) return null;
    const refusal = rotationRefusal(deps.config, ring, doc, now);
    if (refusal) throw refusal;
    return rotated(doc, now, retainSeconds(deps.config), spec);
  });
  const result = outcome(ring, update, before, opts.compromised ? 'compromised' : 'admin');
  // Rotated by a concurrent request: report it as done, since the key that was current is retired.
  return { ...result, rotated: true };
}

/** Why a rotation of `doc` cannot happen now (a RotationTooSoonError to throw), or undefined. */
function rotationRefusal(
  config: RotationConfig,
  ring: RingName,
  doc: RingDoc,
  now: number,
): RotationTooSoonError | undefined {
  const lead = publicationLead(config);
  const published = now - doc.next.createdAt;
  if (published <= lead) {
    return new RotationTooSoonError(
      `the next ${ring} key has been published for ${published} s; it may sign after ${lead} s ` +
        '(keys.bundleRefreshHint + keys.rotation.refreshInterval), or rotate as compromised',
      lead - published + 1,
    );
  }
  const live = doc.retired.filter((s) => (s.retainUntil ?? 0) > now);
  if (live.length + 1 > MAX_RETIRED) {
    const oldest = Math.min(...live.map((s) => s.retainUntil ?? now));
    return new RotationTooSoonError(
      `the ${ring} key ring already holds ${MAX_RETIRED} retired keys still in use`,
      Math.max(1, oldest - now),
    );
  }
  return undefined;
}

/**
 * Throws RotationTooSoonError when `rotateNow` of these rings would be refused now (read before anything is
 * audited or changed; the rotation itself decides again under compare-and-set).
 */
export async function checkRotationAllowed(deps: RotationDeps, rings: readonly RingName[]): Promise<void> {
  for (const ring of rings) {
    const { doc } = await ensureRing(ringSpec(deps, ring));
    const refusal = rotationRefusal(deps.config, ring, doc, seconds(deps.clock));
    if (refusal) throw refusal;
  }
}

/** What a replica holds and re-reads after a rotation it made or ran. */
export interface HeldRings {
  refresh(): Promise<unknown>;
}

/**
 * Dev mode's driver (production uses the worker's repeatable job): checks the rings every
 * keys.rotation.checkInterval and re-reads the rings held once a rotation happened.
 */
export class RotationTimer {
  readonly #timer: NodeJS.Timeout;
  #running: Promise<void> | undefined;

  constructor(deps: RotationDeps, held: readonly HeldRings[]) {
    this.#timer = setInterval(() => {
      this.#running ??= rotateDue(deps)
        .then(async (results) => {
          if (results.some((r) => r.rotated || r.pruned > 0)) await Promise.all(held.map((h) => h.refresh()));
        })
        .catch((err: unknown) => deps.logger.error({ err }, 'key rotation check failed; retrying later'))
        .finally(() => {
          this.#running = undefined;
        });
    }, deps.config.keys.rotation.checkInterval * 1000);
    this.#timer.unref();
  }

  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }
}
