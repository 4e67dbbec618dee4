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
export async function callRedis<T>(op: () => Promise<T>, timeoutMs: number): Promise<T> {
  const pending = new Promise<T>((resolve) => resolve(op()));
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from redis within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([pending, timeout]);
  } catch (cause) {
    pending.catch(() => {}); // settles later, if ever; already reported
    throw redisError(cause);
  } finally {
    clearTimeout(timer);
  }
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
