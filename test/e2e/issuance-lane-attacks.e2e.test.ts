// An attacker's differential test of the issuance lane (src/http/issuance-lane.ts): every request is sent as raw
// bytes over one TCP connection, once to the lane's exact path and once to the same path with a query (which only
// express serves), and the two answers must agree byte for byte (less per-request values). Content types and
// charsets, framing (duplicate lengths, chunked, lying lengths, Expect), URL forms, methods, X-Forwarded-For
// variants under each trust-proxy setting (the source address the audit trail records), aborted uploads,
// pipelining, and a stalled upload at shutdown. Real broker, real HTTP over loopback.
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { gzipSync } from 'node:zlib';
import express, { type RequestHandler, type Response } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Deps } from '../../src/deps.ts';
import { WritError } from '../../src/errors.ts';
import { issuanceLane } from '../../src/http/issuance-lane.ts';
import { errorHandler, isJsonBody, notFound, requestLog } from '../../src/http/middleware.ts';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';

const KEY = 'issuance-lane-attack-static-key-0123456789';
const STATIC = { keys: [{ id: 'app', sha256: createHash('sha256').update(KEY).digest('hex') }] };
const AUD = ['https://api.example'];
const VALID = JSON.stringify({ attestor: 'static_key', evidence: { key: KEY }, audience: AUD });
const WRONG = JSON.stringify({ attestor: 'static_key', evidence: { key: `${KEY}x` }, audience: AUD });
const LANE = '/v1/svid/jwt';
const EXPRESS = '/v1/svid/jwt?via=express';

/** Sends `bytes` on a fresh connection and returns everything the server wrote until it closed (or `idleMs`). */
function raw(b: TestBroker, bytes: string | Buffer | Buffer[], idleMs = 1_500): Promise<string> {
  const { port } = new URL(b.url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), '127.0.0.1');
    const parts: Buffer[] = [];
    let timer = setTimeout(() => socket.destroy(), idleMs);
    socket.on('data', (c: Buffer) => {
      parts.push(c);
      clearTimeout(timer);
      timer = setTimeout(() => socket.destroy(), idleMs);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts).toString('latin1'));
    });
    for (const part of Array.isArray(bytes) ? bytes : [bytes]) socket.write(part);
  });
}

/** A response with its per-request values (dates, request ids, credentials, chunk sizes) blanked. */
function normalize(text: string): string {
  return text
    .replace(/^(date|x-request-id|keep-alive): .*\r\n/gim, '')
    .replace(/"(token|id|task|expiresAt)":("[^"]*"|\d+)/g, '"$1":_')
    .replace(/^content-length: \d+\r\n/gim, 'content-length: _\r\n')
    .replace(/\r\n[0-9a-f]+\r\n/g, '\r\n_\r\n');
}

/** A request to `path` built from `head` lines (no request line) and a body. */
function request(path: string, head: string[], body: string | Buffer = '', method = 'POST'): Buffer {
  return Buffer.concat([
    Buffer.from(
      `${method} ${path} HTTP/1.1\r\nHost: writ.test\r\nConnection: close\r\n${head.join('\r\n')}\r\n\r\n`,
      'latin1',
    ),
    Buffer.isBuffer(body) ? body : Buffer.from(body),
  ]);
}

const json = (body: string | Buffer, type = 'application/json') => [
  `Content-Type: ${type}`,
  `Content-Length: ${Buffer.byteLength(body)}`,
];

async function same(b: TestBroker, make: (path: string) => Buffer | string | Buffer[]): Promise<string> {
  const lane = normalize(await raw(b, make(LANE)));
  const express = normalize(await raw(b, make(EXPRESS)));
  expect(lane).toBe(express);
  return lane;
}

const status = (text: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0);

describe('the lane and express give the same answer to', () => {
  let b: TestBroker;
  beforeAll(async () => {
    b = await startTestBroker({ config: { attestors: { static_key: STATIC } } });
    const entry = await b.admin('POST', '/v1/admin/entries', {
      spiffeId: 'spiffe://writ.local/lane-attacks',
      selectors: ['static_key:id:app'],
    });
    expect(entry.status).toBe(201);
  });
  afterAll(async () => {
    await b?.close();
  });

  // Charsets body-parser refuses (its rule: the first charset, unquoted, must start with "utf-" and be known).
  const refusedByBodyParser = [
    'application/json; charset=utf8',
    'application/json; charset="utf8"',
    'application/json; charset=UTF8',
    'application/json; charset=utf8"',
    'application/json; charset="utf-8;x"',
  ];
  for (const type of refusedByBodyParser) {
    it(`Content-Type: ${type}`, async () => {
      const answer = await same(b, (p) => request(p, json(VALID, type), VALID));
      expect(status(answer)).toBe(415);
    });
  }

  const accepted = [
    'application/json',
    'application/json; charset=utf-8',
    'application/json; charset=UTF-8',
    'application/json; charset="utf-8"',
    'Application/JSON; Charset=utf-8',
    'application/json ; charset = utf-8',
    'application/json;\tcharset=utf-8',
    'application/json; charset="utf-8',
    'application/json; foo',
    'application/json; foo=bar; charset=utf-8',
    'application/json; charset=utf-8;',
  ];
  for (const type of accepted) {
    it(`Content-Type: ${type}`, async () => {
      await same(b, (p) => request(p, json(VALID, type), VALID));
    });
  }

  const refused = [
    'application/json; charset=utf-16',
    'application/json; charset=utf-8; charset=utf-16',
    'application/json; charset=utf-16; charset=utf-8',
    'application/json, text/plain',
    'application/jsonx',
    'application/json-patch+json',
    'text/json',
  ];
  for (const type of refused) {
    it(`Content-Type: ${type}`, async () => {
      const answer = await same(b, (p) => request(p, json(VALID, type), VALID));
      expect(status(answer)).toBe(415);
    });
  }

  it('two Content-Type headers (node keeps the first)', async () => {
    await same(b, (p) =>
      request(
        p,
        ['Content-Type: application/json', 'Content-Type: text/plain', `Content-Length: ${VALID.length}`],
        VALID,
      ),
    );
    await same(b, (p) =>
      request(
        p,
        ['Content-Type: text/plain', 'Content-Type: application/json', `Content-Length: ${VALID.length}`],
        VALID,
      ),
    );
  });

  const L = Buffer.byteLength(VALID);
  const framing: [string, (p: string) => Buffer | Buffer[]][] = [
    [
      'duplicate equal Content-Length',
      (p) =>
        request(p, ['Content-Type: application/json', `Content-Length: ${L}`, `Content-Length: ${L}`], VALID),
    ],
    [
      'duplicate differing Content-Length',
      (p) =>
        request(p, ['Content-Type: application/json', 'Content-Length: 5', `Content-Length: ${L}`], VALID),
    ],
    [
      'Content-Length with a sign',
      (p) => request(p, ['Content-Type: application/json', `Content-Length: +${L}`], VALID),
    ],
    [
      'Content-Length as a list',
      (p) => request(p, ['Content-Type: application/json', `Content-Length: ${L}, ${L}`], VALID),
    ],
    [
      'Transfer-Encoding and Content-Length',
      (p) =>
        request(
          p,
          ['Content-Type: application/json', 'Content-Length: 5', 'Transfer-Encoding: chunked'],
          `${L.toString(16)}\r\n${VALID}\r\n0\r\n\r\n`,
        ),
    ],
    [
      'Transfer-Encoding: identity',
      (p) => request(p, ['Content-Type: application/json', 'Transfer-Encoding: identity'], VALID),
    ],
    [
      'Transfer-Encoding: chunked, chunked',
      (p) =>
        request(
          p,
          ['Content-Type: application/json', 'Transfer-Encoding: chunked, chunked'],
          `${L.toString(16)}\r\n${VALID}\r\n0\r\n\r\n`,
        ),
    ],
    [
      'a chunk extension',
      (p) =>
        request(
          p,
          ['Content-Type: application/json', 'Transfer-Encoding: chunked'],
          `${L.toString(16)};x=y\r\n${VALID}\r\n0\r\n\r\n`,
        ),
    ],
    [
      'a bad chunk size',
      (p) =>
        request(
          p,
          ['Content-Type: application/json', 'Transfer-Encoding: chunked'],
          `zz\r\n${VALID}\r\n0\r\n\r\n`,
        ),
    ],
    [
      'one-byte chunks up to the limit and past it',
      (p) =>
        request(
          p,
          ['Content-Type: application/json', 'Transfer-Encoding: chunked'],
          Buffer.concat([
            ...Array.from({ length: 64 * 1024 + 1 }, () => Buffer.from('1\r\n \r\n')),
            Buffer.from('0\r\n\r\n'),
          ]),
        ),
    ],
    [
      'a body of exactly the limit',
      (p) => {
        const body = Buffer.alloc(64 * 1024, 0x20);
        body[0] = 0x7b;
        body[body.length - 1] = 0x7d;
        return request(p, json(body), body);
      },
    ],
    [
      'a body one byte over the limit',
      (p) => request(p, json(Buffer.alloc(64 * 1024 + 1, 0x20)), Buffer.alloc(64 * 1024 + 1, 0x20)),
    ],
    [
      'a Content-Length of 10 digits',
      (p) => request(p, ['Content-Type: application/json', 'Content-Length: 0000000001'], '{'),
    ],
    [
      'a Content-Length shorter than the body (the rest is a second, broken request)',
      (p) => request(p, ['Content-Type: application/json', 'Content-Length: 2'], `{}${VALID}`),
    ],
    [
      'Expect: 100-continue with a length over the limit',
      (p) =>
        request(p, ['Content-Type: application/json', 'Expect: 100-continue', 'Content-Length: 70000'], ''),
    ],
    [
      'Expect: 100-continue with the body',
      (p) => request(p, [...json(VALID), 'Expect: 100-continue'], VALID),
    ],
    ['an unknown Expect', (p) => request(p, [...json(VALID), 'Expect: 200-ok'], VALID)],
    ['a gzip body', (p) => request(p, [...json(gzipSync(VALID)), 'Content-Encoding: gzip'], gzipSync(VALID))],
    [
      'Content-Encoding: identity, gzip',
      (p) => request(p, [...json(gzipSync(VALID)), 'Content-Encoding: identity, gzip'], gzipSync(VALID)),
    ],
    ['Content-Encoding: IDENTITY', (p) => request(p, [...json(VALID), 'Content-Encoding: IDENTITY'], VALID)],
    ['an unknown Content-Encoding', (p) => request(p, [...json(VALID), 'Content-Encoding: x-evil'], VALID)],
    ['no length and no chunking', (p) => request(p, ['Content-Type: application/json'], '')],
    [
      'a UTF-16 byte order mark on a UTF-8 declared body',
      (p) => {
        const body = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(VALID, 'utf16le')]);
        return request(p, json(body), body);
      },
    ],
    [
      'two UTF-8 byte order marks',
      (p) => {
        const body = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf, 0xef, 0xbb, 0xbf]), Buffer.from(VALID)]);
        return request(p, json(body), body);
      },
    ],
    [
      'only a byte order mark',
      (p) => {
        const body = Buffer.from([0xef, 0xbb, 0xbf]);
        return request(p, json(body), body);
      },
    ],
    [
      'a split multi-byte character across chunks',
      (p) => {
        const body = Buffer.from(VALID.replace('"audience"', '"audi\u00e9nce"'));
        const cut = body.indexOf(0xc3) + 1;
        return [
          request(
            p,
            ['Content-Type: application/json', 'Transfer-Encoding: chunked'],
            `${cut.toString(16)}\r\n`,
          ),
          body.subarray(0, cut),
          Buffer.from(`\r\n${(body.length - cut).toString(16)}\r\n`),
          body.subarray(cut),
          Buffer.from('\r\n0\r\n\r\n'),
        ];
      },
    ],
    [
      'a truncated multi-byte character at the end',
      (p) => {
        const body = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xe2, 0x82])]);
        return request(p, json(body), body);
      },
    ],
    [
      'deeply nested arrays',
      (p) => {
        const body = `${'['.repeat(30_000)}${']'.repeat(30_000)}`;
        return request(p, json(body), body);
      },
    ],
    [
      'a duplicate attestor member (the last wins)',
      (p) => {
        const body = VALID.replace('{', '{"attestor":"nope",');
        return request(p, json(body), body);
      },
    ],
    [
      'HTTP/1.0 with a body',
      (p) =>
        Buffer.from(
          `POST ${p} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: ${L}\r\n\r\n${VALID}`,
        ),
    ],
    [
      'an obsolete line folding in Content-Type',
      (p) =>
        Buffer.from(
          `POST ${p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json;\r\n charset=utf-16\r\nContent-Length: ${L}\r\n\r\n${VALID}`,
        ),
    ],
  ];
  for (const [name, make] of framing) {
    it(name, async () => {
      await same(b, make);
    });
  }

  const urls = [
    '/V1/SVID/JWT',
    '/v1/svid/jwt/',
    '//v1/svid/jwt',
    '/v1/svid/jwt#',
    '/v1/svid/jwt?',
    '/v1/svid/%6Awt',
    '/v1/svid/./jwt',
    '/v1/svid/jwt;x',
    'http://writ.test/v1/svid/jwt',
    '*',
  ];
  for (const url of urls) {
    it(`POST ${url} (express alone serves it; the answer is the express route's or express's 404)`, async () => {
      // Both requests go to express here: the check is that the lane takes none of them and nothing breaks.
      const one = normalize(await raw(b, request(url, json(VALID), VALID)));
      const two = normalize(await raw(b, request(url, json(VALID), VALID)));
      expect(one).toBe(two);
      expect(status(one)).toBeGreaterThan(0);
    });
  }

  for (const method of ['HEAD', 'OPTIONS', 'GET', 'PUT', 'PATCH', 'DELETE', 'post']) {
    it(`${method} on the lane's path`, async () => {
      await same(b, (p) => request(p, json(VALID), VALID, method));
    });
  }

  it('pipelined requests on one connection are answered in order, lane and express interleaved', async () => {
    const keepAlive = (p: string, body: string) =>
      Buffer.from(
        `POST ${p} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
      );
    const text = await raw(b, [
      keepAlive(LANE, VALID),
      keepAlive(EXPRESS, '{'),
      keepAlive(LANE, '[]'),
      keepAlive(EXPRESS, VALID),
      request(LANE, json('{'), '{'),
    ]);
    const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    expect(statuses).toEqual([200, 400, 400, 200, 400]);
  });
});

describe('an aborted upload', () => {
  let b: TestBroker;
  beforeAll(async () => {
    b = await startTestBroker({ config: { attestors: { static_key: STATIC } } });
    await b.admin('POST', '/v1/admin/entries', {
      spiffeId: 'spiffe://writ.local/lane-attacks',
      selectors: ['static_key:id:app'],
    });
  });
  afterAll(async () => {
    await b?.close();
  });

  const metric = async () => {
    const text = (await b.request('GET', '/metrics')).text;
    const lines = text
      .split('\n')
      .filter((l) => l.startsWith('writ_http_requests_total{route="/v1/svid/jwt"'));
    return lines.sort().join('\n');
  };

  it('issues nothing, counts the same in the request metrics, and leaves the broker serving', async () => {
    const results: string[] = [];
    for (const path of [LANE, EXPRESS]) {
      const before = await metric();
      // Half the body, then the connection is cut (lengths and chunked).
      await raw(
        b,
        request(
          path,
          ['Content-Type: application/json', `Content-Length: ${VALID.length}`],
          VALID.slice(0, 30),
        ),
        200,
      );
      await raw(
        b,
        request(
          path,
          ['Content-Type: application/json', 'Transfer-Encoding: chunked'],
          `${(VALID.length).toString(16)}\r\n${VALID.slice(0, 30)}`,
        ),
        200,
      );
      const ok = await raw(b, request(path, json(VALID), VALID));
      expect(status(ok)).toBe(200);
      results.push(`${before}\n=>\n${await metric()}`);
    }
    const delta = (s: string) => {
      const [before = '', after = ''] = s.split('\n=>\n');
      const count = (t: string) =>
        Object.fromEntries(
          t
            .split('\n')
            .filter(Boolean)
            .map((l) => {
              const [k = '', v = '0'] = l.split(' ');
              return [k, Number(v)];
            }),
        );
      const a = count(after);
      const c = count(before);
      return Object.fromEntries(
        Object.entries(a)
          .map(([k, v]) => [k, v - (c[k] ?? 0)])
          .filter(([, v]) => v !== 0),
      );
    };
    expect(delta(results[0] as string)).toEqual(delta(results[1] as string));
  });
});

describe('the source address each path records (audit source_ip) under each trust-proxy setting', () => {
  const settings: (boolean | number | string)[] = [
    false,
    true,
    1,
    2,
    'loopback',
    '127.0.0.0/8, 10.0.0.0/8',
    'uniquelocal',
    '10.0.0.0/8',
  ];
  const forwarded: string[][] = [
    [],
    ['X-Forwarded-For: 203.0.113.7'],
    ['X-Forwarded-For: 10.1.1.1, 203.0.113.7'],
    ['X-Forwarded-For: 203.0.113.7, 10.1.1.1'],
    ['X-Forwarded-For: 203.0.113.7', 'X-Forwarded-For: 10.1.1.1'],
    ['X-Forwarded-For: 203.0.113.9,198.51.100.2 , 10.2.2.2'],
    ['X-Forwarded-For: not-an-ip'],
    ['X-Forwarded-For: 203.0.113.7:8080'],
    ['X-Forwarded-For: [2001:db8::1]'],
    ['X-Forwarded-For: 2001:db8::1, ::ffff:10.9.9.9'],
    ['X-Forwarded-For: ,,,'],
    ['X-Forwarded-For: '],
    ['x-forwarded-for: 198.51.100.77', 'X-Real-IP: 192.0.2.1', 'Forwarded: for=192.0.2.60'],
    [`X-Forwarded-For: ${Array.from({ length: 200 }, (_, i) => `10.0.${i >> 8}.${i & 255}`).join(', ')}`],
  ];
  const brokers: TestBroker[] = [];
  afterAll(async () => {
    await Promise.all(brokers.map((x) => x.close()));
  });

  for (const trustProxy of settings) {
    it(`trustProxy ${JSON.stringify(trustProxy)}`, async () => {
      const b = await startTestBroker({
        config: { attestors: { static_key: STATIC }, server: { trustProxy } },
      });
      brokers.push(b);
      const seen: [string, unknown, unknown][] = [];
      for (const head of forwarded) {
        const ips: unknown[] = [];
        for (const path of [LANE, EXPRESS]) {
          const answer = await raw(b, request(path, [...json(WRONG), ...head], WRONG));
          expect(status(answer)).toBe(401);
          const page = await b.admin('GET', '/v1/admin/audit?limit=1000');
          const denials = (page.body.records as { type: string; details?: { source_ip?: unknown } }[]).filter(
            (r) => r.type === 'svid.denied',
          );
          ips.push(denials.at(-1)?.details?.source_ip);
        }
        seen.push([head.join(' | '), ips[0], ips[1]]);
      }
      for (const [head, lane, express] of seen) expect({ head, ip: lane }).toEqual({ head, ip: express });
      // Not vacuous: the socket's address without a header, the forwarded one where a hop is trusted.
      expect(seen[0]?.[1]).toBe('127.0.0.1');
      const trusted = trustProxy !== false && trustProxy !== 'uniquelocal' && trustProxy !== '10.0.0.0/8';
      expect(seen[1]?.[1]).toBe(trusted ? '203.0.113.7' : '127.0.0.1');
    });
  }
});

describe('a stalled upload at shutdown', () => {
  it('holds the broker no longer than a stalled express request (both cut at the grace period)', async () => {
    const b = await startTestBroker({
      config: { attestors: { static_key: STATIC }, server: { shutdownGraceMs: 100 } },
    });
    const { port } = new URL(b.url);
    const stalled = [LANE, EXPRESS].map(
      (path) =>
        new Promise<string>((resolve) => {
          const socket = connect(Number(port), '127.0.0.1');
          const parts: Buffer[] = [];
          socket.on('data', (c: Buffer) => parts.push(c));
          socket.on('error', () => {});
          socket.on('close', () => resolve(Buffer.concat(parts).toString()));
          socket.write(
            request(
              path,
              ['Content-Type: application/json', `Content-Length: ${VALID.length}`],
              VALID.slice(0, 10),
            ),
          );
        }),
    );
    // Both requests are in (a request to another path on a fresh connection is answered after them).
    expect((await b.request('GET', '/healthz')).status).toBeLessThan(600);
    await b.close();
    const [lane, express] = await Promise.all(stalled);
    expect(normalize(lane as string)).toBe(normalize(express as string));
  });
});

describe('steps that misbehave (a differential harness: the lane and express around the same steps)', () => {
  type Step = RequestHandler;
  const servers: Server[] = [];
  afterAll(async () => {
    for (const s of servers) {
      s.closeAllConnections();
      await new Promise((resolve) => s.close(resolve));
    }
  });

  /** A server whose `/lane` is the lane and `/lane?via=express` the express route, both running `steps`. */
  async function serve(steps: Step[]): Promise<TestBroker> {
    const logged: unknown[] = [];
    const deps = {
      config: { server: { bodyLimit: 64 * 1024 } },
      logger: { error: (o: unknown) => logged.push(o), isLevelEnabled: () => false, info: () => {} },
      metrics: { httpRequests: { inc: () => {} } },
    } as unknown as Deps;
    const log = requestLog(deps);
    const app = express();
    app.disable('x-powered-by');
    app.use(log);
    app.post('/lane', express.json({ limit: 64 * 1024, strict: true, type: isJsonBody }), ...steps);
    app.use(notFound);
    app.use(errorHandler(deps));
    const server = createServer(issuanceLane(deps, app, log, new Map([['/lane', steps]])));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { url } as TestBroker;
  }

  const answer = (res: Response, body: string) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(body);
  };
  const cases: [string, Step[]][] = [
    ['a last step that calls next()', [(_q, _s, next) => next()]],
    ['next(err) with a WritError', [(_q, _s, next) => next(new WritError('ERR_NOT_FOUND'))]],
    ['a rejected promise without a reason', [async () => Promise.reject(undefined)]],
    [
      'an error after the answer was sent',
      [
        async (_q, s) => {
          answer(s, 'sent');
          throw new Error('late');
        },
      ],
    ],
    [
      'a synchronous throw',
      [
        () => {
          throw new WritError('invalid_request', 'thrown');
        },
      ],
    ],
    ['next() then an answer from the next step', [(_q, _s, next) => next(), (_q, s) => answer(s, 'second')]],
    [
      'a step that calls next() twice',
      [
        (_q, _s, next) => {
          next();
          next();
        },
        (_q, s) => answer(s, 'once'),
      ],
    ],
    ["next('route')", [(_q, _s, next) => next('route')]],
  ];
  for (const [name, steps] of cases) {
    it(name, async () => {
      const b = await serve(steps);
      const lane = normalize(await raw(b, request('/lane', json('{}'), '{}')));
      const viaExpress = normalize(await raw(b, request('/lane?via=express', json('{}'), '{}')));
      expect(lane).toBe(viaExpress);
    });
  }
});
