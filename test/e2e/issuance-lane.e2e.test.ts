// The issuance lane (src/http/issuance-lane.ts) answers exactly as the express route it stands in front of. Each
// request goes once to `/v1/svid/jwt` (the lane) and once to `/v1/svid/jwt?via=express` (not the lane's exact path: express,
// whose router ignores the query), over raw HTTP so that every byte, length and chunking is the test's.
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';

const KEY = 'issuance-lane-static-key-0123456789abcdef';
const STATIC = { keys: [{ id: 'app', sha256: createHash('sha256').update(KEY).digest('hex') }] };
const AUD = ['https://api.example'];
const VALID = JSON.stringify({ attestor: 'static_key', evidence: { key: KEY }, audience: AUD });

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One request with exactly these bytes; `chunks` sends it chunked (no Content-Length). */
function send(
  b: TestBroker,
  path: string,
  body: string | Buffer | { chunks: Buffer[] },
  headers: Record<string, string> = { 'content-type': 'application/json' },
): Promise<Raw> {
  const url = new URL(path, b.url);
  return new Promise((resolve, reject) => {
    const chunked = typeof body === 'object' && !Buffer.isBuffer(body);
    const req = httpRequest(
      url,
      {
        method: 'POST',
        agent: false,
        headers: chunked ? headers : { 'content-length': String(Buffer.byteLength(body)), ...headers },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(parts).toString(),
          }),
        );
      },
    );
    req.on('error', reject);
    if (chunked) for (const c of body.chunks) req.write(c);
    else req.write(body);
    req.end();
  });
}

/** What must agree between the lane and express: status, the wire body (less per-request values), headers. */
function comparable(r: Raw): Record<string, unknown> {
  let body: unknown = r.text;
  try {
    body = JSON.parse(r.text);
  } catch {
    // not JSON: compared as text
  }
  if (typeof body === 'object' && body !== null && 'token' in body) {
    // A credential: its values differ by nature; its shape must not.
    body = Object.keys(body).sort();
  }
  return {
    status: r.status,
    body,
    contentType: r.headers['content-type'],
    cacheControl: r.headers['cache-control'],
    retryAfter: r.headers['retry-after'],
    requestId: typeof r.headers['x-request-id'] === 'string',
  };
}

describe('the issuance lane answers as the express route does', () => {
  let b: TestBroker;
  beforeAll(async () => {
    b = await startTestBroker({ config: { attestors: { static_key: STATIC } } });
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: 'spiffe://writ.local/lane',
      selectors: ['static_key:id:app'],
    });
    expect(entry.status).toBe(201);
  });
  afterAll(async () => {
    await b?.close();
  });

  const json = { 'content-type': 'application/json' };
  const cases: [string, string | Buffer | { chunks: Buffer[] }, Record<string, string>?][] = [
    ['a valid body', VALID],
    [
      'a valid body with a UTF-8 byte order mark',
      Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(VALID)]),
    ],
    ['a valid body after JSON whitespace', ` \t\r\n${VALID}`],
    [
      'a valid body sent chunked',
      { chunks: [Buffer.from(VALID.slice(0, 20)), Buffer.from(VALID.slice(20))] },
    ],
    ['a valid body, charset utf-8 named', VALID, { 'content-type': 'application/json; charset=utf-8' }],
    ['an empty body', ''],
    ['only whitespace', '   '],
    ['a JSON string', '"static_key"'],
    ['a JSON number', '42'],
    ['JSON null', 'null'],
    ['a non-breaking space before the object', `\u00a0${VALID}`],
    ['broken JSON', '{"attestor":"static_key",'],
    ['an array', '[]'],
    ['an unknown field', JSON.stringify({ ...JSON.parse(VALID), spare: 1 })],
    ['a __proto__ field', VALID.replace('{', '{"__proto__":{"admin":true},')],
    ['a wrong key', JSON.stringify({ attestor: 'static_key', evidence: { key: `${KEY}x` }, audience: AUD })],
    ['an unknown attestor', JSON.stringify({ attestor: 'nope', evidence: {}, audience: AUD })],
    ['a chunked body over the limit', { chunks: Array.from({ length: 80 }, () => Buffer.alloc(1024, 0x20)) }],
    ['a body over the limit by its length', Buffer.alloc(70 * 1024, 0x20)],
    ['UTF-16', VALID, { 'content-type': 'application/json; charset=utf-16' }],
    ['text/plain', VALID, { 'content-type': 'text/plain' }],
    ['no content type', VALID, {}],
    [
      'invalid UTF-8 inside a string',
      Buffer.from(VALID.replace(KEY, `${KEY}\u0000`).replace('\u0000', '\ufffd')),
    ],
  ];

  for (const [name, body, headers] of cases) {
    it(`gives the same answer to ${name}`, async () => {
      const lane = await send(b, '/v1/svid/jwt', body, headers ?? json);
      const express = await send(b, '/v1/svid/jwt?via=express', body, headers ?? json);
      expect(comparable(lane)).toEqual(comparable(express));
    });
  }

  it('issues through the lane what the express route issues (a valid body is a credential)', async () => {
    const lane = await send(b, '/v1/svid/jwt', VALID);
    expect(lane.status).toBe(200);
    expect(JSON.parse(lane.text).spiffeId).toBe('spiffe://writ.local/lane');
    // Sent whole with its length, not chunked.
    expect(lane.headers['content-length']).toBe(String(Buffer.byteLength(lane.text)));
    expect(lane.headers['transfer-encoding']).toBeUndefined();
  });

  it('counts and names lane requests in the request metrics like routed ones', async () => {
    const before = await b.request('GET', '/metrics');
    const count = (text: string, status: string) =>
      Number(
        new RegExp(
          `writ_http_requests_total\\{route="/v1/svid/jwt",method="POST",status="${status}"\\} (\\d+)`,
        ).exec(text)?.[1] ?? 0,
      );
    await send(b, '/v1/svid/jwt', VALID);
    await send(b, '/v1/svid/jwt', '{');
    const after = await b.request('GET', '/metrics');
    expect(count(after.text, '200') - count(before.text, '200')).toBe(1);
    expect(count(after.text, '400') - count(before.text, '400')).toBe(1);
  });

  it('gives every lane answer its own request id', async () => {
    const a = await send(b, '/v1/svid/jwt', VALID);
    const c = await send(b, '/v1/svid/jwt', '{');
    expect(a.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(c.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(a.headers['x-request-id']).not.toBe(c.headers['x-request-id']);
  });
});

describe('the issuance lane sees the source address express would (trust proxy)', () => {
  const limits = { enabled: true, attestationFailuresPerAddress: 2, attestationFailuresPerAttestor: 0 };
  const brokers: TestBroker[] = [];
  afterAll(async () => {
    await Promise.all(brokers.map((b) => b.close()));
  });
  const start = async (trustProxy: boolean | number) => {
    const b = await startTestBroker({
      config: { attestors: { static_key: STATIC }, rateLimit: limits, server: { trustProxy } },
    });
    brokers.push(b);
    await b.admin('POST', '/v1/admin/entries', {
      spiffeId: 'spiffe://writ.local/lane',
      selectors: ['static_key:id:app'],
    });
    return b;
  };
  const wrong = JSON.stringify({ attestor: 'static_key', evidence: { key: `${KEY}x` }, audience: AUD });
  const from = (ip: string) => ({ 'content-type': 'application/json', 'x-forwarded-for': ip });

  it('blocks the forwarded address, not the proxy, when one proxy hop is trusted', async () => {
    const b = await start(1);
    for (let i = 0; i < 2; i++)
      expect((await send(b, '/v1/svid/jwt', wrong, from('203.0.113.7'))).status).toBe(401);
    const blocked = await send(b, '/v1/svid/jwt', VALID, from('203.0.113.7'));
    expect(blocked.status).toBe(429);
    expect(Number(blocked.headers['retry-after'])).toBeGreaterThan(0);
    // The express route sees the same address, and so the same block.
    expect((await send(b, '/v1/svid/jwt?via=express', VALID, from('203.0.113.7'))).status).toBe(429);
    expect((await send(b, '/v1/svid/jwt', VALID, from('203.0.113.8'))).status).toBe(200);
  });

  it('ignores X-Forwarded-For when no proxy is trusted (a client cannot pick its address)', async () => {
    const b = await start(false);
    expect((await send(b, '/v1/svid/jwt', wrong, from('203.0.113.7'))).status).toBe(401);
    expect((await send(b, '/v1/svid/jwt', wrong, from('203.0.113.9'))).status).toBe(401);
    // Both failures counted against the socket's address: changing the header does not escape the block.
    expect((await send(b, '/v1/svid/jwt', VALID, from('198.51.100.1'))).status).toBe(429);
  });
});
