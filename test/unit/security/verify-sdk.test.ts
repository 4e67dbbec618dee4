// Attacks on the relying-party SDK: a feed that lies or misbehaves (a malicious intermediary on a plain-HTTP
// feed, a compromised broker), claims bent to dodge a task revocation, and error bodies of the middleware.
// A failing test here names a vulnerability; the others are regression tests for attacks defeated today.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import type { RevocationEvent as BrokerEvent } from '../../../src/store/types.ts';
import {
  createVerifier,
  requireSvid,
  VERIFY_ERRORS,
  type Verifier,
  type VerifierOptions,
} from '../../../src/verify/index.ts';
import { FakeClock } from '../../helpers/clock.ts';
import { AUDIENCE, claimsOf, codeOf, type Fixture, mint, startFixture, waitFor } from '../verify/fixtures.ts';

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

function event(fields: Partial<Omit<BrokerEvent, 'id'>> & Pick<BrokerEvent, 'kind' | 'task'>, at: number) {
  return { expiresAt: at + 300, reason: 'admin', revokedAt: at, ...fields } as Omit<BrokerEvent, 'id'>;
}

async function listen(
  handler: Parameters<typeof createServer>[1],
): Promise<{ base: string; server: Server }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

const READY = 'event: ready\ndata: {"cursor":"1-0"}\n\n';

describe('revocation state a feed can make the SDK hold', () => {
  it('keeps nothing longer than a JWT-SVID can live, whatever expiresAt or id size an event claims', async () => {
    // FINDING: RevocationSet keeps an entry until the event's own `expiresAt`, unbounded, and ids of any length
    // (up to the 1 MiB SSE line limit). A forged or runaway feed can pin memory in every relying party for
    // good; no Writ credential lives longer than 24 h (credentials.maxTtl caps at one day), so nothing need
    // be kept longer than that plus the clock tolerance.
    const { fx, verifier, clock } = await setup({ maxStalenessMs: 600_000 });
    const at = clock.seconds();
    fx.broker.revoke(
      event({ kind: 'credential', credential: 'forever', task: 't', expiresAt: Number.MAX_SAFE_INTEGER }, at),
    );
    fx.broker.revoke(
      event(
        {
          kind: 'credential',
          credential: 'c'.repeat(200_000),
          task: 't',
          expiresAt: Number.MAX_SAFE_INTEGER,
        },
        at,
      ),
    );
    fx.broker.revoke(
      event({ kind: 'task', task: 't'.repeat(200_000), expiresAt: Number.MAX_SAFE_INTEGER }, at),
    );
    await verifier.start();
    clock.advance(8 * 86_400_000);
    await waitFor(() => {
      const feed = verifier.status().feed;
      return feed?.revokedCredentials === 0 && feed.endedTasks === 0;
    }, 3_000);
  });
});

describe('a feed that is not a current event stream', () => {
  it('never makes the verifier current: wrong type or status, ready look-alikes, oversized or cut lines', async () => {
    const fx = await startFixture();
    cleanups.push(() => fx.close());
    const routes: Record<string, (res: import('node:http').ServerResponse) => void> = {
      '/html': (res) => {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.write(READY);
      },
      '/type-typo': (res) => {
        res.writeHead(200, { 'content-type': 'text/event-streamx' });
        res.write(READY);
      },
      '/status-500': (res) => {
        res.writeHead(500, { 'content-type': 'text/event-stream' });
        res.end(READY);
      },
      '/look-alikes': (res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(
          [
            'event: ready \ndata: {"cursor":"1-0"}\n\n',
            'event: READY\ndata: {"cursor":"1-0"}\n\n',
            'data: {"cursor":"1-0"}\n\n',
            ': event: ready\n: data: {"cursor":"1-0"}\n\n',
            'event: ready\ndata: {"cursor":1}\n\n',
            'event: ready\ndata: ready\n\n',
            'event: ready\n\n',
            'event: revocation\ndata: {}\nevent: ready\n',
          ].join(''),
        );
      },
      '/oversized': (res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${'x'.repeat(2 * 1024 * 1024)}`);
        res.write(`\n\n${READY}`);
      },
      '/truncated': (res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end('event: ready\ndata: {"cursor":"1-0"}\n');
      },
    };
    const { base } = await listen((req, res) => {
      const route = routes[new URL(req.url ?? '/', 'http://x').pathname];
      if (route) route(res);
      else res.writeHead(404).end();
    });
    const token = await mint({ key: fx.es, issuer: fx.broker.url });
    for (const path of Object.keys(routes)) {
      const verifier = createVerifier({
        issuer: fx.broker.url,
        audience: AUDIENCE,
        revocationStreamUrl: `${base}${path}`,
        startTimeoutMs: 300,
      });
      try {
        expect(await codeOf(verifier.start()), path).toBe('ERR_FEED_STALE');
        expect(await codeOf(verifier.verify(token)), path).toBe('ERR_FEED_STALE');
        expect(verifier.status().current, path).toBe(false);
      } finally {
        verifier.close();
      }
    }
  });

  it('fails closed as soon as the stream it was current on ends, until the next `ready`', async () => {
    const fx = await startFixture();
    cleanups.push(() => fx.close());
    let connections = 0;
    const { base } = await listen((_req, res) => {
      connections++;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      // The first connection is current, then ends; later ones never say `ready`.
      if (connections === 1) res.end(READY);
      else res.write('event: heartbeat\ndata: {"time":1}\n\n');
    });
    const verifier = createVerifier({
      issuer: fx.broker.url,
      audience: AUDIENCE,
      revocationStreamUrl: `${base}/stream`,
      startTimeoutMs: 2_000,
    });
    cleanups.push(() => verifier.close());
    await verifier.start();
    await waitFor(() => connections >= 2);
    const token = await mint({ key: fx.es, issuer: fx.broker.url });
    expect(await codeOf(verifier.verify(token))).toBe('ERR_FEED_STALE');
  });
});

describe('dodging a task revocation through the claims', () => {
  it('accepts no token of a revoked task or credential whose task or jti claim is bent', async () => {
    const { fx, verifier, clock } = await setup();
    const at = clock.seconds();
    fx.broker.revoke(event({ kind: 'task', task: 'build-1' }, at));
    const revokedJti = 'jti-revoked';
    fx.broker.revoke(event({ kind: 'credential', credential: revokedJti, task: 'other' }, at));
    await verifier.start();
    const bent: Array<Record<string, unknown>> = [
      { task: undefined },
      { task: '' },
      { task: ['build-1'] },
      { task: { id: 'build-1' } },
      { task: 1 },
      { task: null },
      { jti: [revokedJti] },
      { jti: { id: revokedJti } },
      { jti: undefined },
    ];
    for (const claims of bent) {
      const token = await mint({ key: fx.es, issuer: fx.broker.url, at, claims });
      expect(await codeOf(verifier.verify(token)), JSON.stringify(claims)).toBe('ERR_TOKEN_INVALID');
    }
    const ofTask = await mint({ key: fx.es, issuer: fx.broker.url, at, claims: { task: 'build-1' } });
    expect(await codeOf(verifier.verify(ofTask))).toBe('ERR_TOKEN_REVOKED');
    const ofJti = await mint({ key: fx.es, issuer: fx.broker.url, at, claims: { jti: revokedJti } });
    expect(await codeOf(verifier.verify(ofJti))).toBe('ERR_TOKEN_REVOKED');
    // A later event for the same task cannot shorten how long it stays revoked.
    fx.broker.revoke(event({ kind: 'task', task: 'build-1', expiresAt: 0 }, at));
    await waitFor(() => verifier.status().feed?.revocationEvents === 3);
    expect(await codeOf(verifier.verify(ofTask))).toBe('ERR_TOKEN_REVOKED');
  });
});

describe('requireSvid error bodies', () => {
  it('carry only a fixed code and description: no token, no claim values, no library text', async () => {
    const { fx, verifier, clock } = await setup({ maxStalenessMs: 600_000 });
    const at = clock.seconds();
    const revoked = await mint({ key: fx.es, issuer: fx.broker.url, at });
    fx.broker.revoke(event({ kind: 'credential', credential: claimsOf(revoked).jti, task: 'task-1' }, at));
    await verifier.start();
    const cold = createVerifier({ issuer: fx.broker.url, audience: AUDIENCE });
    cleanups.push(() => cold.close());
    const app = express();
    app.get('/warm', requireSvid(verifier), (_req, res) => {
      res.json({ ok: true });
    });
    app.get('/cold', requireSvid(cold), (_req, res) => {
      res.json({ ok: true });
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise<void>((resolve) => server.once('listening', () => resolve()));
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          server.closeAllConnections();
          server.close(() => resolve());
        }),
    );
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const marker = '<b>XSS-MARK-7f3a</b>';
    const tokens = [
      'garbage',
      `${Buffer.from(JSON.stringify({ alg: 'ES256', kid: marker })).toString('base64url')}.e30.c2ln`,
      await mint({ key: fx.es, issuer: fx.broker.url, at, header: { kid: marker } }),
      await mint({ key: fx.es, issuer: fx.broker.url, at, claims: { aud: [marker] } }),
      await mint({ key: fx.es, issuer: fx.broker.url, at, claims: { sub: marker } }),
      await mint({ key: fx.es, issuer: fx.broker.url, at, claims: { iss: marker } }),
      await mint({ key: fx.es, issuer: fx.broker.url, at: at - 3_600 }),
      await mint({ key: fx.stranger, issuer: fx.broker.url, at, header: { kid: fx.es.kid } }),
      revoked,
    ];
    const descriptions = new Set<string>([...Object.values(VERIFY_ERRORS), 'a bearer token is required']);
    const check = async (path: string, authorization: string | undefined, token: string) => {
      const res = await fetch(
        `${base}${path}`,
        authorization === undefined ? {} : { headers: { authorization } },
      );
      const text = await res.text();
      expect([401, 503], `${path} ${authorization?.slice(0, 40)}`).toContain(res.status);
      const body = JSON.parse(text) as Record<string, string>;
      expect(Object.keys(body).sort()).toEqual(['error', 'error_description']);
      expect(['invalid_token', 'temporarily_unavailable']).toContain(body.error);
      expect(descriptions).toContain(body.error_description);
      for (const part of token.split('.')) if (part.length > 8) expect(text).not.toContain(part);
      expect(text).not.toContain('XSS-MARK');
      expect(res.headers.get('www-authenticate') ?? '').not.toContain('XSS-MARK');
    };
    for (const token of tokens) {
      await check('/warm', `Bearer ${token}`, token);
      await check('/cold', `Bearer ${token}`, token);
    }
    await check('/warm', undefined, '');
    await check('/warm', `Basic ${tokens[2]}`, tokens[2]!);
    await check('/warm', `Bearer ${tokens[2]} extra`, tokens[2]!);
  });
});
