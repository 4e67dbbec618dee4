// A relying party using the SDK against a real broker: it rejects a revoked token within a second of the
// task's end, and fails closed when the broker's feed goes away.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier, getSvid, requireSvid, type Verifier } from '../../src/verify/index.ts';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { waitFor } from '../helpers/wait.ts';
import { issueSvid } from '../helpers/workload.ts';

const TD = 'example.org';
const AUDIENCE = 'https://api.example';

describe.each(['memory', 'redis'] as const)('relying party on the %s broker', (store) => {
  let b: TestBroker;
  let verifier: Verifier;
  let rp: Server;
  let rpUrl: string;

  beforeAll(async () => {
    b = await startTestBroker({ store, config: { trustDomain: TD, revocationFeed: { heartbeatMs: 200 } } });
    verifier = createVerifier({ issuer: b.url, audience: AUDIENCE, trustDomain: TD, maxStalenessMs: 2_000 });
    await verifier.start();
    const app = express();
    app.get('/api/whoami', requireSvid(verifier), (req, res) => {
      const svid = getSvid(req);
      res.json({ spiffeId: svid.spiffeId, task: svid.task });
    });
    rp = await new Promise<Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    rpUrl = `http://127.0.0.1:${(rp.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    verifier?.close();
    await new Promise((r) => rp?.close(r));
    await b?.close();
  });

  const call = (token: string) =>
    fetch(`${rpUrl}/api/whoami`, { headers: { authorization: `Bearer ${token}` } });

  it('accepts a live SVID and rejects it within 1 s of its task ending', async () => {
    const task = `rp-${store}`;
    const svid = await issueSvid(b, `spiffe://${TD}/ci/job`, { task, audience: [AUDIENCE] });
    const own = await issueSvid(b, `spiffe://${TD}/ci/job`, { task, audience: [b.url] });
    const other = await issueSvid(b, `spiffe://${TD}/ci/job`, {
      task: `${task}-other`,
      audience: [AUDIENCE],
    });
    const ok = await call(svid.token);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ spiffeId: `spiffe://${TD}/ci/job`, task });

    const ended = await b.request('POST', `/v1/tasks/${task}/complete`, {
      headers: { authorization: `Bearer ${own.token}` },
    });
    expect(ended.status).toBe(202);
    // The bound is the requirement itself: rejected within one second of the end.
    const res = await waitFor(
      async () => {
        const r = await call(svid.token);
        return r.status === 401 ? r : undefined;
      },
      { timeoutMs: 1_000, intervalMs: 10, what: 'the relying party to reject the revoked token' },
    );
    expect(await res.json()).toMatchObject({ error: 'invalid_token' });
    expect((await call(other.token)).status).toBe(200);
  });

  it('rejects a single revoked credential and keeps its siblings', async () => {
    const task = `rp-single-${store}`;
    const a = await issueSvid(b, `spiffe://${TD}/svc`, { task, audience: [AUDIENCE] });
    const c = await issueSvid(b, `spiffe://${TD}/svc`, { task, audience: [AUDIENCE] });
    expect((await b.admin('POST', `/v1/admin/credentials/${a.id}/revoke`)).status).toBe(200);
    await waitFor(async () => (await call(a.token)).status === 401, {
      timeoutMs: 1_000,
      intervalMs: 10,
      what: 'rejection',
    });
    expect((await call(c.token)).status).toBe(200);
  });

  it('fails closed when the broker goes away', async () => {
    const svid = await issueSvid(b, `spiffe://${TD}/svc`, {
      task: `rp-stale-${store}`,
      audience: [AUDIENCE],
    });
    expect((await call(svid.token)).status).toBe(200);
    await b.close();
    const res = await waitFor(
      async () => {
        const r = await call(svid.token);
        return r.status === 503 ? r : undefined;
      },
      { timeoutMs: 5_000, intervalMs: 50, what: 'the relying party to fail closed' },
    );
    expect(await res.json()).toMatchObject({ error: 'temporarily_unavailable' });
  });
});
