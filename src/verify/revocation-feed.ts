// The client of the broker's revocation stream (SSE over fetch): keeps a RevocationSet current, knows when it is not.
import { z } from 'zod';
import { VerifyError } from './errors.ts';
import { type RevocationEvent, type RevocationSet, revocationEventSchema } from './revocation-set.ts';
import { type SseMessage, SseParser } from './sse-parser.ts';

/** A pino-compatible logger: each method takes structured fields, then a message. All are optional. */
export interface VerifierLogger {
  debug?(fields: Record<string, unknown>, message: string): void;
  info?(fields: Record<string, unknown>, message: string): void;
  warn?(fields: Record<string, unknown>, message: string): void;
  error?(fields: Record<string, unknown>, message: string): void;
}

export interface RevocationFeedOptions {
  url: string;
  fetch: typeof fetch;
  /** Epoch milliseconds. */
  now: () => number;
  revocations: RevocationSet;
  maxStalenessMs: number;
  clockToleranceSec: number;
  /** Reconnection delay before the server sends `retry`. */
  initialRetryMs: number;
  /** Cap of the exponential backoff (before jitter). */
  maxRetryMs: number;
  logger?: VerifierLogger | undefined;
  onRevocation?: ((event: RevocationEvent) => void) | undefined;
  /** For tests; `Math.random` by default. */
  random?: (() => number) | undefined;
}

/**
 * `idle` before start; `connecting` until the response headers arrive; `catching_up` while the server
 * replays what this client missed; `live` after `ready`; `waiting` between connections; `closed` for good.
 */
export type FeedState = 'idle' | 'connecting' | 'catching_up' | 'live' | 'waiting' | 'closed';

export interface FeedStatus {
  state: FeedState;
  /** True when verification may rely on the revocation state (connected, caught up, not silent too long). */
  current: boolean;
  /** The id a reconnection resumes from ('' before any). */
  lastEventId: string;
  /** When the last valid message (revocation, ready or heartbeat) arrived, epoch ms; null before any. */
  lastMessageAt: number | null;
  /** The cursor of the last `ready`. */
  cursor: string | null;
  /** Successful connections (HTTP 200 event streams), including the first. */
  connects: number;
  revocationEvents: number;
  /** Events skipped because their JSON or shape was wrong. */
  malformedEvents: number;
  revokedCredentials: number;
  endedTasks: number;
}

/** The server may lower the delay, but a peer saying `retry: 0` must not make the client spin. */
const MIN_RETRY_MS = 50;
const PRUNE_EVERY_MS = 60_000;
/** Backoff exponent cap, so that 2 ** n stays finite whatever the failure count. */
const MAX_EXPONENT = 20;

const readySchema = z.object({ cursor: z.string() });
const heartbeatSchema = z.object({ time: z.number() });

class FeedError extends Error {
  override readonly name = 'FeedError';
}

function parseData<T>(schema: z.ZodType<T>, data: string): T | undefined {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return undefined;
  }
  const result = schema.safeParse(json);
  return result.success ? result.data : undefined;
}

function describe(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

const EVENT_STREAM = /^text\/event-stream[\t ]*(;|$)/i;

export class RevocationFeed {
  readonly #o: RevocationFeedOptions;
  readonly #random: () => number;
  #state: FeedState = 'idle';
  #caughtUp = false;
  #lastMessageAt = Number.NEGATIVE_INFINITY;
  #attemptStartedAt = 0;
  #lastEventId = '';
  #cursor: string | null = null;
  #retryMs: number;
  #failures = 0;
  #connection: AbortController | undefined;
  #wake: (() => void) | undefined;
  #ticker: NodeJS.Timeout | undefined;
  #lastPruneAt: number;
  readonly #waiters = new Set<{ resolve: () => void; reject: (e: Error) => void }>();
  #connects = 0;
  #revocationEvents = 0;
  #malformed = 0;

  constructor(options: RevocationFeedOptions) {
    this.#o = options;
    this.#random = options.random ?? Math.random;
    this.#retryMs = Math.max(MIN_RETRY_MS, options.initialRetryMs);
    this.#lastPruneAt = options.now();
  }

  /** Connects in the background and keeps reconnecting until {@link close}. Idempotent. */
  start(): void {
    if (this.#state !== 'idle') return;
    this.#state = 'connecting';
    // The watchdog notices a silent connection (a half-open socket, a hung proxy) and replaces it.
    const tickMs = Math.max(10, Math.min(1000, Math.floor(this.#o.maxStalenessMs / 4)));
    this.#ticker = setInterval(() => this.#tick(), tickMs);
    this.#ticker.unref();
    this.#run().catch((e: unknown) => {
      // Unreachable unless there is a bug; the feed then stays stale, which fails closed.
      this.#log('error', { err: describe(e) }, 'revocation feed stopped');
    });
  }

  /**
   * O(1), synchronous: caught up on the current connection, and a message arrived within
   * `maxStalenessMs`. Heartbeats come after every event on the same stream, so a recent one proves that
   * nothing revoked before it is missing.
   */
  isCurrent(): boolean {
    return this.#caughtUp && this.#o.now() - this.#lastMessageAt <= this.#o.maxStalenessMs;
  }

  /** Resolves at the next `ready` (at once when current); rejects after `timeoutMs` or on close. */
  waitCurrent(timeoutMs: number): Promise<void> {
    if (this.#state === 'closed') return Promise.reject(closedError());
    if (this.isCurrent()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      // Not unref'd on purpose: a process awaiting start() must not exit while the broker is unreachable.
      const timer = setTimeout(() => {
        this.#waiters.delete(waiter);
        reject(
          new VerifyError(
            'ERR_FEED_STALE',
            `the revocation feed did not become current within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const waiter = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e: Error) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.#waiters.add(waiter);
    });
  }

  status(): FeedStatus {
    return {
      state: this.#state,
      current: this.isCurrent(),
      lastEventId: this.#lastEventId,
      lastMessageAt: Number.isFinite(this.#lastMessageAt) ? this.#lastMessageAt : null,
      cursor: this.#cursor,
      connects: this.#connects,
      revocationEvents: this.#revocationEvents,
      malformedEvents: this.#malformed,
      revokedCredentials: this.#o.revocations.credentialCount,
      endedTasks: this.#o.revocations.taskCount,
    };
  }

  /** Aborts the connection, clears every timer and rejects pending waiters. Idempotent. */
  close(): void {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#caughtUp = false;
    if (this.#ticker) clearInterval(this.#ticker);
    this.#ticker = undefined;
    this.#connection?.abort(new FeedError('closed'));
    this.#connection = undefined;
    this.#wake?.();
    const error = closedError();
    for (const waiter of this.#waiters) waiter.reject(error);
    this.#waiters.clear();
  }

  // TS narrows fields across awaits; a method call reads the state as it is now.
  #closed(): boolean {
    return this.#state === 'closed';
  }

  async #run(): Promise<void> {
    while (!this.#closed()) {
      const controller = new AbortController();
      this.#connection = controller;
      this.#attemptStartedAt = this.#o.now();
      this.#state = 'connecting';
      let failure: unknown;
      try {
        await this.#connect(controller.signal);
      } catch (e) {
        failure = controller.signal.aborted ? controller.signal.reason : e;
      } finally {
        this.#caughtUp = false;
        if (this.#connection === controller) this.#connection = undefined;
      }
      if (this.#closed()) return;
      const delay = this.#nextDelay();
      this.#log(
        'warn',
        { err: failure === undefined ? 'stream ended' : describe(failure), retryInMs: Math.round(delay) },
        'revocation feed disconnected; failing closed until it is current again',
      );
      this.#state = 'waiting';
      await this.#wait(delay);
    }
  }

  async #connect(signal: AbortSignal): Promise<void> {
    const headers: Record<string, string> = { accept: 'text/event-stream', 'cache-control': 'no-store' };
    if (this.#lastEventId !== '') headers['last-event-id'] = this.#lastEventId;
    const res = await this.#o.fetch(this.#o.url, { headers, signal });
    if (res.status !== 200 || !EVENT_STREAM.test(res.headers.get('content-type') ?? '') || !res.body) {
      await res.body?.cancel().catch(() => {});
      throw new FeedError(
        res.status !== 200 ? `unexpected http status ${res.status}` : 'response is not an event stream',
      );
    }
    this.#connects++;
    this.#state = 'catching_up';
    this.#log('debug', { lastEventId: this.#lastEventId }, 'revocation feed connected');
    const parser = new SseParser(
      {
        onMessage: (m) => this.#onMessage(m),
        onRetry: (ms) => {
          this.#retryMs = Math.max(MIN_RETRY_MS, ms);
        },
      },
      this.#lastEventId,
    );
    const reader = res.body.getReader();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        parser.push(value);
        this.#lastEventId = parser.lastEventId;
      }
      parser.end();
    } catch (e) {
      await reader.cancel().catch(() => {});
      throw e;
    }
  }

  #onMessage(m: SseMessage): void {
    switch (m.event) {
      case 'revocation': {
        const event = parseData(revocationEventSchema, m.data);
        if (event === undefined) {
          this.#skip(m);
          return;
        }
        this.#o.revocations.apply(event, Math.floor(this.#o.now() / 1000));
        this.#revocationEvents++;
        this.#touch();
        if (this.#o.onRevocation) {
          try {
            this.#o.onRevocation(event);
          } catch (e) {
            this.#log('error', { err: describe(e) }, 'onRevocation hook threw');
          }
        }
        return;
      }
      case 'ready': {
        const ready = parseData(readySchema, m.data);
        if (ready === undefined) {
          this.#skip(m);
          return;
        }
        this.#cursor = ready.cursor;
        this.#touch();
        this.#caughtUp = true;
        this.#state = 'live';
        this.#failures = 0;
        this.#log('info', { cursor: ready.cursor }, 'revocation feed is current');
        for (const waiter of this.#waiters) waiter.resolve();
        this.#waiters.clear();
        return;
      }
      case 'heartbeat': {
        if (parseData(heartbeatSchema, m.data) === undefined) {
          this.#skip(m);
          return;
        }
        this.#touch();
        return;
      }
      default:
        this.#log('debug', { event: m.event.slice(0, 64) }, 'revocation feed: unknown event ignored');
    }
  }

  #log(level: keyof VerifierLogger, fields: Record<string, unknown>, message: string): void {
    try {
      this.#o.logger?.[level]?.(fields, message);
    } catch {
      // a logger that throws must not stop the feed
    }
  }

  #skip(m: SseMessage): void {
    this.#malformed++;
    // The data is not logged: it is untrusted and unbounded. The id says where to look on the broker.
    this.#log(
      'error',
      { event: m.event, id: m.lastEventId.slice(0, 128), malformedEvents: this.#malformed },
      'revocation feed: malformed event skipped',
    );
  }

  #touch(): void {
    this.#lastMessageAt = this.#o.now();
  }

  #tick(): void {
    const now = this.#o.now();
    const connection = this.#connection;
    // Silent for too long, or connected without `ready` for too long (messages flowing but never current):
    // either way start over; Last-Event-ID keeps whatever progress was made.
    const since = this.#caughtUp
      ? Math.max(this.#lastMessageAt, this.#attemptStartedAt)
      : this.#attemptStartedAt;
    if (connection && now - since > this.#o.maxStalenessMs) {
      this.#caughtUp = false;
      connection.abort(new FeedError(`not current for more than ${this.#o.maxStalenessMs} ms`));
    }
    if (now - this.#lastPruneAt >= PRUNE_EVERY_MS) {
      this.#lastPruneAt = now;
      // Kept while a token it covers could still pass `exp` with the clock tolerance.
      this.#o.revocations.prune(Math.floor(now / 1000) - this.#o.clockToleranceSec - 1);
    }
  }

  /** Exponential from the server's `retry`, capped, plus up to 50% jitter (never sooner than `retry`). */
  #nextDelay(): number {
    const exponent = Math.min(this.#failures, MAX_EXPONENT);
    this.#failures++;
    const base = Math.min(this.#o.maxRetryMs, this.#retryMs * 2 ** exponent);
    return base * (1 + 0.5 * this.#random());
  }

  #wait(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      timer.unref();
      this.#wake = wake;
    });
  }
}

function closedError(): VerifyError {
  return new VerifyError('ERR_FEED_STALE', 'the verifier is closed');
}
