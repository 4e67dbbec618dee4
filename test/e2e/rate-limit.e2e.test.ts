// Rate limits over real HTTP, with the memory and the Redis store: attestation failures per address and
// per attestor, admin authentication failures, challenges; across replicas; Retry-After and the window.
import { createHash, randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signNonce, type TestCert, TestPki } from '../../attestors/x509pop/test-pki.ts';
import type { WritConfigInput } from '../../src/config/schema.ts';
import { addressKey } from '../../src/http/rate-limit.ts';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';
import { FakeClock } from '../helpers/clock.ts';
import { uniquePrefix } from '../helpers/redis.ts';

const KEY = `sk_${randomBytes(32).toString('base64url')}`;
const STATIC_KEY = {
  keys: [{ id: 'app', sha256: createHash('sha256').update(KEY).digest('hex') }],
};
const AUDIENCE = ['https://api.example'];
const WINDOW = 60;

interface Reply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: tests read arbitrary JSON
  body: any;
  retryAfter: string | undefined;
}

/** One JSON request over loopback from a chosen source address (127.0.0.0/8 is all local). */
function requestFrom(
  localAddress: string,
  b: TestBroker,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const url = new URL(path, b.url);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      {
        method,
        localAddress,
        agent: false,
        headers: { ...headers, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown = text;
          try {
            parsed = text ? JSON.parse(text) : undefined;
          } catch {
            // not JSON
          }
          const ra = res.headers['retry-after'];
          resolve({
            status: res.statusCode ?? 0,
            body: parsed,
            retryAfter: typeof ra === 'string' ? ra : undefined,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

function issueFrom(address: string, b: TestBroker, key: string): Promise<Reply> {
  return requestFrom(address, b, 'POST', '/v1/svid/jwt', {
    attestor: 'static_key',
    evidence: { key },
    audience: AUDIENCE,
  });
}

const wrongKey = () => `sk_${randomBytes(32).toString('base64url')}`;

async function metric(b: TestBroker, name: string, labels: string): Promise<number> {
  const text = (await b.request('GET', '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe('addressKey', () => {
  it('keys IPv4 as is, IPv4-mapped IPv6 as IPv4, and IPv6 by its /64', () => {
    expect(addressKey('127.0.0.1')).toBe('127.0.0.1');
    expect(addressKey('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(addressKey('2001:db8:1:2:aaaa::1')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:0db8:0001:0002:ffff:1:2:3')).toBe('2001:db8:1:2::/64');
    expect(addressKey('2001:db8::1')).toBe('2001:db8:0:0::/64');
    expect(addressKey('::1')).toBe('0:0:0:0::/64');
    expect(addressKey('64:ff9b::192.0.2.1')).toBe('64:ff9b:0:0::/64');
    expect(addressKey(undefined)).toBe('unknown');
  });
});

describe.each(['memory', 'redis'] as const)('rate limits (%s store)', (store) => {
  const pki = new TestPki();
  let root: TestCert;
  let clock: FakeClock;
  const brokers: TestBroker[] = [];

  beforeAll(() => {
    root = pki.issue({ cn: 'Rate Limit Root', ca: true, days: 3650 });
  });
  afterEach(async () => {
    await Promise.all(brokers.splice(0).map((b) => b.close()));
  });
  afterAll(() => pki.close());

  async function broker(rateLimit: WritConfigInput['rateLimit'], redisPrefix?: string): Promise<TestBroker> {
    const b = await startTestBroker({
      store,
      clock: clock.clock,
      config: {
        attestors: { static_key: STATIC_KEY, x509pop: { caBundle: root.pem } },
        rateLimit,
        ...(redisPrefix ? { redis: { prefix: redisPrefix } } : {}),
      },
    });
    brokers.push(b);
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: 'spiffe://writ.local/app',
      selectors: ['static_key:id:app'],
    });
    expect([201, 409]).toContain(entry.status);
    return b;
  }

  // Each test starts 10 s into a fresh window (ahead of real time, so Redis key expiry stays later).
  function startClock(): void {
    const nextWindow = (Math.floor(Date.now() / 1000 / WINDOW) + 1) * WINDOW;
    clock = new FakeClock((nextWindow + 10) * 1000);
  }

  it('blocks an address after N failures, valid keys included, with Retry-After, until the window passes', async () => {
    startClock();
    const b = await broker({ attestationFailuresPerAddress: 3, attestationFailuresPerAttestor: 0 });
    // Successes cost nothing.
    for (let i = 0; i < 5; i++) expect((await issueFrom('127.0.0.1', b, KEY)).status).toBe(200);
    for (let i = 0; i < 3; i++) {
      const res = await issueFrom('127.0.0.1', b, wrongKey());
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('ERR_ATTESTATION_FAILED');
    }
    const blocked = await issueFrom('127.0.0.1', b, KEY);
    expect(blocked.status).toBe(429);
    expect(blocked.retryAfter).toBe('50');
    expect(blocked.body).toEqual({
      error: 'ERR_RATE_LIMITED',
      error_description: 'too many failures; retry after 50 seconds',
    });
    clock.advance(20_000);
    const later = await issueFrom('127.0.0.1', b, KEY);
    expect(later.status).toBe(429);
    expect(later.retryAfter).toBe('30');
    expect(await metric(b, 'writ_rate_limited_total', 'limit="attestation_address"')).toBe(2);

    // Per attestor: join_token from the same address is not blocked.
    const jt = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: 'spiffe://writ.local/other' });
    const other = await requestFrom('127.0.0.1', b, 'POST', '/v1/svid/jwt', {
      attestor: 'join_token',
      evidence: { token: jt.body.token },
      audience: AUDIENCE,
    });
    expect(other.status).toBe(200);
    // Per address: another address is not blocked.
    expect((await issueFrom('127.0.0.2', b, KEY)).status).toBe(200);

    clock.advance(30_000); // the window has passed
    expect((await issueFrom('127.0.0.1', b, KEY)).status).toBe(200);
  });

  it('blocks an attestor for everyone once its global failure budget is spent', async () => {
    startClock();
    const b = await broker({ attestationFailuresPerAddress: 100, attestationFailuresPerAttestor: 4 });
    for (const address of ['127.0.0.1', '127.0.0.1', '127.0.0.2', '127.0.0.2']) {
      expect((await issueFrom(address, b, wrongKey())).status).toBe(401);
    }
    const res = await issueFrom('127.0.0.3', b, KEY);
    expect(res.status).toBe(429);
    expect(res.retryAfter).toBe('50');
    expect(await metric(b, 'writ_rate_limited_total', 'limit="attestation_attestor"')).toBe(1);
    clock.advance(50_000);
    expect((await issueFrom('127.0.0.3', b, KEY)).status).toBe(200);
  });

  it('blocks admin authentication from an address after N failures, the right token included', async () => {
    startClock();
    const b = await broker({ adminAuthFailuresPerAddress: 3 });
    const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
    for (let i = 0; i < 3; i++) {
      const res = await requestFrom(
        '127.0.0.1',
        b,
        'GET',
        '/v1/admin/entries',
        undefined,
        bearer(wrongKey()),
      );
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('ERR_ADMIN_UNAUTHENTICATED');
    }
    const blocked = await requestFrom(
      '127.0.0.1',
      b,
      'GET',
      '/v1/admin/entries',
      undefined,
      bearer(b.adminToken),
    );
    expect(blocked.status).toBe(429);
    expect(blocked.retryAfter).toBe('50');
    expect(blocked.body.error).toBe('ERR_RATE_LIMITED');
    const intro = await requestFrom(
      '127.0.0.1',
      b,
      'POST',
      '/v1/introspect',
      { token: 'x' },
      bearer(b.adminToken),
    );
    expect(intro.status).toBe(429);
    const elsewhere = await requestFrom(
      '127.0.0.2',
      b,
      'GET',
      '/v1/admin/entries',
      undefined,
      bearer(b.adminToken),
    );
    expect(elsewhere.status).toBe(200);
    clock.advance(50_000);
    const after = await requestFrom(
      '127.0.0.1',
      b,
      'GET',
      '/v1/admin/entries',
      undefined,
      bearer(b.adminToken),
    );
    expect(after.status).toBe(200);
  });

  it('limits challenges per address, and gives none to an address blocked for x509pop', async () => {
    startClock();
    const b = await broker({ challengesPerAddress: 4, attestationFailuresPerAddress: 2 });
    const challenge = (address: string) =>
      requestFrom(address, b, 'POST', '/v1/attest/challenge', { attestor: 'x509pop' });
    for (let i = 0; i < 4; i++) expect((await challenge('127.0.0.1')).status).toBe(200);
    const fifth = await challenge('127.0.0.1');
    expect(fifth.status).toBe(429);
    expect(fifth.retryAfter).toBe('50');

    // Two failed x509pop attestations from 127.0.0.2 (a self-signed leaf): no more nonces for it.
    const leaf = pki.issue({ cn: 'self' });
    for (let i = 0; i < 2; i++) {
      const { body } = await challenge('127.0.0.2');
      const res = await requestFrom('127.0.0.2', b, 'POST', '/v1/svid/jwt', {
        attestor: 'x509pop',
        evidence: { nonce: body.nonce, chain: [leaf.pem], signature: signNonce(leaf, body.nonce) },
        audience: AUDIENCE,
      });
      expect(res.status).toBe(401);
    }
    const refused = await challenge('127.0.0.2');
    expect(refused.status).toBe(429);
    expect(refused.body.error).toBe('ERR_RATE_LIMITED');
  });

  it('limits nothing when disabled', async () => {
    startClock();
    const b = await broker({
      enabled: false,
      attestationFailuresPerAddress: 1,
      adminAuthFailuresPerAddress: 1,
    });
    for (let i = 0; i < 3; i++) expect((await issueFrom('127.0.0.1', b, wrongKey())).status).toBe(401);
    expect((await issueFrom('127.0.0.1', b, KEY)).status).toBe(200);
    for (let i = 0; i < 3; i++) {
      expect((await requestFrom('127.0.0.1', b, 'GET', '/v1/admin/entries')).status).toBe(401);
    }
    expect((await b.admin('GET', '/v1/admin/entries')).status).toBe(200);
  });

  if (store === 'redis') {
    it('shares counters and blocks across replicas on one Redis', async () => {
      startClock();
      const prefix = uniquePrefix('rate-limit');
      const limits = { attestationFailuresPerAddress: 3, attestationFailuresPerAttestor: 0 };
      const a = await broker(limits, prefix);
      const c = await broker(limits, prefix);
      expect((await issueFrom('127.0.0.1', a, wrongKey())).status).toBe(401);
      expect((await issueFrom('127.0.0.1', c, wrongKey())).status).toBe(401);
      expect((await issueFrom('127.0.0.1', a, wrongKey())).status).toBe(401);
      const res = await issueFrom('127.0.0.1', c, KEY);
      expect(res.status).toBe(429);
      expect(res.retryAfter).toBe('50');
      expect((await issueFrom('127.0.0.1', a, KEY)).status).toBe(429);
      clock.advance(50_000);
      expect((await issueFrom('127.0.0.1', c, KEY)).status).toBe(200);
    });
  }
});
