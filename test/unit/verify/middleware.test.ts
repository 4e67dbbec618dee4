import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createVerifier,
  getSvid,
  requireSvid,
  type Svid,
  type Verifier,
  type VerifyError,
} from '../../../src/verify/index.ts';
import { AUDIENCE, claimsOf, type Fixture, mint, SPIFFE_ID, startFixture, waitFor } from './fixtures.ts';

let fx: Fixture;
let verifier: Verifier;
/** Never started: its feed is never current. */
let cold: Verifier;
let server: Server;
let base: string;
const rejected: VerifyError[] = [];

beforeAll(async () => {
  fx = await startFixture({ heartbeatMs: 1000 });
  verifier = createVerifier({ issuer: fx.broker.url, audience: AUDIENCE });
  cold = createVerifier({ issuer: fx.broker.url, audience: AUDIENCE });
  await verifier.start();
  const app = express();
  app.get('/whoami', requireSvid(verifier, { onRejected: (e) => rejected.push(e) }), (req, res) => {
    const svid = getSvid(req);
    res.json({
      spiffeId: svid.spiffeId,
      task: svid.task,
      same: res.locals.svid === svid && getSvid(res) === svid,
    });
  });
  app.get('/other', requireSvid(verifier, { audience: 'https://other.example' }), (_req, res) => {
    res.json({ audience: (res.locals.svid as Svid).audience });
  });
  app.get('/cold', requireSvid(cold), (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/unprotected', (req, res) => {
    let error = '';
    try {
      getSvid(req);
    } catch (e) {
      error = (e as Error).name;
    }
    res.json({ error });
  });
  server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  verifier.close();
  cold.close();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await fx.close();
});

async function get(
  path: string,
  authorization?: string,
): Promise<{ status: number; headers: Headers; body: unknown }> {
  const res = await fetch(`${base}${path}`, {
    headers: authorization === undefined ? {} : { authorization },
  });
  return { status: res.status, headers: res.headers, body: await res.json() };
}

describe('requireSvid', () => {
  it('passes a valid token and exposes the SVID on res.locals and getSvid(req|res)', async () => {
    const token = await mint({ key: fx.es, issuer: fx.broker.url, claims: { task: 'task-9' } });
    const res = await get('/whoami', `Bearer ${token}`);
    expect(res).toMatchObject({ status: 200, body: { spiffeId: SPIFFE_ID, task: 'task-9', same: true } });
    // The scheme is case-insensitive (RFC 6750 section 2.1).
    expect((await get('/whoami', `bearer ${token}`)).status).toBe(200);
  });

  it('without a bearer token: 401 with a bare Bearer challenge', async () => {
    for (const authorization of [undefined, 'Basic dXNlcjpwYXNz', 'Bearer']) {
      const res = await get('/whoami', authorization);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer');
      expect(res.body).toEqual({ error: 'invalid_token', error_description: 'a bearer token is required' });
    }
  });

  it('an invalid token: 401 invalid_token with the RFC 6750 challenge, and the cause to onRejected', async () => {
    const cases: Array<[string, string]> = [
      ['Bearer not-a-jwt', 'ERR_TOKEN_MALFORMED'],
      ['Bearer a b', 'ERR_TOKEN_MALFORMED'],
      [`Bearer ${await mint({ key: fx.es, issuer: 'https://evil.example' })}`, 'ERR_TOKEN_INVALID'],
      [`Bearer ${await mint({ key: fx.es, issuer: fx.broker.url, at: 1_000_000 })}`, 'ERR_TOKEN_EXPIRED'],
    ];
    for (const [authorization, code] of cases) {
      rejected.length = 0;
      const res = await get('/whoami', authorization);
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toBe('Bearer error="invalid_token"');
      expect(Object.keys(res.body as object).sort()).toEqual(['error', 'error_description']);
      expect(res.body).toMatchObject({ error: 'invalid_token' });
      expect(rejected.map((e) => e.code)).toEqual([code]);
    }
  });

  it('a revoked token: 401 invalid_token', async () => {
    const token = await mint({ key: fx.es, issuer: fx.broker.url });
    expect((await get('/whoami', `Bearer ${token}`)).status).toBe(200);
    const now = Math.floor(Date.now() / 1000);
    fx.broker.revoke({
      kind: 'credential',
      credential: claimsOf(token).jti,
      task: 'task-1',
      expiresAt: now + 300,
      reason: 'admin',
      revokedAt: now,
    });
    await waitFor(() => verifier.isRevoked({ credential: claimsOf(token).jti }));
    const res = await get('/whoami', `Bearer ${token}`);
    expect(res).toMatchObject({
      status: 401,
      body: { error: 'invalid_token', error_description: 'the token has been revoked' },
    });
  });

  it('a stale feed: 503 temporarily_unavailable (fail closed), with Retry-After', async () => {
    const token = await mint({ key: fx.es, issuer: fx.broker.url });
    const res = await get('/cold', `Bearer ${token}`);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(res.headers.get('www-authenticate')).toBeNull();
    expect(res.body).toEqual({
      error: 'temporarily_unavailable',
      error_description: 'the revocation feed is not current',
    });
  });

  it('a per-route audience replaces the verifier audience', async () => {
    const mine = await mint({ key: fx.es, issuer: fx.broker.url });
    const theirs = await mint({
      key: fx.es,
      issuer: fx.broker.url,
      claims: { aud: ['https://other.example'] },
    });
    expect((await get('/other', `Bearer ${mine}`)).status).toBe(401);
    expect(await get('/other', `Bearer ${theirs}`)).toMatchObject({
      status: 200,
      body: { audience: ['https://other.example'] },
    });
  });

  it('getSvid throws TypeError on a route without requireSvid; a bad route audience throws at setup', async () => {
    expect((await get('/unprotected')).body).toEqual({ error: 'TypeError' });
    expect(() => requireSvid(verifier, { audience: [] })).toThrow(TypeError);
  });
});
