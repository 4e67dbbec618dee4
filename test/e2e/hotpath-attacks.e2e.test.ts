// Attacks on the issuance hot path of issue 7: registration entries cached per replica behind a random version
// key, the read-only rate-limit check, deadlines read from the store rather than a job per task. Real brokers,
// real Redis (the shared one, or a private redis-server for restarts).
import { createHash, generateKeyPairSync } from 'node:crypto';
import * as net from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCsr } from '../../src/keys/x509/index.ts';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { FakeClock } from '../helpers/clock.ts';
import { testRedisUrl, uniquePrefix } from '../helpers/redis.ts';
import { type RedisServer, restartRedisServer, startRedisServer } from '../helpers/redis-server.ts';
import { waitFor } from '../helpers/wait.ts';

const TD = 'example.org';
const STATIC_KEY = 'hotpath-attack-static-key-0123456789abcdef';
const staticKeyConfig = (prefix: string, url?: string) => ({
  trustDomain: TD,
  issuer: 'https://writ.example.org',
  redis: { prefix, ...(url ? { url } : {}) },
  attestors: {
    static_key: { keys: [{ id: 'app', sha256: createHash('sha256').update(STATIC_KEY).digest('hex') }] },
  },
});

const svid = (b: TestBroker, audience: string[] = ['x'], extra: Record<string, unknown> = {}) =>
  b.request('POST', '/v1/svid/jwt', {
    body: { attestor: 'static_key', evidence: { key: STATIC_KEY }, audience, ...extra },
  });

async function plainRedis(url: string): Promise<Redis> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  redis.on('error', () => {});
  await redis.connect();
  return redis;
}

describe('registration entries cached per replica', () => {
  let a: TestBroker;
  let b: TestBroker;
  let raw: Redis;
  let prefix: string;
  beforeAll(async () => {
    prefix = uniquePrefix('hotpath-entries');
    const config = staticKeyConfig(prefix);
    [a, b] = await Promise.all([
      startTestBroker({ store: 'redis', config }),
      startTestBroker({ store: 'redis', config }),
    ]);
    raw = await plainRedis(await testRedisUrl());
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    raw?.disconnect();
  });

  const createEntry = async (body: Record<string, unknown>) => {
    const res = await a.admin('POST', '/v1/admin/entries', body);
    expect(res.status, res.text).toBe(201);
    return res.body.id as string;
  };

  it('under concurrent load on B, no issuance that starts after the delete on A has answered succeeds', async () => {
    const id = await createEntry({ spiffeId: `spiffe://${TD}/load`, selectors: ['static_key:id:app'] });
    expect((await svid(b)).status).toBe(200);
    let deleted = false;
    const lateSuccesses: string[] = [];
    const hammer = async () => {
      for (let i = 0; i < 40; i++) {
        const startedAfterDelete = deleted;
        const res = await svid(b);
        if (startedAfterDelete && res.status === 200) lateSuccesses.push(res.body.id);
        if (startedAfterDelete) expect(res.body.token).toBeUndefined();
      }
    };
    const load = Array.from({ length: 8 }, hammer);
    await new Promise((r) => setTimeout(r, 30));
    expect((await a.admin('DELETE', `/v1/admin/entries/${id}`)).status).toBe(204);
    deleted = true;
    await Promise.all(load);
    expect(lateSuccesses).toEqual([]);
  });

  it('entries handed out are the caller’s own: mutating them changes nothing for the next caller', async () => {
    const id = await createEntry({
      spiffeId: `spiffe://${TD}/immutable`,
      selectors: ['static_key:id:app'],
      audiences: ['only-this'],
    });
    const store = b.broker.deps.store;
    const first = await store.listEntries();
    const mine = first.find((e) => e.id === id)!;
    expect(() => {
      (mine as { spiffeId: string }).spiffeId = `spiffe://${TD}/admin`;
    }).toThrow(TypeError);
    expect(() => mine.selectors.push('static_key:id:other')).toThrow(TypeError);
    expect(() => mine.audiences!.push('anything')).toThrow(TypeError);
    expect(() => {
      (mine as { jwtTtl?: number }).jwtTtl = 86_400;
    }).toThrow(TypeError);
    first.length = 0;
    first.push({ ...mine, id: 'injected', audiences: undefined });
    const second = await store.listEntries();
    expect(second.some((e) => e.id === 'injected')).toBe(false);
    expect(second.find((e) => e.id === id)).toMatchObject({ audiences: ['only-this'] });
    const refused = await svid(b, ['anything']);
    expect(refused.status).toBe(403);
    expect((await a.admin('DELETE', `/v1/admin/entries/${id}`)).status).toBe(204);
  });

  it('a lost version key (DEL, eviction) with an entry deleted meanwhile stops issuance on B', async () => {
    const id = await createEntry({
      spiffeId: `spiffe://${TD}/lostversion`,
      selectors: ['static_key:id:app'],
    });
    expect((await svid(b)).status).toBe(200);
    expect((await svid(b)).status).toBe(200); // cached on B
    await raw.del(`${prefix}entries:version`);
    await raw.hdel(`${prefix}entries`, id);
    const refused = await svid(b);
    expect(refused.status).toBe(403);
    expect(refused.body.error).toBe('ERR_NO_MATCHING_ENTRY');
  });

  it('a version key set back to a value B holds cannot resurrect a deleted entry (random versions)', async () => {
    const id = await createEntry({ spiffeId: `spiffe://${TD}/replay`, selectors: ['static_key:id:app'] });
    expect((await svid(b)).status).toBe(200);
    const old = await raw.get(`${prefix}entries:version`);
    expect(old).toMatch(/^[0-9a-f-]{36}$/);
    expect((await a.admin('DELETE', `/v1/admin/entries/${id}`)).status).toBe(204);
    const now = await raw.get(`${prefix}entries:version`);
    expect(now).not.toBe(old);
    expect((await svid(b)).status).toBe(403);
  });

  // The docs say entries written without a version (by hand, or by an older broker during a rolling upgrade) are
  // never cached; but once any new broker has written the version key, a write that does not bump it (an older
  // broker's put-entry-1.lua / HDEL, an operator's HDEL) is never seen by a replica holding a cache.
  it('an entry deleted without a version bump (older broker, by hand) stops issuance on B once its cache ages out', async () => {
    const id = await createEntry({ spiffeId: `spiffe://${TD}/byhand`, selectors: ['static_key:id:app'] });
    expect((await svid(b)).status).toBe(200);
    expect((await svid(b)).status).toBe(200); // cached on B
    // What an older replica's DELETE /v1/admin/entries/:id does: HDEL, no version.
    expect(await raw.hdel(`${prefix}entries`, id)).toBe(1);
    expect((await a.admin('GET', `/v1/admin/entries/${id}`)).status).toBe(404);
    // Versioned writes are seen at once (tests above); this one within the cache's maximum age (1 s).
    const refused = await waitFor(
      async () => {
        const res = await svid(b);
        return res.status === 200 ? undefined : res;
      },
      { timeoutMs: 5_000, intervalMs: 100, what: 'B to stop issuing for the entry deleted by hand' },
    );
    expect(refused.body.token).toBeUndefined();
    expect(refused.status).toBe(403);
  });
});

describe('entries cache across a Redis restart that loses everything', () => {
  let server: RedisServer;
  let a: TestBroker;
  let b: TestBroker;
  beforeAll(async () => {
    server = await startRedisServer();
    const config = {
      ...staticKeyConfig(uniquePrefix('hotpath-restart'), server.url),
      lifecycle: { worker: false },
    };
    a = await startTestBroker({ store: 'redis', config });
    b = await startTestBroker({ store: 'redis', config });
  });
  afterAll(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await server?.stop();
  });

  it('B holding a cache refuses after Redis comes back empty, and follows entries created afterwards', async () => {
    const created = await a.admin('POST', '/v1/admin/entries', {
      spiffeId: `spiffe://${TD}/before-restart`,
      selectors: ['static_key:id:app'],
    });
    expect(created.status).toBe(201);
    expect((await svid(b)).status).toBe(200);
    expect((await svid(b)).status).toBe(200);

    server.kill();
    server = await restartRedisServer({ port: server.port }); // no AOF: empty
    for (const x of [a, b]) {
      await waitFor(async () => (await x.request('GET', '/readyz')).status === 200, {
        timeoutMs: 15_000,
        intervalMs: 100,
        what: 'the broker to reconnect',
      });
    }
    // Signing keys are regenerated by whoever needs them; what matters is that no entry survives in B.
    const res = await svid(b);
    expect(res.body.token).toBeUndefined();
    expect(res.status, res.text).toBe(403);
    expect(res.body.error).toBe('ERR_NO_MATCHING_ENTRY');

    const again = await a.admin('POST', '/v1/admin/entries', {
      spiffeId: `spiffe://${TD}/after-restart`,
      selectors: ['static_key:id:app'],
      audiences: ['y'],
    });
    expect(again.status).toBe(201);
    const refused = await svid(b, ['x']);
    expect(refused.body.token).toBeUndefined();
    expect(refused.body.error).toBe('ERR_AUDIENCE_NOT_ALLOWED');
    const allowed = await svid(b, ['y']);
    expect(allowed.status, allowed.text).toBe(200);
    expect(allowed.body.spiffeId).toBe(`spiffe://${TD}/after-restart`);
  });
});

describe('task deadlines read from the store, without any lifecycle job', () => {
  let b: TestBroker;
  const clock = new FakeClock(Date.now());
  beforeAll(async () => {
    b = await startTestBroker({
      store: 'redis',
      clock: clock.clock,
      config: {
        ...staticKeyConfig(uniquePrefix('hotpath-deadline')),
        lifecycle: { worker: false, sweepIntervalMs: 3_600_000 },
      },
    });
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: `spiffe://${TD}/deadline`,
      selectors: ['static_key:id:app'],
      taskDeadline: 60,
    });
    expect(entry.status, entry.text).toBe(201);
  });
  afterAll(async () => {
    await b?.close();
  });

  it('a task past its deadline issues nothing more and its tokens do not introspect active', async () => {
    const task = `deadline-${Date.now()}`;
    const first = await svid(b, [b.url], { task });
    expect(first.status, first.text).toBe(200);
    expect(first.body.expiresAt).toBeLessThanOrEqual(clock.seconds() + 60);
    const active = await b.request('POST', '/v1/introspect', {
      body: { token: first.body.token },
      headers: { authorization: `Bearer ${b.adminToken}` },
    });
    expect(active.body.active).toBe(true);

    clock.advance(61_000);
    const late = await svid(b, [b.url], { task });
    expect(late.status).toBe(409);
    expect(late.body.error).toBe('ERR_TASK_ENDED');
    expect(late.body.token).toBeUndefined();
    const intro = await b.request('POST', '/v1/introspect', {
      body: { token: first.body.token },
      headers: { authorization: `Bearer ${b.adminToken}` },
    });
    expect(intro.body.active).toBe(false);
    const view = await b.admin('GET', `/v1/admin/tasks/${task}`);
    expect(view.status).toBe(200);
    expect(JSON.stringify(view.body)).not.toMatch(/"status":"active"/);
  });
});

// The broker's connection (auto-pipelining, maxRetriesPerRequest 1, ioredis' default autoResendUnfulfilledCommands)
// resends, after a quick reconnect, every command that was sent but not answered. The audit batch script is a
// compare-and-append: run twice, the second run answers "moved" and the client re-seals the same events on the
// new head and writes them again.
describe('a connection drop between an audit batch and its reply (TCP proxy in front of a private Redis)', () => {
  let server: RedisServer;
  let proxy: net.Server;
  let b: TestBroker;
  let prefix: string;
  let armed = false;
  let fired = false;
  beforeAll(async () => {
    server = await startRedisServer();
    prefix = uniquePrefix('hotpath-resend');
    proxy = net.createServer((client) => {
      const upstream = net.connect({ port: server.port, host: '127.0.0.1' });
      let cut = false;
      client.on('data', (chunk: Buffer) => {
        const text = chunk.toString('latin1').toLowerCase();
        if (
          armed &&
          !fired &&
          text.includes('evalsha') &&
          text.includes(`${prefix}audit:head`.toLowerCase())
        ) {
          fired = true;
          cut = true;
        }
        upstream.write(chunk);
      });
      upstream.on('data', (chunk: Buffer) => {
        if (cut) {
          client.destroy();
          upstream.destroy();
        } else client.write(chunk);
      });
      const close = () => {
        client.destroy();
        upstream.destroy();
      };
      for (const s of [client, upstream]) {
        s.on('error', close);
        s.on('close', close);
      }
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const url = `redis://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    b = await startTestBroker({
      store: 'redis',
      config: { ...staticKeyConfig(prefix, url), lifecycle: { worker: false } },
    });
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: `spiffe://${TD}/resend`,
      selectors: ['static_key:id:app'],
    });
    expect(entry.status).toBe(201);
    expect((await svid(b)).status).toBe(200); // the audit head is cached: the next record is one EVALSHA
  });
  afterAll(async () => {
    await b?.close();
    proxy?.close();
    await server?.stop();
  });

  it('SECURITY: one issuance has exactly one svid.issued record in the trail', async () => {
    armed = true;
    const issued = await svid(b);
    expect(fired).toBe(true);
    const raw = await plainRedis(server.url);
    try {
      const subjects = (await raw.xrange(`${prefix}audit`, '-', '+')).map(
        ([, f]) => `${f[f.indexOf('type') + 1]} ${f[f.indexOf('subject') + 1]}`,
      );
      if (issued.status === 200) {
        expect(subjects.filter((s) => s === `svid.issued credential:${issued.body.id}`)).toHaveLength(1);
      }
      // Whatever the answer, no issuance record appears twice.
      const issuedRecords = subjects.filter((s) => s.startsWith('svid.issued '));
      expect(new Set(issuedRecords).size).toBe(issuedRecords.length);
    } finally {
      raw.disconnect();
    }
  });
});

describe('X.509 issuance: the asynchronous CSR check runs before attestation', () => {
  let b: TestBroker;
  beforeAll(async () => {
    b = await startTestBroker({ store: 'redis', config: { trustDomain: TD, lifecycle: { worker: false } } });
  });
  afterAll(async () => {
    await b?.close();
  });

  it('a tampered CSR is refused without spending the single-use join token', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const good = createCsr(privateKey, { commonName: 'workload-cn' });
    const der = Buffer.from(good.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    der[der.indexOf(Buffer.from('workload-cn'))] = 'W'.charCodeAt(0);
    const body = der.toString('base64').replace(/(.{64})/g, '$1\n');
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${body}\n-----END CERTIFICATE REQUEST-----\n`;
    const jt = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: `spiffe://${TD}/x509-csr` });
    expect(jt.status).toBe(201);
    const bad = await b.request('POST', '/v1/svid/x509', {
      body: { attestor: 'join_token', evidence: { token: jt.body.token }, csr: tampered },
    });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe('ERR_CSR_SIGNATURE');
    expect(bad.body.certificate).toBeUndefined();
    const ok = await b.request('POST', '/v1/svid/x509', {
      body: { attestor: 'join_token', evidence: { token: jt.body.token }, csr: good },
    });
    expect(ok.status, ok.text).toBe(200);
    expect(ok.body.spiffeId).toBe(`spiffe://${TD}/x509-csr`);
  });
});
