// Fail-closed Redis calls for the audit and admin adapters: a timeout, and one mapping of client errors to
// WritError (the same rules as the credential store's).
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { WritError } from '../../errors.ts';

// Reply errors that mean "Redis cannot serve right now" rather than "this command is wrong".
const UNAVAILABLE_REPLIES =
  /^(LOADING|READONLY|OOM|BUSY|MASTERDOWN|MISCONF|NOREPLICAS|CLUSTERDOWN|TRYAGAIN)\b/;

/** ERR_STORE_UNAVAILABLE for anything that means "Redis cannot answer"; server_error for a refused command. */
export function redisError(cause: unknown): WritError {
  if (cause instanceof WritError) return cause;
  if (cause instanceof Error && cause.name === 'ReplyError' && !UNAVAILABLE_REPLIES.test(cause.message)) {
    return new WritError('server_error', undefined, { cause });
  }
  return new WritError('ERR_STORE_UNAVAILABLE', undefined, { cause });
}

/**
 * Runs `op`, failing with ERR_STORE_UNAVAILABLE when it gets no answer within `timeoutMs`. A command that timed
 * out may still run later: callers treat the error as "nothing was returned", never as "nothing happened".
 */
export function callRedis<T>(op: () => Promise<T>, timeoutMs: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const waiting = deadlines(timeoutMs).add(reject);
    let pending: Promise<T>;
    try {
      pending = op();
    } catch (cause) {
      waiting.settled = true;
      reject(redisError(cause));
      return;
    }
    pending.then(
      (value) => {
        if (waiting.settled) return; // timed out already: reported
        waiting.settled = true;
        resolve(value);
      },
      (cause: unknown) => {
        if (waiting.settled) return;
        waiting.settled = true;
        reject(redisError(cause));
      },
    );
  });
}

interface Waiting {
  readonly deadline: number;
  readonly reject: (cause: WritError) => void;
  settled: boolean;
}

/**
 * The commands waiting under one timeout, in the order they were sent. Their deadlines (send time + the same
 * timeout, on the monotonic clock) are therefore in order too: one timer, armed for the oldest unsettled one,
 * serves them all, where a timer and a Promise.race per command cost ~6 % of the broker's main thread under load.
 */
class Deadlines {
  readonly #timeoutMs: number;
  #queue: Waiting[] = [];
  #head = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  add(reject: (cause: WritError) => void): Waiting {
    const waiting: Waiting = { deadline: performance.now() + this.#timeoutMs, reject, settled: false };
    this.#drop();
    this.#queue.push(waiting);
    this.#timer ??= this.#arm(this.#timeoutMs);
    return waiting;
  }

  // Unreferenced: a command in flight is held by its connection's socket; settled ones must not hold the process.
  #arm(ms: number): NodeJS.Timeout {
    return setTimeout(() => this.#expire(), ms).unref();
  }

  /** Forgets the settled commands at the front (most replies come in order). */
  #drop(): void {
    const queue = this.#queue;
    while (this.#head < queue.length && (queue[this.#head] as Waiting).settled) this.#head++;
    if (this.#head === queue.length) {
      this.#queue = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > queue.length) {
      this.#queue = queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #expire(): void {
    this.#timer = undefined;
    const now = performance.now();
    const queue = this.#queue;
    while (this.#head < queue.length) {
      const waiting = queue[this.#head] as Waiting;
      if (!waiting.settled) {
        // Timers may fire a little early; 1 ms of slack keeps a command from being failed before its time.
        if (waiting.deadline > now + 1) break;
        waiting.settled = true;
        waiting.reject(redisError(new Error(`no answer from redis within ${this.#timeoutMs} ms`)));
      }
      this.#head++;
    }
    this.#drop();
    const next = this.#queue[this.#head];
    if (next !== undefined) this.#timer = this.#arm(Math.max(1, Math.ceil(next.deadline - now)));
    else if (byTimeout.get(this.#timeoutMs) === this) byTimeout.delete(this.#timeoutMs); // idle: forgotten
  }
}

const byTimeout = new Map<number, Deadlines>();

function deadlines(timeoutMs: number): Deadlines {
  let d = byTimeout.get(timeoutMs);
  if (d === undefined) {
    d = new Deadlines(timeoutMs);
    byTimeout.set(timeoutMs, d);
  }
  return d;
}

/** A stored value that does not parse: server_error, with what was wrong only in the cause. */
export function malformed(what: string, cause?: unknown): WritError {
  return new WritError('server_error', undefined, {
    cause: new Error(`stored ${what} is malformed`, { cause }),
  });
}

/**
 * Registers Lua scripts (files `<name>-<numKeys>.lua` next to `base`) on the caller's client under the given
 * command names; redefining a command on the same client (a second adapter) is harmless.
 */
export function defineScripts<N extends string>(
  redis: Redis,
  base: URL,
  scripts: Record<N, string>,
): Record<N, (...args: (string | number)[]) => Promise<unknown>> {
  for (const [command, file] of Object.entries<string>(scripts)) {
    const numberOfKeys = Number(/-(\d+)\.lua$/.exec(file)?.[1]);
    if (!Number.isSafeInteger(numberOfKeys)) throw new TypeError(`script file ${file} names no key count`);
    const lua = readFileSync(new URL(file, base), 'utf8');
    redis.defineCommand(command, { lua, numberOfKeys });
  }
  return redis as unknown as Record<N, (...args: (string | number)[]) => Promise<unknown>>;
}
