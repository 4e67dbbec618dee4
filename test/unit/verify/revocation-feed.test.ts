import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { RevocationEvent as BrokerEvent } from '../../../src/store/types.ts';
import {
  createVerifier,
  type RevocationEvent,
  type Verifier,
  type VerifierOptions,
} from '../../../src/verify/index.ts';
import { FakeClock } from '../../helpers/clock.ts';
import { AUDIENCE, claimsOf, codeOf, type Fixture, mint, startFixture, waitFor } from './fixtures.ts';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(
  options: Partial<VerifierOptions> = {},
): Promise<{ fx: Fixture; verifier: Verifier; clock: FakeClock }> {
  const fx = await startFixture();
  cleanups.push(() => fx.close());
  const clock = new FakeClock();
  const verifier = createVerifier({
    issuer: fx.broker.url,
    audience: AUDIENCE,
    now: clock.clock,
    ...options,
  });
  cleanups.push(() => verifier.close());
  return { fx, verifier, clock };
}

function credentialEvent(jti: string, task: string, at: number): Omit<BrokerEvent, 'id'> {
  return {
    kind: 'credential',
    credential: jti,
    credentialType: 'jwt',
    task,
    expiresAt: at + 300,
    reason: 'admin',
    revokedAt: at,
  };
}

function taskEvent(task: string, at: number): Omit<BrokerEvent, 'id'> {
  return { kind: 'task', task, expiresAt: at + 300, reason: 'completed', revokedAt: at };
}

describe('revocation feed', () => {
  it('fails closed before start() has caught up', async () => {
    const { fx, verifier, clock } = await setup();
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at: clock.seconds() });
    expect(await codeOf(verifier.verify(token))).toBe('ERR_FEED_STALE');
    expect(verifier.status()).toMatchObject({
      revocationFeed: true,
      current: false,
      feed: { state: 'idle' },
    });
    await verifier.start();
    await expect(verifier.verify(token)).resolves.toBeDefined();
  });

  it('a credential event revokes that jti; other tokens still pass', async () => {
    const { fx, verifier, clock } = await setup();
    const at = clock.seconds();
    const revoked = await mint({ key: fx.es, issuer: fx.broker.url, at });
    const sibling = await mint({ key: fx.es, issuer: fx.broker.url, at });
    // Emitted before start: the replay delivers it before `ready`.
    fx.broker.revoke(credentialEvent(claimsOf(revoked).jti, 'task-1', at));
    await verifier.start();
    expect(await codeOf(verifier.verify(revoked))).toBe('ERR_TOKEN_REVOKED');
    await expect(verifier.verify(sibling)).resolves.toBeDefined();
    expect(verifier.isRevoked({ credential: claimsOf(revoked).jti })).toBe(true);
    expect(verifier.isRevoked({ credential: claimsOf(sibling).jti, task: 'task-1' })).toBe(false);
  });

  it('a task event revokes every token of that task, and only those', async () => {
    const { fx, verifier, clock } = await setup();
    const at = clock.seconds();
    const ofTask = await Promise.all([1, 2, 3].map(() => mint({ key: fx.es, issuer: fx.broker.url, at })));
    const other = await mint({ key: fx.es, issuer: fx.broker.url, at, claims: { task: 'task-2' } });
    fx.broker.revoke(taskEvent('task-1', at));
    await verifier.start();
    for (const token of ofTask) expect(await codeOf(verifier.verify(token))).toBe('ERR_TOKEN_REVOKED');
    await expect(verifier.verify(other)).resolves.toMatchObject({ task: 'task-2' });
  });

  it('a revocation arrives via the live stream after start and reaches onRevocation', async () => {
    const seen: RevocationEvent[] = [];
    const { fx, verifier, clock } = await setup({ onRevocation: (e) => seen.push(e) });
    const at = clock.seconds();
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at });
    await verifier.start();
    await expect(verifier.verify(token)).resolves.toBeDefined();
    const event = fx.broker.revoke(credentialEvent(claimsOf(token).jti, 'task-1', at));
    await waitFor(async () => (await codeOf(verifier.verify(token))) === 'ERR_TOKEN_REVOKED');
    expect(seen).toEqual([event]);
    expect(verifier.status().feed).toMatchObject({
      lastEventId: event.id,
      revocationEvents: 1,
      current: true,
    });
  });

  it('after the server ends the stream it reconnects with Last-Event-ID and catches up', async () => {
    const { fx, verifier, clock } = await setup();
    const at = clock.seconds();
    const first = fx.broker.revoke(credentialEvent('jti-0', 'task-0', at));
    await verifier.start();
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at });
    fx.broker.endStreams();
    // Synchronously after the end: no stream is open, so only the reconnection's replay can deliver it.
    const missed = fx.broker.revoke(credentialEvent(claimsOf(token).jti, 'task-1', at));
    await waitFor(() => fx.broker.streamRequests.length === 2 && verifier.status().current);
    expect(fx.broker.streamRequests[1]).toMatchObject({ lastEventId: first.id, replayed: [missed.id] });
    expect(await codeOf(verifier.verify(token))).toBe('ERR_TOKEN_REVOKED');
  });

  it('fails closed while the broker is unreachable, backs off, and catches up when it is back', async () => {
    const { fx, verifier, clock } = await setup();
    const at = clock.seconds();
    await verifier.start();
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at });
    fx.broker.streamStatus = 503;
    fx.broker.destroyStreams();
    await waitFor(() => fx.broker.streamRequests.length >= 3);
    expect(await codeOf(verifier.verify(token))).toBe('ERR_FEED_STALE');
    const missed = fx.broker.revoke(taskEvent('task-1', at));
    fx.broker.streamStatus = 200;
    await waitFor(() => verifier.status().current);
    expect(fx.broker.streamRequests.at(-1)?.replayed).toEqual([missed.id]);
    expect(await codeOf(verifier.verify(token))).toBe('ERR_TOKEN_REVOKED');
    expect(verifier.status().feed?.connects).toBe(2);
  });

  it('goes stale when no message arrives for maxStalenessMs, then recovers by reconnecting', async () => {
    const { fx, verifier, clock } = await setup({ maxStalenessMs: 30_000 });
    const at = clock.seconds();
    const seenBefore = fx.broker.revoke(credentialEvent('jti-0', 'task-0', at));
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at, claims: { exp: at + 3600 } });
    await verifier.start();
    await expect(verifier.verify(token)).resolves.toBeDefined();
    clock.advance(30_001);
    expect(await codeOf(verifier.verify(token))).toBe('ERR_FEED_STALE');
    expect(verifier.status().current).toBe(false);
    // The watchdog replaces the silent connection; the new one's `ready` makes the feed current again.
    await waitFor(async () => (await codeOf(verifier.verify(token))) === 'resolved');
    expect(fx.broker.streamRequests).toHaveLength(2);
    expect(fx.broker.streamRequests[1]?.lastEventId).toBe(seenBefore.id);
  });

  it('a connection that never becomes current is replaced after maxStalenessMs', async () => {
    const { fx, verifier, clock } = await setup({ maxStalenessMs: 30_000, startTimeoutMs: 60_000 });
    fx.broker.sendReady = false;
    const started = verifier.start();
    await waitFor(() => fx.broker.openStreams === 1);
    clock.advance(20_000);
    fx.broker.heartbeat();
    await waitFor(() => verifier.status().feed?.lastMessageAt === clock.now());
    fx.broker.sendReady = true;
    // 35 s after connecting, 15 s after the last message: not silent, but never current.
    clock.advance(15_000);
    await waitFor(() => fx.broker.streamRequests.length === 2);
    await started;
    expect(verifier.status().current).toBe(true);
  });

  it('heartbeats keep the feed current', async () => {
    const { fx, verifier, clock } = await setup({ maxStalenessMs: 30_000 });
    const at = clock.seconds();
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at, claims: { exp: at + 3600 } });
    await verifier.start();
    clock.advance(20_000);
    fx.broker.heartbeat();
    await waitFor(() => verifier.status().feed?.lastMessageAt === clock.now());
    clock.advance(20_000);
    // 40 s after `ready`, 20 s after the heartbeat.
    await expect(verifier.verify(token)).resolves.toBeDefined();
    expect(fx.broker.streamRequests).toHaveLength(1);
  });

  it('skips and counts malformed events, and applies the next good one', async () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line)) });
    const { fx, verifier, clock } = await setup({ logger });
    const at = clock.seconds();
    await verifier.start();
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at });
    const jti = claimsOf(token).jti;
    fx.broker.sendRaw('id: 1-0\nevent: revocation\ndata: {not json\n\n');
    fx.broker.sendRaw(
      `event: revocation\ndata: {"id":"2-0","kind":"credential","task":"t","expiresAt":${at}}\n\n`,
    );
    fx.broker.sendRaw(
      `event: revocation\ndata: ${JSON.stringify({ ...credentialEvent(jti, 't', at), kind: 'x' })}\n\n`,
    );
    fx.broker.sendRaw('event: heartbeat\ndata: {"time":"soon"}\n\n');
    fx.broker.sendRaw('event: something-new\ndata: {}\n\n: a comment\n\n');
    fx.broker.revoke(credentialEvent(jti, 't', at));
    await waitFor(() => verifier.status().feed?.revocationEvents === 1);
    expect(verifier.status().feed).toMatchObject({ malformedEvents: 4, current: true });
    // Logged through a pino logger, without the untrusted data.
    const skipped = lines.filter((l) => l.msg === 'revocation feed: malformed event skipped');
    expect(skipped.map((l) => l.event)).toEqual(['revocation', 'revocation', 'revocation', 'heartbeat']);
    expect(JSON.stringify(lines)).not.toContain('not json');
    expect(lines.some((l) => l.msg === 'revocation feed is current')).toBe(true);
    expect(await codeOf(verifier.verify(token))).toBe('ERR_TOKEN_REVOKED');
  });

  it('start() rejects after startTimeoutMs without `ready`, and the feed keeps trying', async () => {
    const { fx, verifier, clock } = await setup({ startTimeoutMs: 200 });
    fx.broker.sendReady = false;
    expect(await codeOf(verifier.start())).toBe('ERR_FEED_STALE');
    fx.broker.sendReady = true;
    fx.broker.endStreams();
    await waitFor(() => verifier.status().current);
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at: clock.seconds() });
    await expect(verifier.verify(token)).resolves.toBeDefined();
  });

  it('prunes revocations once what they cover has expired', async () => {
    const { fx, verifier, clock } = await setup({ maxStalenessMs: 600_000, clockToleranceSec: 5 });
    const at = clock.seconds();
    fx.broker.revoke({ ...credentialEvent('short', 't', at), expiresAt: at + 30 });
    fx.broker.revoke({ ...taskEvent('long', at), expiresAt: at + 3600 });
    await verifier.start();
    expect(verifier.status().feed).toMatchObject({ revokedCredentials: 1, endedTasks: 1 });
    // The sweep runs once a minute (of the injected clock); by then `short` is past expiry and tolerance.
    clock.advance(66_000);
    await waitFor(() => verifier.status().feed?.revokedCredentials === 0);
    expect(verifier.isRevoked({ credential: 'short' })).toBe(false);
    expect(verifier.isRevoked({ task: 'long' })).toBe(true);
  });

  it('close() ends the stream and fails closed afterwards', async () => {
    const { fx, verifier, clock } = await setup();
    await verifier.start();
    await waitFor(() => fx.broker.openStreams === 1);
    verifier.close();
    await waitFor(() => fx.broker.openStreams === 0);
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at: clock.seconds() });
    expect(await codeOf(verifier.verify(token))).toBe('ERR_FEED_STALE');
    expect(await codeOf(verifier.start())).toBe('ERR_FEED_STALE');
    expect(verifier.status().feed?.state).toBe('closed');
    expect(fx.broker.streamRequests).toHaveLength(1);
  });
});
