// callRedis: one shared deadline per timeout for all commands in flight; every command settles exactly once.
import { describe, expect, it } from 'vitest';
import { WritError } from '../../../src/errors.ts';
import { callRedis } from '../../../src/store/redis/redis-call.ts';

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('callRedis', () => {
  it('passes a reply through', async () => {
    await expect(callRedis(async () => 'OK', 50)).resolves.toBe('OK');
  });

  it('maps a thrown error and a rejected one to WritError codes', async () => {
    const sync = callRedis(() => {
      throw new Error('connection is closed');
    }, 50);
    await expect(sync).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    const reply = Object.assign(new Error('ERR wrong number of arguments'), { name: 'ReplyError' });
    await expect(callRedis(() => Promise.reject(reply), 50)).rejects.toMatchObject({ code: 'server_error' });
    const loading = Object.assign(new Error('LOADING Redis is loading'), { name: 'ReplyError' });
    await expect(callRedis(() => Promise.reject(loading), 50)).rejects.toMatchObject({
      code: 'ERR_STORE_UNAVAILABLE',
    });
  });

  it('fails a command that gets no answer, and ignores its late answer', async () => {
    const late = deferred<string>();
    const call = callRedis(() => late.promise, 30);
    const outcome = await call.then(
      () => 'resolved',
      (e: unknown) => e,
    );
    expect(outcome).toBeInstanceOf(WritError);
    expect((outcome as WritError).code).toBe('ERR_STORE_UNAVAILABLE');
    late.resolve('too late'); // must not throw or settle anything twice
    await sleep(5);
  });

  it('times out only the unanswered commands among many, answered in any order', async () => {
    const replies = Array.from({ length: 50 }, () => deferred<number>());
    const calls = replies.map((d) => callRedis(() => d.promise, 40));
    // Answer every command but the 10th and the 37th, newest first.
    for (let i = replies.length - 1; i >= 0; i--) if (i !== 10 && i !== 37) replies[i]?.resolve(i);
    const settled = await Promise.allSettled(calls);
    settled.forEach((s, i) => {
      if (i === 10 || i === 37) {
        expect(s.status).toBe('rejected');
        expect((s as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
      } else {
        expect(s).toEqual({ status: 'fulfilled', value: i });
      }
    });
  });

  it('never fails a command before its own deadline while older ones time out', async () => {
    const first = deferred<string>();
    const a = callRedis(() => first.promise, 60);
    await sleep(40);
    const second = deferred<string>();
    const b = callRedis(() => second.promise, 60);
    await expect(a).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    // `a` timed out about 20 ms ago; `b` has ~40 ms left and is answered now.
    second.resolve('in time');
    await expect(b).resolves.toBe('in time');
  });

  it('keeps separate deadlines for separate timeouts', async () => {
    const slow = deferred<string>();
    const long = callRedis(() => slow.promise, 200);
    const short = callRedis(() => new Promise<string>(() => {}), 20);
    await expect(short).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    slow.resolve('long wait answered');
    await expect(long).resolves.toBe('long wait answered');
  });
});
