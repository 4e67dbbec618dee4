// The revocation feed hub: one tail of the store's event stream per process, fanned out to SSE subscribers.
import type { Logger } from 'pino';
import type { CredentialStore, RevocationEvent } from '../store/types.ts';

export type FeedListener = (events: RevocationEvent[]) => void;

/** Orders feed ids `<ms>-<seq>`. */
export function compareEventIds(a: string, b: string): number {
  const [am = '0', as = '0'] = a.split('-');
  const [bm = '0', bs = '0'] = b.split('-');
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

export const EVENT_ID_PATTERN = /^\d{1,20}-\d{1,20}$/;
const MAX_U64 = 2n ** 64n - 1n;

/** A feed position as Redis streams write them: two unsigned 64-bit integers. */
export function isEventId(value: string): boolean {
  if (!EVENT_ID_PATTERN.test(value)) return false;
  const [ms = '', seq = ''] = value.split('-');
  return BigInt(ms) <= MAX_U64 && BigInt(seq) <= MAX_U64;
}

export class RevocationHub {
  readonly #store: CredentialStore;
  readonly #logger: Logger;
  readonly #listeners = new Set<FeedListener>();
  /** In-process followers (the CRL): they hear every batch but are no subscribers of the feed's capacity. */
  readonly #internal = new Set<FeedListener>();
  readonly #streams = new Set<{ end(): unknown }>();
  readonly #byAddress = new Map<string, number>();
  readonly #abort = new AbortController();
  #loop: Promise<void> | undefined;

  constructor(opts: { store: CredentialStore; logger: Logger }) {
    this.#store = opts.store;
    this.#logger = opts.logger;
  }

  get subscribers(): number {
    return this.#listeners.size - this.#internal.size;
  }

  start(): void {
    this.#loop ??= this.#tail();
  }

  subscribe(listener: FeedListener, opts: { internal?: boolean } = {}): () => void {
    this.#listeners.add(listener);
    if (opts.internal) this.#internal.add(listener);
    return () => {
      this.#internal.delete(listener);
      return this.#listeners.delete(listener);
    };
  }

  /**
   * Tracks an open SSE response (so that shutdown can end it instead of waiting for the client) and counts
   * it against its source address. The returned function untracks it; calling it twice is harmless.
   */
  track(stream: { end(): unknown }, address: string): () => void {
    this.#streams.add(stream);
    this.#byAddress.set(address, (this.#byAddress.get(address) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#streams.delete(stream);
      const n = (this.#byAddress.get(address) ?? 1) - 1;
      if (n <= 0) this.#byAddress.delete(address);
      else this.#byAddress.set(address, n);
    };
  }

  subscribersFrom(address: string): number {
    return this.#byAddress.get(address) ?? 0;
  }

  endStreams(): void {
    for (const stream of this.#streams) stream.end();
    this.#streams.clear();
  }

  async #tail(): Promise<void> {
    const signal = this.#abort.signal;
    let cursor: string | undefined;
    let failures = 0;
    while (!signal.aborted) {
      try {
        cursor ??= await this.#store.lastRevocationId();
        const events = await this.#store.waitForRevocations(cursor, 2_000, signal);
        failures = 0;
        if (events.length === 0) continue;
        cursor = events[events.length - 1]!.id;
        for (const listener of this.#listeners) {
          try {
            listener(events);
          } catch (err) {
            this.#logger.warn({ err }, 'revocation feed listener failed');
          }
        }
      } catch (err) {
        if (signal.aborted) break;
        failures += 1;
        if (failures === 1) this.#logger.warn({ err }, 'revocation feed tail failing; retrying');
        await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** failures, 2_000)));
      }
    }
  }

  async close(): Promise<void> {
    this.#abort.abort();
    this.endStreams();
    this.#listeners.clear();
    this.#internal.clear();
    await this.#loop;
  }
}
