// Key rings: the key that signs (current), the key published to sign next (next), and retired keys kept
// published until everything they signed has expired. One JSON document per ring in the store's key material,
// changed only by compare-and-set: replicas read the same ring, and of two concurrent rotations one wins.
//
// Why a "next" slot: relying parties cache the bundle (spiffe_refresh_hint) and the JWKS. A key that starts
// signing the moment it is published would be unknown to them until their next refresh; the next key is
// published one rotation interval before it signs, so that every cache already holds it when it does.
import type { Logger } from 'pino';
import { z } from 'zod';
import { WritError } from '../errors.ts';
import { FreshRun } from '../lifecycle/fresh-run.ts';
import { type Clock, type CredentialStore, seconds } from '../store/types.ts';

/** The store counter behind the bundle's `spiffe_sequence`: every ring change takes the next value. */
export const BUNDLE_SEQUENCE = 'bundle';
const MAX_PEM = 64 * 1024;
/** Retired keys a ring holds at most (the config refuses schedules that would need more). */
export const MAX_RETIRED = 64;
const MAX_CAS_ATTEMPTS = 8;

export interface RingSlot {
  /** The key (and for a CA its certificate) as PEM. Secret. */
  pem: string;
  /** Epoch seconds: when the key was generated, which is when it was first published. */
  createdAt: number;
  /** When it became the current key (absent for the next key). */
  activatedAt?: number | undefined;
  /** Retired keys: published until then (everything they signed has expired by then). */
  retainUntil?: number | undefined;
  /** When the key itself stops being usable (a CA certificate's notAfter). */
  notAfter?: number | undefined;
}

export interface RingDoc {
  v: 1;
  /** The bundle sequence taken when this version of the ring was written. */
  sequence: number;
  current: RingSlot;
  next: RingSlot;
  /** Newest first. */
  retired: RingSlot[];
}

const epoch = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const slotSchema = z.strictObject({
  pem: z.string().min(1).max(MAX_PEM),
  createdAt: epoch,
  activatedAt: epoch.optional(),
  retainUntil: epoch.optional(),
  notAfter: epoch.optional(),
});
const docSchema = z.strictObject({
  v: z.literal(1),
  sequence: epoch,
  current: slotSchema,
  next: slotSchema,
  retired: z.array(slotSchema).max(MAX_RETIRED),
});

export class KeyRingError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'KeyRingError';
  }
}

/** Where a ring lives and how a key of it is made. */
export interface RingSpec {
  store: CredentialStore;
  /** Key material name of the ring document. */
  name: string;
  /** A single PEM stored under this name before rings existed becomes the first current key. */
  legacyName?: string | undefined;
  generate(now: number): { pem: string; notAfter?: number | undefined };
  clock: Clock;
}

export interface StoredRing {
  raw: string;
  doc: RingDoc;
}

function parseDoc(name: string, raw: string): RingDoc {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    throw new KeyRingError(`the key ring ${name} in the store is not JSON`, { cause: e });
  }
  const parsed = docSchema.safeParse(json);
  if (!parsed.success) throw new KeyRingError(`the key ring ${name} in the store is malformed`);
  return parsed.data;
}

export async function readRing(store: CredentialStore, name: string): Promise<StoredRing | null> {
  const raw = await store.getKeyMaterial(name);
  return raw === null ? null : { raw, doc: parseDoc(name, raw) };
}

function newSlot(spec: RingSpec, now: number): RingSlot {
  const { pem, notAfter } = spec.generate(now);
  return notAfter === undefined ? { pem, createdAt: now } : { pem, createdAt: now, notAfter };
}

/** Reads the ring, creating it (current + next) when absent; the first replica to write it wins. */
export async function ensureRing(spec: RingSpec): Promise<StoredRing> {
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const found = await readRing(spec.store, spec.name);
    if (found) return found;
    const now = seconds(spec.clock);
    const legacy = spec.legacyName ? await spec.store.getKeyMaterial(spec.legacyName) : null;
    const doc: RingDoc = {
      v: 1,
      sequence: await nextBundleSequence(spec),
      current: legacy
        ? { pem: legacy, createdAt: now, activatedAt: now }
        : { ...newSlot(spec, now), activatedAt: now },
      next: newSlot(spec, now),
      retired: [],
    };
    const raw = JSON.stringify(doc);
    // An adopted key leaves its old place in the same step: were the ring lost later, the key it retired
    // long ago must not come back as the current key.
    const alsoDelete = legacy ? spec.legacyName : undefined;
    if (await spec.store.swapKeyMaterial(spec.name, null, raw, { alsoDelete })) return { raw, doc };
  }
  throw new KeyRingError(`could not create the key ring ${spec.name}: too many concurrent writers`);
}

/**
 * The bundle sequence for a ring write: one store counter for both rings, floored at the time in
 * milliseconds, so that it keeps increasing even if Redis lost the counter (and the rings with it).
 */
function nextBundleSequence(spec: RingSpec): Promise<number> {
  return spec.store.nextSequence(BUNDLE_SEQUENCE, Math.floor(spec.clock()));
}

/** The ring without retired keys whose retention has passed; null when none has. */
export function pruned(doc: RingDoc, now: number): RingDoc | null {
  const kept = doc.retired.filter((s) => (s.retainUntil ?? 0) > now);
  return kept.length === doc.retired.length ? null : { ...doc, retired: kept };
}

/**
 * The ring after one rotation: next signs, current retires (published until `now + retainSeconds`). Throws
 * rather than drop a retired key whose credentials may still be alive.
 */
export function rotated(doc: RingDoc, now: number, retainSeconds: number, spec: RingSpec): RingDoc {
  const retiring: RingSlot = { ...doc.current, retainUntil: now + retainSeconds };
  const retired = [retiring, ...(pruned(doc, now) ?? doc).retired];
  if (retired.length > MAX_RETIRED) {
    throw new KeyRingError(
      `the key ring ${spec.name} already holds ${MAX_RETIRED} retired keys still in use`,
    );
  }
  return { ...doc, current: { ...doc.next, activatedAt: now }, next: newSlot(spec, now), retired };
}

/** The ring with its next key replaced by a fresh one (published from now on). */
export function withFreshNext(doc: RingDoc, now: number, spec: RingSpec): RingDoc {
  return { ...doc, next: newSlot(spec, now) };
}

/**
 * The ring after a compromise: every key it held is dropped from publication at once (what they signed stops
 * verifying), and a fresh current and next key are generated. The leaked document held the next key too.
 */
export function replaced(doc: RingDoc, now: number, spec: RingSpec): RingDoc {
  return {
    ...doc,
    current: { ...newSlot(spec, now), activatedAt: now },
    next: newSlot(spec, now),
    retired: [],
  };
}

export interface RingUpdate extends StoredRing {
  changed: boolean;
}

/**
 * Applies `change` to the stored ring by compare-and-set, re-reading and re-deciding on a conflict. `change`
 * returns null for "nothing to do" (it is given the ring as it is now, so that a rotation another replica
 * already made is seen as done). Each write takes a new bundle sequence.
 */
export async function updateRing(
  spec: RingSpec,
  change: (doc: RingDoc, now: number) => RingDoc | null,
): Promise<RingUpdate> {
  for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
    const stored = await ensureRing(spec);
    const now = seconds(spec.clock);
    const wanted = change(stored.doc, now);
    if (wanted === null) return { ...stored, changed: false };
    const doc: RingDoc = { ...wanted, sequence: await nextBundleSequence(spec) };
    const raw = JSON.stringify(doc);
    if (await spec.store.swapKeyMaterial(spec.name, stored.raw, raw)) return { raw, doc, changed: true };
  }
  throw new KeyRingError(`could not update the key ring ${spec.name}: too many concurrent writers`);
}

export type SlotState = 'current' | 'next' | 'retired';

export interface RingMember<T> {
  state: SlotState;
  value: T;
  createdAt: number;
  activatedAt?: number | undefined;
  retainUntil?: number | undefined;
  notAfter?: number | undefined;
}

/** The keys a replica signs and verifies with, as the store holds them. */
export interface Ring<T> {
  /** False for a key given as a file: it cannot be rotated by Writ. */
  readonly rotatable: boolean;
  /** The bundle sequence of the version held (0 for a fixed key). */
  readonly sequence: number;
  current(): T;
  /** Every key relying parties must know: current, next, then retired ones. */
  published(): readonly T[];
  members(): readonly RingMember<T>[];
  /** Re-reads the ring; true when it changed. */
  refresh(): Promise<boolean>;
  /** Called after the ring held changed. */
  onChange(listener: () => void): () => void;
  close(): void;
}

/** A key given by the operator (a PEM file): one key, never rotated here. */
export class FixedRing<T> implements Ring<T> {
  readonly rotatable = false;
  readonly sequence = 0;
  readonly #member: RingMember<T>;

  constructor(value: T, createdAt: number) {
    this.#member = { state: 'current', value, createdAt, activatedAt: createdAt };
  }

  current(): T {
    return this.#member.value;
  }

  published(): readonly T[] {
    return [this.#member.value];
  }

  members(): readonly RingMember<T>[] {
    return [this.#member];
  }

  async refresh(): Promise<boolean> {
    return false;
  }

  onChange(): () => void {
    return () => {};
  }

  close(): void {}
}

export interface LiveRingOptions<T> {
  spec: RingSpec;
  /** Turns a stored key into what is used; a failure for the current key keeps the previous version. */
  decode(slot: RingSlot): Promise<T>;
  logger: Logger;
  /** How often the store is re-read (another replica or the worker may have rotated); 0: never. */
  refreshMs: number;
  /**
   * After this long without a successful read of the ring, the current key is no longer handed out (issuance
   * fails closed with 503): the ring may have rotated, and the key held may no longer be published. 0: never.
   */
  staleAfterMs?: number | undefined;
}

/** A ring shared through the store, re-read periodically and after every rotation this replica makes. */
export class LiveRing<T> implements Ring<T> {
  readonly rotatable = true;
  readonly #opts: LiveRingOptions<T>;
  readonly #decoded = new Map<string, T>();
  readonly #listeners = new Set<() => void>();
  #raw = '';
  #members: RingMember<T>[] = [];
  #sequence = 0;
  #timer: NodeJS.Timeout | undefined;
  #failing = false;
  /** When the ring was last read successfully (monotonic milliseconds: lag is real time, whatever the clock). */
  #lastRead = 0;
  readonly #reads = new FreshRun(() => this.#refresh());

  private constructor(opts: LiveRingOptions<T>) {
    this.#opts = opts;
  }

  /** Loads (creating the ring when absent); throws when the current key cannot be used. */
  static async open<T>(opts: LiveRingOptions<T>): Promise<LiveRing<T>> {
    const ring = new LiveRing(opts);
    const read = performance.now();
    await ring.#apply(await ensureRing(opts.spec));
    ring.#lastRead = read;
    if (opts.refreshMs > 0) {
      ring.#timer = setInterval(() => {
        ring.refresh().catch(() => undefined);
      }, opts.refreshMs);
      ring.#timer.unref();
    }
    return ring;
  }

  get sequence(): number {
    return this.#sequence;
  }

  current(): T {
    const first = this.#members[0];
    if (!first) throw new KeyRingError('the key ring is not loaded');
    const staleAfter = this.#opts.staleAfterMs ?? 0;
    if (staleAfter > 0 && performance.now() - this.#lastRead > staleAfter) {
      throw new WritError('ERR_STORE_UNAVAILABLE', 'the signing keys could not be re-read from the store');
    }
    return first.value;
  }

  published(): readonly T[] {
    return this.#members.map((m) => m.value);
  }

  members(): readonly RingMember<T>[] {
    return this.#members;
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /**
   * Re-reads the ring. One read at a time; a caller arriving while one runs joins the next read (it may want
   * to see a rotation written after the read under way began).
   */
  refresh(): Promise<boolean> {
    return this.#reads.run();
  }

  async #refresh(): Promise<boolean> {
    const { spec, logger } = this.#opts;
    try {
      const started = performance.now();
      const stored = await readRing(spec.store, spec.name);
      if (!stored) {
        // The ring is gone (Redis lost it): the next write creates a new one, which is followed then.
        throw new KeyRingError(`the key ring ${spec.name} is missing from the store`);
      }
      const changed = stored.raw === this.#raw ? false : await this.#apply(stored);
      this.#lastRead = started;
      if (this.#failing) logger.info({ ring: spec.name }, 'key ring readable again');
      this.#failing = false;
      return changed;
    } catch (err) {
      // The keys held stay in use for a while (retired keys stay published longer than this lag); past
      // staleAfterMs, current() refuses to hand out the signing key.
      if (!this.#failing)
        logger.warn({ err, ring: spec.name }, 'cannot re-read the key ring; keeping the keys held for now');
      this.#failing = true;
      return false;
    }
  }

  async #apply(stored: StoredRing): Promise<boolean> {
    const { doc } = stored;
    // Reads do not overlap, so an older ring means the store went back (restored, or lost and recreated):
    // the store is what every replica and relying party sees, so it is followed.
    if (doc.sequence < this.#sequence) {
      this.#opts.logger.warn(
        { ring: this.#opts.spec.name, held: this.#sequence, stored: doc.sequence },
        'the key ring in the store is older than the one held; following the store',
      );
    }
    const slots: Array<[SlotState, RingSlot]> = [
      ['current', doc.current],
      ['next', doc.next],
      ...doc.retired.map((s): [SlotState, RingSlot] => ['retired', s]),
    ];
    const members: RingMember<T>[] = [];
    const decoded = new Map<string, T>();
    for (const [state, slot] of slots) {
      let value = this.#decoded.get(slot.pem);
      if (value === undefined) {
        try {
          value = await this.#opts.decode(slot);
        } catch (err) {
          // Without its current key the ring cannot be used; a bad next or retired key is left out.
          if (state === 'current') throw err;
          this.#opts.logger.error(
            { err, ring: this.#opts.spec.name, state },
            'a key of the ring cannot be used',
          );
          continue;
        }
      }
      decoded.set(slot.pem, value);
      members.push({
        state,
        value,
        createdAt: slot.createdAt,
        activatedAt: slot.activatedAt,
        retainUntil: slot.retainUntil,
        notAfter: slot.notAfter,
      });
    }
    this.#decoded.clear();
    for (const [pem, value] of decoded) this.#decoded.set(pem, value);
    this.#members = members;
    this.#raw = stored.raw;
    this.#sequence = doc.sequence;
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch (err) {
        this.#opts.logger.error({ err, ring: this.#opts.spec.name }, 'a key ring listener failed');
      }
    }
    return true;
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#listeners.clear();
  }
}
