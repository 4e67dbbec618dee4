// Tasks end, credentials die with them, and relying parties hear of it: over HTTP, against both stores.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { openSse } from '../helpers/sse.ts';
import { sleep, waitFor } from '../helpers/wait.ts';
import { introspectActive, issueSvid, type Svid } from '../helpers/workload.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/ci/build`;

describe.each(['memory', 'redis'] as const)('credential lifecycle with the %s store', (store) => {
  let b: TestBroker;
  beforeAll(async () => {
    b = await startTestBroker({
      store,
      config: {
        trustDomain: TD,
        lifecycle: { sweepIntervalMs: 500, jobLockMs: 2_000 },
        revocationFeed: { heartbeatMs: 200 },
      },
    });
  });
  afterAll(async () => {
    await b?.close();
  });

  const credential = async (id: string) => (await b.admin('GET', `/v1/admin/credentials/${id}`)).body;

  it('reads a credential as expired after its exp', async () => {
    const svid = await issueSvid(b, ID, { ttl: 3 });
    expect((await credential(svid.id)).status).toBe('active');
    await waitFor(async () => (await credential(svid.id)).status === 'expired', {
      timeoutMs: 6_000,
      what: 'expiry',
    });
    expect(await introspectActive(b, svid.token)).toBe(false);
  });

  it('completes a task with a broker-addressed SVID of that task: every credential reads inactive at once', async () => {
    const task = `complete-${store}`;
    const svids: Svid[] = [];
    for (let i = 0; i < 5; i++) svids.push(await issueSvid(b, ID, { task }));
    const own = await issueSvid(b, ID, { task, audience: [b.url] });
    const other = await issueSvid(b, ID, { task: `${task}-other` });

    // A token addressed to a relying party cannot end the task.
    const wrongAudience = await b.request('POST', `/v1/tasks/${task}/complete`, {
      headers: { authorization: `Bearer ${svids[0]!.token}` },
    });
    expect(wrongAudience.status).toBe(401);
    expect(wrongAudience.body.error).toBe('ERR_TOKEN_INVALID');
    // Nor a token of another task, nor garbage.
    const otherTask = await b.request('POST', `/v1/tasks/${task}-other/complete`, {
      headers: { authorization: `Bearer ${own.token}` },
    });
    expect(otherTask.status).toBe(403);
    expect(
      (await b.request('POST', `/v1/tasks/${task}/complete`, { headers: { authorization: 'Bearer x.y.z' } }))
        .status,
    ).toBe(401);

    const done = await b.request('POST', `/v1/tasks/${task}/complete`, {
      headers: { authorization: `Bearer ${own.token}` },
    });
    expect(done.status).toBe(202);
    expect(done.body).toMatchObject({ task, status: 'completed' });
    for (const s of [...svids, own]) expect(await introspectActive(b, s.token)).toBe(false);
    expect(await introspectActive(b, other.token)).toBe(true);

    // A task ends once; nothing more is issued for it.
    const again = await b.request('POST', `/v1/tasks/${task}/complete`, {
      headers: { authorization: `Bearer ${own.token}` },
    });
    expect(again.status).toBe(401);
    const jt = (await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: ID })).body.token;
    const late = await b.request('POST', '/v1/svid/jwt', {
      body: { attestor: 'join_token', evidence: { token: jt }, audience: ['a'], task },
    });
    expect(late.status).toBe(409);
    expect(late.body.error).toBe('ERR_TASK_ENDED');

    // The fan-out marks each credential revoked with the task's reason.
    await waitFor(async () => (await credential(svids[4]!.id)).revokedReason === 'task_completed', {
      what: 'fan-out',
    });
    for (const s of svids) {
      expect(await credential(s.id)).toMatchObject({
        status: 'revoked',
        revokedReason: 'task_completed',
        taskStatus: 'completed',
      });
    }
    const t = (await b.admin('GET', `/v1/admin/tasks/${task}`)).body;
    expect(t).toMatchObject({ id: task, status: 'completed', credentials: 6 });
  });

  it('ends a task at its deadline through the scheduler', async () => {
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: `${ID}/short`,
      selectors: [`join_token:spiffe_id:${ID}/short`],
      taskDeadline: 2,
    });
    expect(entry.status).toBe(201);
    const svid = await issueSvid(b, `${ID}/short`, { task: `deadline-${store}` });
    expect(svid.expiresAt - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(2);
    const task = await waitFor(
      async () => {
        const t = (await b.admin('GET', `/v1/admin/tasks/deadline-${store}`)).body;
        return t.endedAt !== undefined ? t : undefined;
      },
      { timeoutMs: 8_000, what: 'the deadline job' },
    );
    expect(task).toMatchObject({ status: 'expired', endReason: 'task_deadline' });
  });

  it('feeds every revocation, with no SPIFFE IDs, resumable by cursor and over SSE', async () => {
    const before = (await b.request('GET', '/v1/revocations?limit=1000')).body;
    const sse = await openSse(`${b.url}/v1/revocations/stream`, { 'last-event-id': before.cursor });
    await waitFor(() => sse.messages.find((m) => m.event === 'ready'), { what: 'ready' });

    const task = `feed-${store}`;
    const a = await issueSvid(b, ID, { task });
    const c = await issueSvid(b, ID, { task });
    const r = await b.admin('POST', `/v1/admin/tasks/${task}/revoke`, { reason: 'key_compromise' });
    expect(r.status).toBe(202);
    expect(await introspectActive(b, a.token)).toBe(false);

    const live = await waitFor(
      () => {
        const events = sse.messages.filter((m) => m.event === 'revocation').map((m) => JSON.parse(m.data));
        return events.filter((e) => e.task === task).length >= 3 ? events : undefined;
      },
      { what: 'live revocation events' },
    );
    const mine = live.filter((e) => e.task === task);
    expect(mine.find((e) => e.kind === 'task')).toMatchObject({ task, reason: 'key_compromise' });
    expect(
      mine
        .filter((e) => e.kind === 'credential')
        .map((e) => e.credential)
        .sort(),
    ).toEqual([a.id, c.id].sort());
    expect(mine.find((e) => e.credential === a.id)).toMatchObject({
      credentialType: 'jwt',
      expiresAt: a.expiresAt,
      reason: 'key_compromise',
    });
    await waitFor(() => sse.messages.some((m) => m.event === 'heartbeat'), { what: 'a heartbeat' });
    sse.close();

    const page = (await b.request('GET', `/v1/revocations?since=${before.cursor}`)).body;
    expect(page.events.map((e: { id: string }) => e.id)).toEqual(mine.map((e) => e.id));
    expect(JSON.stringify(page)).not.toContain('spiffe://');
    const rest = (await b.request('GET', `/v1/revocations?since=${page.cursor}`)).body;
    expect(rest.events).toEqual([]);

    // Resuming with Last-Event-ID replays only what came after it.
    const resumed = await openSse(`${b.url}/v1/revocations/stream`, { 'last-event-id': mine[0]!.id });
    await waitFor(() => resumed.messages.find((m) => m.event === 'ready'), { what: 'ready' });
    const replayed = resumed.messages.filter((m) => m.event === 'revocation').map((m) => m.id);
    expect(replayed).toEqual(mine.slice(1).map((e) => e.id));
    resumed.close();
    expect((await b.request('GET', '/v1/revocations?since=nope')).status).toBe(400);
  });

  it('bulk-revokes exactly the credentials under a SPIFFE ID prefix', async () => {
    const base = `spiffe://${TD}/bulk-${store}`;
    const inside = [
      await issueSvid(b, `${base}/a`),
      await issueSvid(b, `${base}/a/b`),
      await issueSvid(b, base),
    ];
    const outside = [await issueSvid(b, `${base}x`), await issueSvid(b, `spiffe://${TD}/other-${store}`)];
    const res = await b.admin('POST', '/v1/admin/revocations', {
      spiffeIdPrefix: base,
      reason: 'decommissioned',
    });
    expect(res.status).toBe(200);
    expect(res.body.revoked).toBe(3);
    for (const s of inside) expect(await introspectActive(b, s.token)).toBe(false);
    for (const s of outside) expect(await introspectActive(b, s.token)).toBe(true);
    expect(await credential(inside[0]!.id)).toMatchObject({
      status: 'revoked',
      revokedReason: 'decommissioned',
    });
    const bad = await b.admin('POST', '/v1/admin/revocations', {
      spiffeIdPrefix: base,
      attestor: 'join_token',
    });
    expect(bad.status).toBe(400);
  });

  it('revokes one credential by admin, and one by its holder (RFC 7009)', async () => {
    const task = `single-${store}`;
    const x = await issueSvid(b, ID, { task });
    const y = await issueSvid(b, ID, { task });
    const z = await issueSvid(b, ID, { task });
    const res = await b.admin('POST', `/v1/admin/credentials/${x.id}/revoke`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      revoked: true,
      credential: { id: x.id, status: 'revoked', revokedReason: 'admin' },
    });
    expect((await b.admin('POST', `/v1/admin/credentials/${x.id}/revoke`)).body.revoked).toBe(false);
    expect(
      (await b.admin('POST', '/v1/admin/credentials/00000000-0000-0000-0000-000000000000/revoke')).status,
    ).toBe(404);

    const self = await b.request('POST', '/oauth2/revoke', {
      raw: `token=${encodeURIComponent(y.token)}&token_type_hint=access_token`,
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(self.status).toBe(200);
    expect(self.text).toBe('');
    const garbage = await b.request('POST', '/oauth2/revoke', {
      raw: 'token=garbage',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    expect(garbage.status).toBe(200);
    expect(await introspectActive(b, x.token)).toBe(false);
    expect(await introspectActive(b, y.token)).toBe(false);
    expect(await introspectActive(b, z.token)).toBe(true);
    expect((await credential(y.id)).revokedReason).toBe('holder');
  });

  it('lists credentials and tasks with filters and cursor pagination', async () => {
    const task = `list-${store}`;
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push((await issueSvid(b, `${ID}/list`, { task })).id);
    await b.admin('POST', `/v1/admin/credentials/${ids[0]}/revoke`);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const q: string = `/v1/admin/credentials?task=${task}&limit=3${cursor ? `&cursor=${cursor}` : ''}`;
      const page = (await b.admin('GET', q)).body;
      seen.push(...page.items.map((c: { id: string }) => c.id));
      cursor = page.next;
      pages += 1;
    } while (cursor && pages < 10);
    expect(seen.sort()).toEqual([...ids].sort());
    const active = (await b.admin('GET', `/v1/admin/credentials?task=${task}&status=active`)).body.items;
    expect(active).toHaveLength(6);
    const revoked = (
      await b.admin(
        'GET',
        `/v1/admin/credentials?spiffeId=${encodeURIComponent(`${ID}/list`)}&status=revoked`,
      )
    ).body.items;
    expect(revoked.map((c: { id: string }) => c.id)).toEqual([ids[0]]);
    const tasks = (await b.admin('GET', `/v1/admin/tasks?owner=${encodeURIComponent(`${ID}/list`)}`)).body
      .items;
    expect(tasks.map((t: { id: string }) => t.id)).toEqual([task]);
    expect((await b.admin('GET', '/v1/admin/credentials?status=bogus')).status).toBe(400);
    expect((await b.admin('GET', '/v1/admin/credentials?cursor=%%%')).status).toBe(400);
    await sleep(0);
  });
});
