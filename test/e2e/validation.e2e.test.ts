// Every malformed request gets a 4xx with a stable error code, and changes nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../helpers/broker.ts';

const TD = 'example.org';
const ID = `spiffe://${TD}/svc`;

// Every rule of the SPIFFE-ID standard, once.
const INVALID_IDS: Array<[string, string]> = [
  ['empty', ''],
  ['no scheme', `${TD}/svc`],
  ['wrong scheme', `https://${TD}/svc`],
  ['uppercase scheme', `SPIFFE://${TD}/svc`],
  ['empty trust domain', 'spiffe:///svc'],
  ['uppercase trust domain', 'spiffe://Example.org/svc'],
  ['port', `spiffe://${TD}:443/svc`],
  ['userinfo', `spiffe://user@${TD}/svc`],
  ['percent-encoded trust domain', 'spiffe://ex%41mple.org/svc'],
  ['invalid trust domain character', 'spiffe://exa_mple!.org/svc'],
  ['empty segment', `spiffe://${TD}//svc`],
  ['trailing slash', `spiffe://${TD}/svc/`],
  ['dot segment', `spiffe://${TD}/./svc`],
  ['dot-dot segment', `spiffe://${TD}/a/../svc`],
  ['query', `spiffe://${TD}/svc?x=1`],
  ['fragment', `spiffe://${TD}/svc#frag`],
  ['percent-encoded path', `spiffe://${TD}/s%20vc`],
  ['invalid path character', `spiffe://${TD}/s*vc`],
  ['whitespace', `spiffe://${TD}/s vc`],
  ['trailing newline', `spiffe://${TD}/svc\n`],
  ['too long', `spiffe://${TD}/${'a'.repeat(2048)}`],
  ['trust domain too long', `spiffe://${'a'.repeat(256)}/svc`],
  ['the trust domain ID itself (no path)', `spiffe://${TD}`],
  ['not a string', 42 as unknown as string],
];

describe('request validation', () => {
  let b: TestBroker;
  beforeAll(async () => {
    b = await startTestBroker({ config: { trustDomain: TD } });
  });
  afterAll(async () => {
    await b?.close();
  });

  const auth = () => ({ authorization: `Bearer ${b.adminToken}` });

  describe('invalid SPIFFE IDs are refused with 400 wherever an API accepts one', () => {
    it.each(INVALID_IDS)('%s', async (_name, spiffeId) => {
      const selector = 'join_token:spiffe_id:x';
      const before = (await b.admin('GET', '/v1/admin/entries')).body.entries.length;
      const created = await b.admin('POST', '/v1/admin/entries', { spiffeId, selectors: [selector] });
      const entryId = (
        await b.admin('POST', '/v1/admin/entries', { spiffeId: ID, selectors: [`k:a:${Math.random()}`] })
      ).body.id;
      const updated = await b.admin('PUT', `/v1/admin/entries/${entryId}`, {
        spiffeId,
        selectors: [selector],
      });
      const joinToken = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId });
      const svid = await b.request('POST', '/v1/svid/jwt', {
        body: { attestor: 'join_token', evidence: { token: 'x' }, audience: ['a'], spiffeId },
      });
      for (const res of [created, updated, joinToken, svid]) {
        expect(res.status).toBe(400);
        expect(['ERR_SPIFFE_ID_INVALID', 'invalid_request']).toContain(res.body.error);
        if (typeof spiffeId === 'string') expect(res.body.error).toBe('ERR_SPIFFE_ID_INVALID');
      }
      expect((await b.admin('GET', `/v1/admin/entries/${entryId}`)).body.spiffeId).toBe(ID);
      expect((await b.admin('GET', '/v1/admin/entries')).body.entries.length).toBe(before + 1);
      expect((await b.admin('DELETE', `/v1/admin/entries/${entryId}`)).status).toBe(204);
    });

    it('refuses a SPIFFE ID of another trust domain', async () => {
      const res = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: 'spiffe://other.org/svc' });
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('ERR_SPIFFE_ID_INVALID');
      expect(res.body.error_description).toContain('trust domain');
    });
  });

  describe('malformed issuance requests leave the join token usable', () => {
    const cases: Array<
      [
        string,
        (token: string) => { raw?: string; body?: unknown; headers?: Record<string, string> },
        number,
        string,
      ]
    > = [
      [
        'no content type',
        (t) => ({ raw: JSON.stringify({ attestor: 'join_token', evidence: { token: t }, audience: ['a'] }) }),
        415,
        'ERR_UNSUPPORTED_MEDIA_TYPE',
      ],
      [
        'text/plain',
        (t) => ({
          raw: JSON.stringify({ attestor: 'join_token', evidence: { token: t }, audience: ['a'] }),
          headers: { 'content-type': 'text/plain' },
        }),
        415,
        'ERR_UNSUPPORTED_MEDIA_TYPE',
      ],
      [
        'invalid JSON',
        (t) => ({
          raw: `{"attestor":"join_token","evidence":{"token":"${t}"}`,
          headers: { 'content-type': 'application/json' },
        }),
        400,
        'invalid_request',
      ],
      [
        'a JSON array',
        (t) => ({ body: [{ attestor: 'join_token', evidence: { token: t } }] }),
        400,
        'invalid_request',
      ],
      [
        'unknown field',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t }, audience: ['a'], admin: true } }),
        400,
        'invalid_request',
      ],
      [
        'unknown evidence field',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t, x: 1 }, audience: ['a'] } }),
        401,
        'ERR_ATTESTATION_FAILED',
      ],
      [
        'no audience',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t } } }),
        400,
        'invalid_request',
      ],
      [
        'empty audience',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t }, audience: [] } }),
        400,
        'invalid_request',
      ],
      [
        'audience not a list',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t }, audience: 'a' } }),
        400,
        'invalid_request',
      ],
      [
        'ttl 0',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t }, audience: ['a'], ttl: 0 } }),
        400,
        'invalid_request',
      ],
      [
        'negative ttl',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t }, audience: ['a'], ttl: -5 } }),
        400,
        'invalid_request',
      ],
      [
        'fractional ttl',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t }, audience: ['a'], ttl: 1.5 } }),
        400,
        'invalid_request',
      ],
      [
        'ttl as a string',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t }, audience: ['a'], ttl: '60' } }),
        400,
        'invalid_request',
      ],
      [
        'ttl over the cap',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t }, audience: ['a'], ttl: 86_401 } }),
        400,
        'ERR_TTL_INVALID',
      ],
      [
        'invalid task id',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t }, audience: ['a'], task: 'a{b}' } }),
        400,
        'invalid_request',
      ],
      [
        'unknown attestor',
        (t) => ({ body: { attestor: 'nope', evidence: { token: t }, audience: ['a'] } }),
        400,
        'ERR_ATTESTOR_UNKNOWN',
      ],
      ['no evidence', () => ({ body: { attestor: 'join_token', audience: ['a'] } }), 400, 'invalid_request'],
      [
        'a body over the limit',
        (t) => ({ body: { attestor: 'join_token', evidence: { token: t }, audience: ['a'.repeat(70_000)] } }),
        413,
        'ERR_BODY_TOO_LARGE',
      ],
    ];

    it.each(cases)('%s', async (_name, make, status, code) => {
      const token = (await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: ID })).body.token as string;
      const res = await b.request('POST', '/v1/svid/jwt', make(token));
      expect(res.status).toBe(status);
      expect(res.body.error).toBe(code);
      expect(typeof res.body.error_description).toBe('string');
      expect(res.text).not.toContain(token);
      expect(res.body.token).toBeUndefined();
      if (status !== 401) {
        // nothing changed: the join token still works
        const ok = await b.request('POST', '/v1/svid/jwt', {
          body: { attestor: 'join_token', evidence: { token }, audience: ['a'] },
        });
        expect(ok.status).toBe(200);
      }
    });
  });

  it('refuses a join-token task outside a platform namespace', async () => {
    const res = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: ID, task: 'release-42' });
    expect(res.status).toBe(400);
    expect(res.body.error).toBe('invalid_request');
    expect(
      (await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: ID, task: 'release:42' })).status,
    ).toBe(201);
  });

  it('answers unknown routes with a structured 404', async () => {
    const res = await b.request('GET', '/v1/nope');
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: 'ERR_NOT_FOUND', error_description: 'no such resource' });
  });

  it('validates registration entries', async () => {
    const bad: unknown[] = [
      { spiffeId: ID },
      { spiffeId: ID, selectors: [] },
      { spiffeId: ID, selectors: ['no-colons'] },
      { spiffeId: ID, selectors: ['a:b:c', 'a:b:c'] },
      { spiffeId: ID, selectors: ['a:b:c'], jwtTtl: 0 },
      { spiffeId: ID, selectors: ['a:b:c'], extra: 1 },
    ];
    for (const body of bad) {
      const res = await b.admin('POST', '/v1/admin/entries', body);
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('invalid_request');
    }
    const res = await b.request('PUT', '/v1/admin/entries/not-a-uuid', {
      body: { spiffeId: ID, selectors: ['a:b:c'] },
      headers: auth(),
    });
    expect(res.status).toBe(404);
  });

  it('manages registration entries', async () => {
    const body = { spiffeId: `${ID}/crud`, selectors: ['join_token:spiffe_id:a', 'x:y:z'], jwtTtl: 60 };
    const created = await b.admin('POST', '/v1/admin/entries', body);
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject(body);
    const id = created.body.id as string;
    expect(created.headers.get('location')).toBe(`/v1/admin/entries/${id}`);
    const dup = await b.admin('POST', '/v1/admin/entries', {
      ...body,
      selectors: ['x:y:z', 'join_token:spiffe_id:a'],
    });
    expect(dup.status).toBe(409);
    expect(dup.body.error).toBe('ERR_ENTRY_CONFLICT');
    expect((await b.admin('GET', `/v1/admin/entries/${id}`)).body).toEqual(created.body);
    const updated = await b.admin('PUT', `/v1/admin/entries/${id}`, {
      spiffeId: `${ID}/crud2`,
      selectors: ['x:y:z'],
    });
    expect(updated.status).toBe(200);
    expect(updated.body.spiffeId).toBe(`${ID}/crud2`);
    expect(updated.body.jwtTtl).toBeUndefined();
    expect(updated.body.createdAt).toBe(created.body.createdAt);
    expect((await b.admin('DELETE', `/v1/admin/entries/${id}`)).status).toBe(204);
    expect((await b.admin('GET', `/v1/admin/entries/${id}`)).status).toBe(404);
    expect((await b.admin('DELETE', `/v1/admin/entries/${id}`)).status).toBe(404);
  });
});
