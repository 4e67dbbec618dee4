import { afterEach, describe, expect, it, vi } from 'vitest';
import { RevocationFeed } from '../../../src/verify/revocation-feed.ts';
import {
  type RevocationEvent,
  RevocationSet,
  revocationEventSchema,
} from '../../../src/verify/revocation-set.ts';

const event = (over: Partial<RevocationEvent> & Pick<RevocationEvent, 'kind'>): RevocationEvent =>
  revocationEventSchema.parse({
    id: '1-0',
    credential: 'jti-1',
    task: 'task-1',
    expiresAt: 1000,
    reason: 'admin',
    revokedAt: 900,
    ...over,
  });

describe('RevocationSet', () => {
  it('keeps credential ids and tasks apart', () => {
    const set = new RevocationSet();
    set.apply(event({ kind: 'credential' }));
    expect(set.hasCredential('jti-1')).toBe(true);
    expect(set.hasTask('task-1')).toBe(false);
    set.apply(event({ kind: 'task', task: 'task-2' }));
    expect(set.hasTask('task-2')).toBe(true);
    expect(set.hasCredential('task-2')).toBe(false);
  });

  it('prunes what expired before the bound; a later event can only extend an entry', () => {
    const set = new RevocationSet();
    set.apply(event({ kind: 'credential', expiresAt: 2000 }));
    set.apply(event({ kind: 'credential', expiresAt: 1000 }));
    set.apply(event({ kind: 'task', expiresAt: 1500 }));
    expect(set.prune(1500)).toBe(0);
    expect(set.prune(1501)).toBe(1);
    expect([set.hasCredential('jti-1'), set.hasTask('task-1')]).toEqual([true, false]);
    expect(set.prune(2001)).toBe(1);
    expect(set.credentialCount + set.taskCount).toBe(0);
  });

  it('the schema refuses events it cannot act on', () => {
    const good = {
      id: '1-0',
      kind: 'credential',
      credential: 'j',
      task: 't',
      expiresAt: 1,
      reason: 'r',
      revokedAt: 1,
    };
    expect(revocationEventSchema.safeParse(good).success).toBe(true);
    expect(revocationEventSchema.safeParse({ ...good, extra: true }).success).toBe(true);
    for (const bad of [
      { ...good, credential: undefined },
      { ...good, credential: '' },
      { ...good, kind: 'spiffe_id' },
      { ...good, kind: 'task', task: '' },
      { ...good, expiresAt: '1' },
      { ...good, expiresAt: 1.5 },
      { ...good, credentialType: 'pgp' },
      { ...good, id: undefined },
    ]) {
      expect(revocationEventSchema.safeParse(bad).success).toBe(false);
    }
  });
});

describe('RevocationFeed reconnection backoff', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function streamResponse(text: string): Response {
    return new Response(text, {
      status: 200,
      headers: { 'content-type': 'text/event-stream; charset=utf-8' },
    });
  }

  it('doubles from the server retry up to the cap, plus jitter, and starts over after `ready`', async () => {
    vi.useFakeTimers();
    const calls: Array<{ at: number; lastEventId: string | null }> = [];
    let serve: () => Response = () => {
      throw new TypeError('fetch failed');
    };
    const fetchImpl = async (_url: string | URL | Request, init?: RequestInit): Promise<Response> => {
      calls.push({ at: Date.now(), lastEventId: new Headers(init?.headers).get('last-event-id') });
      return serve();
    };
    const feed = new RevocationFeed({
      url: 'http://broker.test/v1/revocations/stream',
      fetch: fetchImpl as typeof fetch,
      now: Date.now,
      revocations: new RevocationSet(),
      maxStalenessMs: 3_600_000,
      clockToleranceSec: 5,
      initialRetryMs: 100,
      maxRetryMs: 400,
      random: () => 1,
    });
    try {
      feed.start();
      await vi.advanceTimersByTimeAsync(100 * 1.5 + 200 * 1.5 + 400 * 1.5 * 2);
      const gaps = calls.slice(1).map((c, i) => c.at - (calls[i]?.at ?? 0));
      // Jitter (random() = 1) adds 50%; the cap applies before it.
      expect(gaps).toEqual([150, 300, 600, 600]);

      // A stream that says `retry: 60`, carries one event and ends after `ready`.
      serve = () =>
        streamResponse(
          'retry: 60\n\nid: 5-0\nevent: heartbeat\ndata: {"time":1}\n\nevent: ready\ndata: {"cursor":"5-0"}\n\n',
        );
      const before = calls.length;
      await vi.advanceTimersByTimeAsync(600);
      expect(calls.length).toBe(before + 1);
      serve = () => {
        throw new TypeError('fetch failed');
      };
      await vi.advanceTimersByTimeAsync(90 + 180);
      const after = calls.slice(before);
      expect(after.map((c) => c.at - (after[0]?.at ?? 0))).toEqual([0, 90, 270]);
      expect(after.slice(1).map((c) => c.lastEventId)).toEqual(['5-0', '5-0']);
      expect(feed.status()).toMatchObject({ connects: 1, cursor: '5-0', current: false });
    } finally {
      feed.close();
    }
  });
});
