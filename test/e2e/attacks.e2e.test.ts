// Attacks on the broker over loopback HTTP, against both stores. A test that fails here names a vulnerability;
// the others are regression tests for attacks that are defeated today.
import { createHash, sign as cryptoSign, randomBytes, randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import {
  calculateJwkThumbprint,
  decodeJwt,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type CryptoKey as JoseKey,
  type JWTPayload,
  SignJWT,
} from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashJoinToken } from '../../attestors/join_token/index.ts';
import { configSchema } from '../../src/config/schema.ts';
import { WritError } from '../../src/errors.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { type Broker, startBroker } from '../../src/server.ts';
import { MemoryStore } from '../../src/store/memory/memory.store.ts';
import { startTestBroker, type TestBroker, type TestResponse } from '../helpers/broker.ts';
import { FakeClock } from '../helpers/clock.ts';
import { deleteKeys, testRedis, uniquePrefix } from '../helpers/redis.ts';

const TD = 'example.org';
const AUD = 'https://api.example';
let counter = 0;
/** A SPIFFE ID no other test uses. */
const freshId = (name: string) => `spiffe://${TD}/${name}/${++counter}-${randomBytes(3).toString('hex')}`;
const freshTask = (name: string) => `${name}-${++counter}-${randomBytes(3).toString('hex')}`;

async function joinToken(b: TestBroker, spiffeId: string, extra: Record<string, unknown> = {}) {
  const res = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId, ...extra });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return res.body.token as string;
}

function svidBody(token: string, extra: Record<string, unknown> = {}) {
  return { attestor: 'join_token', evidence: { token }, audience: [AUD], ...extra };
}

function exchange(b: TestBroker, token: string, extra: Record<string, unknown> = {}) {
  return b.request('POST', '/v1/svid/jwt', { body: svidBody(token, extra) });
}

function introspect(b: TestBroker, token: string) {
  return b.request('POST', '/v1/introspect', {
    body: { token },
    headers: { authorization: `Bearer ${b.adminToken}` },
  });
}

/** The join token was not spent: it still buys exactly one credential. */
async function expectUnspent(b: TestBroker, token: string) {
  const ok = await exchange(b, token);
  expect(ok.status, JSON.stringify(ok.body)).toBe(200);
}

function expectNoCredential(res: TestResponse) {
  expect(res.status).toBeGreaterThanOrEqual(400);
  expect(res.body?.token).toBeUndefined();
  expect(typeof res.body?.error).toBe('string');
}

describe.each(['memory', 'redis'] as const)('attacks against the broker with the %s store', (store) => {
  let b: TestBroker;
  const clock = new FakeClock(Date.now());

  beforeAll(async () => {
    b = await startTestBroker({ store, clock: clock.clock, config: { trustDomain: TD } });
  });
  afterAll(async () => {
    await b?.close();
  });

  describe('join tokens', () => {
    it('gives exactly one credential when one token is exchanged 25 times concurrently', async () => {
      const spiffeId = freshId('race');
      const token = await joinToken(b, spiffeId);
      const before = b.broker.deps.store instanceof MemoryStore ? b.broker.deps.store.size().credentials : 0;
      const results = await Promise.all(Array.from({ length: 25 }, () => exchange(b, token)));
      const ok = results.filter((r) => r.status === 200);
      expect(ok).toHaveLength(1);
      for (const r of results.filter((r) => r.status !== 200)) {
        expect(r.status).toBe(401);
        expect(r.body).toEqual({
          error: 'ERR_ATTESTATION_FAILED',
          error_description: 'join_token: the join token is invalid, used or expired',
        });
      }
      if (b.broker.deps.store instanceof MemoryStore) {
        expect(b.broker.deps.store.size().credentials).toBe(before + 1);
      }
      expect((await introspect(b, ok[0]!.body.token)).body.active).toBe(true);
      expect((await exchange(b, token)).status).toBe(401);
    });

    it('gives exactly one credential for a task-bound token raced on its own task', async () => {
      const task = `release:${freshTask('bound-race')}`;
      const token = await joinToken(b, freshId('bound-race'), { task });
      const results = await Promise.all(Array.from({ length: 10 }, () => exchange(b, token)));
      expect(results.filter((r) => r.status === 200)).toHaveLength(1);
    });

    it('never accepts a token that is not exactly the one issued', async () => {
      const token = await joinToken(b, freshId('variants'));
      const variants = [
        token.toUpperCase(),
        `${token} `,
        ` ${token}`,
        `${token}\n`,
        `${token}=`,
        token.slice(0, -1),
        token.replace('writ_jt_', 'WRIT_JT_'),
        token.normalize('NFKC').replace(/a/g, '\u0430'), // Cyrillic a
        hashJoinToken(token),
        `writ_jt_${hashJoinToken(token)}`,
      ].filter((v) => v !== token);
      for (const variant of variants) {
        const res = await exchange(b, variant);
        expect(res.status).toBe(401);
        expect(res.body.error).toBe('ERR_ATTESTATION_FAILED');
        expect(res.text).not.toContain(token);
      }
      // Evidence of the wrong shape is refused without spending anything.
      for (const evidence of [token, [token], { token: [token] }, { token, extra: 1 }, { Token: token }]) {
        const res = await b.request('POST', '/v1/svid/jwt', {
          body: { attestor: 'join_token', evidence, audience: [AUD] },
        });
        expect(res.status).toBe(401);
        expect(res.text).not.toContain(token);
      }
      await expectUnspent(b, token);
    });

    it('refuses an expired token even when it is raced at the boundary', async () => {
      const token = await joinToken(b, freshId('expiry'), { ttl: 1 });
      clock.advance(1_000);
      const results = await Promise.all(Array.from({ length: 5 }, () => exchange(b, token)));
      for (const r of results) expect(r.status).toBe(401);
    });
  });

  describe('identity', () => {
    it('never issues a SPIFFE ID other than the one the join token was made for', async () => {
      const mine = freshId('mine');
      const victim = freshId('victim');
      // An entry for the victim that names the attacker's selector: it must not turn the token into the victim.
      const entry = await b.admin('POST', '/v1/admin/entries', {
        spiffeId: victim,
        selectors: [`join_token:spiffe_id:${mine}`],
      });
      expect(entry.status).toBe(201);
      const refused = await exchange(b, await joinToken(b, mine), { spiffeId: victim });
      expect(refused.status).toBe(403);
      expectNoCredential(refused);
      for (const spiffeId of [`${mine}/sub`, `${mine.toUpperCase()}`, `${mine}\n`, `spiffe://other.org/x`]) {
        const res = await exchange(b, await joinToken(b, mine), { spiffeId });
        expectNoCredential(res);
      }
      const ok = await exchange(b, await joinToken(b, mine));
      expect(ok.status).toBe(200);
      expect(ok.body.spiffeId).toBe(mine);
      expect(decodeJwt(ok.body.token).sub).toBe(mine);
    });

    // FINDING: the trust domain's own ID is accepted as a workload identity (admin API and issuance).
    it('refuses to make a workload credential for the trust domain ID itself', async () => {
      const res = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: `spiffe://${TD}` });
      if (res.status === 201) {
        const issued = await exchange(b, res.body.token);
        expect(issued.body.token, 'a JWT-SVID with sub = the trust domain ID was issued').toBeUndefined();
      }
      expect(res.status).toBe(400);
      expect(res.body.error).toBe('ERR_SPIFFE_ID_INVALID');
      const entry = await b.admin('POST', '/v1/admin/entries', {
        spiffeId: `spiffe://${TD}`,
        selectors: ['join_token:spiffe_id:x'],
      });
      expect(entry.status).toBe(400);
    });

    it('enforces entry audiences byte for byte (no Unicode or whitespace look-alikes)', async () => {
      const spiffeId = freshId('aud');
      expect(
        (
          await b.admin('POST', '/v1/admin/entries', {
            spiffeId,
            selectors: [`join_token:spiffe_id:${spiffeId}`],
            audiences: [AUD],
          })
        ).status,
      ).toBe(201);
      for (const audience of [
        [`${AUD} `],
        [` ${AUD}`],
        [`${AUD}\u200b`],
        [`\u202e${AUD}`],
        ['https://API.example'],
        ['\uff48ttps://api.example'],
        [`${AUD}/`],
        [AUD, 'https://evil.example'],
      ]) {
        const res = await exchange(b, await joinToken(b, spiffeId), { audience });
        expect(res.status, JSON.stringify(audience)).toBe(403);
        expect(res.body.error).toBe('ERR_AUDIENCE_NOT_ALLOWED');
      }
      for (const audience of [[`${AUD}\n`], [`${AUD}\u0000`], [''], ['x'.repeat(513)]]) {
        const token = await joinToken(b, spiffeId);
        const res = await exchange(b, token, { audience });
        expect(res.status).toBe(400);
        await expectUnspent(b, token);
      }
    });
  });

  describe('tasks', () => {
    it('does not let another identity join or poison a caller-named task', async () => {
      const owner = freshId('owner');
      const attacker = freshId('attacker');
      const task = freshTask('build');
      const first = await exchange(b, await joinToken(b, owner), { task });
      expect(first.status).toBe(200);
      const hijack = await exchange(b, await joinToken(b, attacker), { task });
      expect(hijack.status).toBe(403);
      expect(hijack.body.error).toBe('ERR_TASK_MISMATCH');
      // An admin cannot bind a join token to a caller-named task (no ':'): it is the owner's alone.
      const bound = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: attacker, task });
      expect(bound.status).toBe(400);
      // The owner is unaffected.
      const again = await exchange(b, await joinToken(b, owner), { task });
      expect(again.status).toBe(200);
      expect((await introspect(b, first.body.token)).body.active).toBe(true);
    });

    it('lets exactly one identity open a task raced by ten', async () => {
      const task = freshTask('contended');
      const ids = Array.from({ length: 10 }, () => freshId('racer'));
      const tokens = await Promise.all(ids.map((id) => joinToken(b, id)));
      const results = await Promise.all(tokens.map((t) => exchange(b, t, { task })));
      const ok = results.filter((r) => r.status === 200);
      expect(ok).toHaveLength(1);
      for (const r of results.filter((r) => r.status !== 200)) expect(r.body.error).toBe('ERR_TASK_MISMATCH');
    });

    // Fixed finding: caller-named and platform task ids shared one namespace, so any workload could squat
    // a task the admin bound a join token to (and burn that token). Platform tasks now carry a ':' that
    // callers may not use.
    it('does not let an unrelated workload squat a task an admin bound to another identity', async () => {
      const victim = freshId('deployer');
      const attacker = freshId('squatter');
      const task = `release:${freshTask('release')}`;
      const victimToken = await joinToken(b, victim, { task });
      const attackerToken = await joinToken(b, attacker);
      const squat = await exchange(b, attackerToken, { task });
      expect(squat.status).toBe(400);
      expect(squat.body.error).toBe('invalid_request');
      const victimRes = await exchange(b, victimToken);
      expect(
        victimRes.status,
        `squatter got ${squat.status}; the victim got ${JSON.stringify(victimRes.body)}`,
      ).toBe(200);
      expect(victimRes.body.task).toBe(task);
    });

    it('refuses task ids that could break out of a Redis hash tag or key', async () => {
      const bad = [
        'a}b',
        '{t:x}',
        'x}:cred:y',
        'x\ny',
        'x y',
        '../x',
        '-x',
        '.x',
        'x*',
        'x?',
        'a'.repeat(201),
        't\u00e2che',
        'x\u0000',
        '',
        ' x',
        'x\u200b',
      ];
      const token = await joinToken(b, freshId('taskid'));
      for (const task of bad) {
        const res = await exchange(b, token, { task });
        expect(res.status, JSON.stringify(task)).toBe(400);
        expect(res.body.error).toBe('invalid_request');
        const jt = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: freshId('taskid'), task });
        expect(jt.status).toBe(400);
      }
      const odd = freshTask('a.b/c@d+e=f-g.h_i');
      const res = await exchange(b, token, { task: odd });
      expect(res.status).toBe(200);
      expect(decodeJwt(res.body.token).task).toBe(odd);
      if (store === 'redis') {
        const redis = await testRedis();
        try {
          const prefix = b.broker.deps.config.redis.prefix;
          expect(await redis.exists(`${prefix}{t:${odd}}:task`)).toBe(1);
          // the task's only credential is kept in the task hash
          expect(await redis.hget(`${prefix}{t:${odd}}:task`, 'k')).toBe(res.body.id);
        } finally {
          redis.disconnect();
        }
      }
    });
  });

  describe('untracked credentials', () => {
    it('returns no token when the credential cannot be recorded', async () => {
      const storeUnderTest = b.broker.deps.store;
      const original = storeUnderTest.recordIssuance.bind(storeUnderTest);
      const token = await joinToken(b, freshId('unrecorded'));
      const calls: string[] = [];
      storeUnderTest.recordIssuance = async (credential) => {
        calls.push(credential.id);
        throw new WritError('ERR_STORE_UNAVAILABLE', undefined, { cause: new Error('injected') });
      };
      try {
        const res = await exchange(b, token);
        expect(res.status).toBe(503);
        expect(res.body).toEqual({
          error: 'ERR_STORE_UNAVAILABLE',
          error_description: 'the credential store is unavailable; nothing was issued',
        });
        expect(res.text).not.toContain('eyJ');
        expect(res.text).not.toContain('injected');
        expect(calls).toHaveLength(1);
      } finally {
        storeUnderTest.recordIssuance = original;
      }
    });

    // Redis only: the memory store has no typed keys to corrupt.
    if (store === 'redis')
      it('returns no token when Redis holds a wrong-typed task key', async () => {
        const task = freshTask('wrongtype');
        const redis = await testRedis();
        try {
          await redis.set(`${b.broker.deps.config.redis.prefix}{t:${task}}:task`, 'not a hash');
          const res = await exchange(b, await joinToken(b, freshId('wrongtype')), { task });
          expect(res.status).toBe(500);
          expect(res.body).toEqual({ error: 'server_error', error_description: 'internal error' });
        } finally {
          redis.disconnect();
        }
      });
  });

  describe('lifetimes', () => {
    it('never lets a credential outlive the task deadline, the entry or the caps', async () => {
      const spiffeId = freshId('short');
      const created = await b.admin('POST', '/v1/admin/entries', {
        spiffeId,
        selectors: [`join_token:spiffe_id:${spiffeId}`],
        taskDeadline: 60,
      });
      expect(created.status).toBe(201);
      const task = freshTask('short');
      const opened = clock.seconds();
      const first = await exchange(b, await joinToken(b, spiffeId), { task, ttl: 3600 });
      expect(first.status).toBe(200);
      expect(first.body.expiresAt).toBeLessThanOrEqual(opened + 60);
      // Raising the entry's deadline later does not stretch the task that is already open.
      const raised = await b.admin('PUT', `/v1/admin/entries/${created.body.id}`, {
        spiffeId,
        selectors: [`join_token:spiffe_id:${spiffeId}`],
        taskDeadline: 7 * 86_400,
        jwtTtl: 7 * 86_400,
      });
      expect(raised.status).toBe(200);
      clock.advance(30_000);
      const joined = await exchange(b, await joinToken(b, spiffeId), { task, ttl: 86_400 });
      expect(joined.status).toBe(200);
      expect(joined.body.expiresAt).toBeLessThanOrEqual(opened + 60);
      expect(decodeJwt(joined.body.token).exp).toBe(joined.body.expiresAt);
      // Past the deadline: nothing is issued and nothing reads active.
      clock.advance(31_000);
      const late = await exchange(b, await joinToken(b, spiffeId), { task });
      expect(late.status).toBe(409);
      expect(late.body.error).toBe('ERR_TASK_ENDED');
      expect((await introspect(b, first.body.token)).body).toEqual({ active: false });
      expect((await introspect(b, joined.body.token)).body).toEqual({ active: false });
      // A new task for the identity is capped by credentials.maxTtl and maxTaskDeadline (default 24 h).
      const fresh = await exchange(b, await joinToken(b, spiffeId), { ttl: 86_400 });
      expect(fresh.status).toBe(200);
      expect(fresh.body.expiresAt - clock.seconds()).toBeLessThanOrEqual(86_400);
    });

    it.each<[string, string]>([
      ['Infinity via 1e400', '1e400'],
      ['huge', '9007199254740993'],
      ['max safe integer', '9007199254740991'],
      ['over the cap', '86401'],
      ['negative', '-1'],
      ['negative zero', '-0'],
      ['zero', '0'],
      ['float', '300.5'],
      ['tiny float', '1e-9'],
      ['string', '"300"'],
      ['hex string', '"0x12c"'],
      ['array', '[300]'],
      ['object', '{"$gt":0}'],
      ['boolean', 'true'],
      ['null', 'null'],
    ])('refuses a ttl that is %s without spending the join token', async (_name, ttl) => {
      const token = await joinToken(b, freshId('ttl'));
      const raw = `{"attestor":"join_token","evidence":{"token":"${token}"},"audience":["${AUD}"],"ttl":${ttl}}`;
      const res = await b.request('POST', '/v1/svid/jwt', {
        raw,
        headers: { 'content-type': 'application/json' },
      });
      expect(res.status).toBe(400);
      expect(['invalid_request', 'ERR_TTL_INVALID']).toContain(res.body.error);
      await expectUnspent(b, token);
    });

    it('refuses odd join-token lifetimes', async () => {
      for (const ttl of [0, -1, 1.5, '600', 30 * 86_400 + 1, 1e21, null]) {
        const res = await b.admin('POST', '/v1/admin/join-tokens', { spiffeId: freshId('jtttl'), ttl });
        expect(res.status, JSON.stringify(ttl)).toBe(400);
      }
    });
  });

  describe('introspection', () => {
    let issued: { token: string; id: string; task: string; spiffeId: string };
    let claims: JWTPayload;
    let victimTask: string;

    beforeAll(async () => {
      const res = await exchange(b, await joinToken(b, freshId('intro')), { ttl: 600 });
      expect(res.status).toBe(200);
      issued = res.body;
      claims = decodeJwt(issued.token);
      const victim = await exchange(b, await joinToken(b, freshId('intro-victim')));
      victimTask = victim.body.task;
    });

    /** Signs with the broker's own key: what a relying party could never do, but defence in depth must hold. */
    async function resign(payload: JWTPayload, header: Record<string, unknown> = {}) {
      const key = b.broker.deps.keys.current();
      return new SignJWT(payload)
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT', ...header })
        .sign(key.privateKey);
    }

    /** Signs any header with the broker's ES256 key, bypassing jose's own checks. */
    function rawSign(header: Record<string, unknown>, payload: JWTPayload): string {
      const enc = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
      const input = `${enc(header)}.${enc(payload)}`;
      const signature = cryptoSign('sha256', Buffer.from(input), {
        key: b.broker.deps.keys.current().privateKey,
        dsaEncoding: 'ieee-p1363',
      });
      return `${input}.${signature.toString('base64url')}`;
    }

    it('reports a faithful re-signing as active (control)', async () => {
      expect((await introspect(b, await resign(claims))).body.active).toBe(true);
      const kid = b.broker.deps.keys.current().kid;
      expect((await introspect(b, rawSign({ alg: 'ES256', kid, typ: 'JWT' }, claims))).body.active).toBe(
        true,
      );
    });

    it('reports tokens signed with our key but not matching a live record as inactive', async () => {
      const { task: _t, ...noTask } = claims;
      const { jti: _j, ...noJti } = claims;
      const { sub: _s, ...noSub } = claims;
      const { exp: _e, ...noExp } = claims;
      const { iss: _i, ...noIss } = claims;
      const forged = [
        await resign(noTask),
        await resign(noJti),
        await resign(noSub),
        await resign(noExp),
        await resign(noIss),
        await resign({ ...claims, jti: randomUUID() }),
        await resign({ ...claims, task: victimTask }),
        await resign({ ...claims, sub: `spiffe://${TD}/admin` }),
        await resign({ ...claims, iss: 'https://evil.example' }),
        await resign({ ...claims, iss: `${b.url}/` }),
        await resign({ ...claims, jti: 123 as unknown as string }),
        await resign({ ...claims, task: ['x'] as unknown as string }),
        await resign({ ...claims, nbf: clock.seconds() + 3600 }),
        await resign(claims, { typ: 'at+jwt' }),
        rawSign({ alg: 'ES256', kid: b.broker.deps.keys.current().kid }, claims),
        rawSign(
          { alg: 'ES256', kid: b.broker.deps.keys.current().kid, typ: 'JWT', crit: ['x'], x: 1 },
          claims,
        ),
        rawSign(
          { alg: 'ES256', kid: b.broker.deps.keys.current().kid, typ: 'JWT', b64: false, crit: ['b64'] },
          claims,
        ),
      ];
      for (const token of forged) {
        const res = await introspect(b, token);
        expect(res.status).toBe(200);
        expect(res.body, JSON.stringify(decodeJwt(token))).toEqual({ active: false });
      }
    });

    it('does not let a re-signed longer exp outlive the record', async () => {
      const stretched = await resign({ ...claims, exp: (claims.exp as number) + 86_400 });
      clock.advance(((claims.exp as number) - clock.seconds() + 1) * 1000);
      expect((await introspect(b, issued.token)).body).toEqual({ active: false });
      expect((await introspect(b, stretched)).body).toEqual({ active: false });
    });

    it('refuses algorithm confusion, none, foreign keys and kid tricks', async () => {
      const key = b.broker.deps.keys.current();
      const fresh = (await exchange(b, await joinToken(b, freshId('alg')))).body.token as string;
      const payload = decodeJwt(fresh);
      const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
      const body = fresh.split('.')[1]!;
      const spki = await exportSPKI(key.publicKey);
      const publicJwk = b.broker.deps.keys.jwks().keys[0]!;
      const attacker = await generateKeyPair('ES256', { extractable: true });
      const attackerJwk = await exportJWK(attacker.publicKey);
      const attackerKid = await calculateJwkThumbprint(attackerJwk);
      const rsa = await generateKeyPair('RS256', { extractable: true });
      const hmac = (secret: string) =>
        new SignJWT(payload)
          .setProtectedHeader({ alg: 'HS256', kid: key.kid, typ: 'JWT' })
          .sign(new TextEncoder().encode(secret));
      const signWith = (k: JoseKey, alg: string, header: Record<string, unknown>) =>
        new SignJWT(payload).setProtectedHeader({ alg, typ: 'JWT', ...header }).sign(k);
      const forged = [
        `${b64({ alg: 'none', kid: key.kid, typ: 'JWT' })}.${body}.`,
        `${b64({ alg: 'none', kid: key.kid, typ: 'JWT' })}.${body}`,
        `${b64({ alg: 'NONE', kid: key.kid, typ: 'JWT' })}.${body}.`,
        await hmac(spki),
        await hmac(JSON.stringify(publicJwk)),
        await hmac(key.kid),
        await hmac(createHash('sha256').update(spki).digest('base64url')),
        await signWith(attacker.privateKey, 'ES256', { kid: key.kid }),
        await signWith(attacker.privateKey, 'ES256', { kid: key.kid, jwk: attackerJwk }),
        await signWith(attacker.privateKey, 'ES256', {
          kid: attackerKid,
          jku: `${b.url}/.well-known/jwks.json`,
        }),
        await signWith(attacker.privateKey, 'ES256', { jwk: attackerJwk }),
        await signWith(attacker.privateKey, 'ES256', { kid: '__proto__' }),
        await signWith(attacker.privateKey, 'ES256', { kid: 'constructor' }),
        await signWith(attacker.privateKey, 'ES256', { kid: 0 }),
        await signWith(rsa.privateKey, 'RS256', { kid: key.kid }),
        // our header and payload, our signature moved onto another payload
        `${fresh.split('.')[0]}.${b64({ ...payload, sub: `spiffe://${TD}/admin` })}.${fresh.split('.')[2]}`,
        // JWS JSON serialization of a valid token
        JSON.stringify({
          protected: fresh.split('.')[0],
          payload: body,
          signature: fresh.split('.')[2],
        }),
        `${fresh}.`,
        ` ${fresh}`,
        fresh.replace(/\./g, '..'),
      ];
      expect((await introspect(b, fresh)).body.active).toBe(true);
      for (const token of forged) {
        const res = await introspect(b, token);
        expect(res.status, token).toBe(200);
        expect(res.body, token).toEqual({ active: false });
      }
    });

    it("reports another broker's tokens as inactive", async () => {
      const other = await startTestBroker({ store: 'memory', config: { trustDomain: TD } });
      try {
        const res = await exchange(other, await joinToken(other, freshId('foreign')));
        expect(res.status).toBe(200);
        expect((await introspect(b, res.body.token)).body).toEqual({ active: false });
      } finally {
        await other.close();
      }
    });
  });

  describe('admin authentication', () => {
    it('cannot be bypassed through path, method or header variants', async () => {
      const t = b.adminToken;
      const paths = [
        '/v1/admin/entries',
        '/V1/ADMIN/ENTRIES',
        '/v1/admin/entries/',
        '/v1/admin/entries?admin=1',
        '/v1//admin/entries',
        '//v1/admin/entries',
        '/v1/admin//entries',
        '/v1/%61dmin/entries',
        '/v1/admin%2fentries',
        '/v1/admin/./entries',
        '/v1/x/../admin/entries',
        '/v1/admin;/entries',
        '/v1/admin/entries%00',
        '/v1/admin/entries#x',
      ];
      const headerSets: Array<Record<string, string>> = [
        {},
        { authorization: '' },
        { authorization: 'Bearer' },
        { authorization: 'Bearer ' },
        { authorization: `Bearer  ${t}` },
        { authorization: `Bearer\t${t}` },
        { authorization: `Token ${t}` },
        { authorization: `Basic ${Buffer.from(`admin:${t}`).toString('base64')}` },
        { authorization: `Bearer ${t.slice(0, -1)}` },
        { authorization: `Bearer ${t}${t}` },
        { authorization: `Bearer ${t},Bearer ${t}` },
        { authorization: `Bearer ${Buffer.from(t).toString('base64')}` },
        { authorization: `Bearer ${createHash('sha256').update(t).digest('hex')}` },
        { 'x-admin-token': t },
        { cookie: `authorization=Bearer ${t}` },
        { 'x-forwarded-for': '127.0.0.1', 'x-real-ip': '127.0.0.1' },
      ];
      for (const path of paths) {
        for (const headers of headerSets) {
          for (const method of ['GET', 'HEAD', 'OPTIONS', 'POST']) {
            const res = await b.request(method, path, {
              headers: method === 'POST' ? { ...headers, 'content-type': 'application/json' } : headers,
              ...(method === 'POST'
                ? { raw: JSON.stringify({ spiffeId: freshId('x'), selectors: ['a:b:c'] }) }
                : {}),
            });
            expect([401, 404], `${method} ${path} ${JSON.stringify(headers)}`).toContain(res.status);
            expect(res.text).not.toContain('"entries"');
            expect(res.text).not.toContain('"id"');
          }
        }
      }
      for (const query of [`?access_token=${t}`, `?token=${t}`, `?authorization=Bearer%20${t}`]) {
        expect((await b.request('GET', `/v1/admin/entries${query}`)).status).toBe(401);
      }
      // The auth scheme is case-insensitive (RFC 7235 §2.1): `bearer` is the same scheme, not a bypass.
      expect(
        (await b.request('GET', '/v1/admin/entries', { headers: { authorization: `bearer ${t}` } })).status,
      ).toBe(200);
      const jt = await b.request('POST', '/v1/admin/join-tokens', {
        body: { spiffeId: freshId('x') },
        headers: { authorization: `Token ${t}` },
      });
      expect(jt.status).toBe(401);
      expect(jt.body.token).toBeUndefined();
      expect(jt.headers.get('www-authenticate')).toContain('Bearer');
      expect(jt.text).not.toContain(t);
      // Introspection is admin-only too.
      for (const headers of headerSets) {
        const res = await b.request('POST', '/v1/introspect', {
          body: { token: 'x' },
          headers,
        });
        expect(res.status).toBe(401);
        expect(res.body.error).toBe('ERR_ADMIN_UNAUTHENTICATED');
      }
    });
  });

  describe('bodies', () => {
    it('refuses prototype pollution in every JSON body, writing nothing', async () => {
      const token = await joinToken(b, freshId('proto'));
      const victim = freshId('proto-victim');
      const svidBodies = [
        `{"__proto__":{"spiffeId":"${victim}"},"attestor":"join_token","evidence":{"token":"${token}"},"audience":["${AUD}"]}`,
        `{"constructor":{"prototype":{"spiffeId":"${victim}"}},"attestor":"join_token","evidence":{"token":"${token}"},"audience":["${AUD}"]}`,
        `{"attestor":"join_token","evidence":{"token":"${token}"},"audience":["${AUD}"],"__proto__":{"ttl":604800}}`,
        `{"attestor":"join_token","evidence":{"token":"${token}","__proto__":{"token":"x"}},"audience":["${AUD}"]}`,
        `{"attestor":"join_token","evidence":{"__proto__":{"token":"${token}"}},"audience":["${AUD}"]}`,
        `{"attestor":"join_token","evidence":{"token":"${token}"},"audience":{"__proto__":["${AUD}"],"length":1,"0":"${AUD}"}}`,
      ];
      for (const raw of svidBodies) {
        const res = await b.request('POST', '/v1/svid/jwt', {
          raw,
          headers: { 'content-type': 'application/json' },
        });
        expectNoCredential(res);
      }
      await expectUnspent(b, token);

      const before = (await b.admin('GET', '/v1/admin/entries')).body.entries.length as number;
      const adminBodies: Array<[string, string]> = [
        [
          '/v1/admin/entries',
          `{"spiffeId":"${victim}","selectors":["a:b:c"],"__proto__":{"audiences":["x"],"jwtTtl":604800}}`,
        ],
        [
          '/v1/admin/entries',
          `{"spiffeId":"${victim}","selectors":["a:b:c"],"constructor":{"prototype":{}}}`,
        ],
        ['/v1/admin/entries', `{"spiffeId":"${victim}","selectors":{"__proto__":[],"0":"a:b:c","length":1}}`],
        ['/v1/admin/join-tokens', `{"spiffeId":"${victim}","__proto__":{"task":"stolen"}}`],
        ['/v1/admin/join-tokens', `{"__proto__":{"spiffeId":"${victim}"}}`],
      ];
      for (const [path, raw] of adminBodies) {
        const res = await b.request('POST', path, {
          raw,
          headers: { 'content-type': 'application/json', authorization: `Bearer ${b.adminToken}` },
        });
        expect(res.status, raw).toBe(400);
        expect(res.body.token).toBeUndefined();
      }
      expect((await b.admin('GET', '/v1/admin/entries')).body.entries.length).toBe(before);
      // Form bodies on introspection.
      for (const raw of [
        `__proto__[active]=true&token=x`,
        `token=x&__proto__=y`,
        `token=x&constructor=y`,
        `token=a&token=b`,
        `token[]=x`,
      ]) {
        const res = await b.request('POST', '/v1/introspect', {
          raw,
          headers: {
            authorization: `Bearer ${b.adminToken}`,
            'content-type': 'application/x-www-form-urlencoded',
          },
        });
        // Refused, or the polluting key silently dropped: never active, never polluting.
        expect(res.status === 400 || (res.status === 200 && res.body.active === false), raw).toBe(true);
        expect(res.body.active).not.toBe(true);
      }
      const probe: Record<string, unknown> = {};
      for (const k of ['spiffeId', 'ttl', 'task', 'audiences', 'jwtTtl', 'active', 'token']) {
        expect(probe[k], k).toBeUndefined();
      }
    });

    it.each<[string, string]>([
      ['form', 'application/x-www-form-urlencoded'],
      ['text/json', 'text/json'],
      ['text/plain', 'text/plain;charset=utf-8'],
      ['json-seq', 'application/json-seq'],
      ['vendor +json', 'application/vnd.api+json'],
      ['multipart', 'multipart/form-data; boundary=x'],
      ['latin1 charset', 'application/json; charset=iso-8859-1'],
      ['bogus charset', 'application/json; charset=ebcdic'],
      ['two types', 'application/json, text/plain'],
    ])('refuses a %s body on a JSON endpoint without spending the token', async (_name, type) => {
      const token = await joinToken(b, freshId('ctype'));
      const res = await b.request('POST', '/v1/svid/jwt', {
        raw: JSON.stringify(svidBody(token)),
        headers: { 'content-type': type },
      });
      expect([400, 415]).toContain(res.status);
      expectNoCredential(res);
      await expectUnspent(b, token);
    });

    // FINDING: body-parser accepts any `utf-*` charset, UTF-7 included: a body with no literal `{`, `"` or `:`
    // is decoded into a valid request (a classic WAF / inspection bypass). JSON must be UTF-8 (RFC 8259).
    it('refuses a UTF-7 JSON body', async () => {
      const token = await joinToken(b, freshId('utf7'));
      const json = JSON.stringify(svidBody(token));
      // UTF-7: '{' is +AHs-, '"' is +ACI-; everything else in this body is a direct character.
      const utf7 = json.replace(/\{/g, '+AHs-').replace(/"/g, '+ACI-');
      expect(utf7).not.toContain('{');
      const res = await b.request('POST', '/v1/svid/jwt', {
        raw: utf7,
        headers: { 'content-type': 'application/json; charset=utf-7' },
      });
      expect(res.status, `UTF-7 body was accepted: ${res.text.slice(0, 80)}`).toBe(415);
      expectNoCredential(res);
    });

    it('bounds compressed, chunked, deep and wide bodies with 4xx, never 5xx', async () => {
      const token = await joinToken(b, freshId('bomb'));
      const big = JSON.stringify({ ...svidBody(token), pad: 'x'.repeat(5 * 1024 * 1024) });
      const bomb = await fetch(`${b.url}/v1/svid/jwt`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
        body: gzipSync(big),
      });
      expect(bomb.status).toBe(413);
      const chunked = await fetch(`${b.url}/v1/svid/jwt`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: new ReadableStream({
          start(controller) {
            for (let i = 0; i < 100; i++) controller.enqueue(new TextEncoder().encode(' '.repeat(1024)));
            controller.enqueue(new TextEncoder().encode(JSON.stringify(svidBody(token))));
            controller.close();
          },
        }),
        duplex: 'half',
      } as RequestInit);
      expect(chunked.status).toBe(413);
      const depth = 20_000;
      for (const raw of [
        `{"attestor":"join_token","evidence":${'['.repeat(depth)}${']'.repeat(depth)},"audience":["${AUD}"]}`,
        `{"attestor":"join_token","evidence":{"token":"${token}"},"audience":${'['.repeat(depth)}${']'.repeat(depth)}}`,
        `{"attestor":"join_token","evidence":{"token":"${token}","x":${'{"a":'.repeat(6000)}1${'}'.repeat(6000)}},"audience":["${AUD}"]}`,
        `{"attestor":"join_token","evidence":{"token":"${token}"},"audience":["${AUD}"],${Array.from({ length: 3000 }, (_, i) => `"k${i}":1`).join(',')}}`,
      ]) {
        const res = await b.request('POST', '/v1/svid/jwt', {
          raw,
          headers: { 'content-type': 'application/json' },
        });
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        expectNoCredential(res);
      }
      await expectUnspent(b, token);
    });
  });
});

describe('stored data in Redis is not trusted', () => {
  let b: TestBroker;
  const prefix = uniquePrefix('attacks-stored');

  beforeAll(async () => {
    b = await startTestBroker({ store: 'redis', config: { trustDomain: TD, redis: { prefix } } });
  });
  afterAll(async () => {
    await b?.close();
    const redis = await testRedis();
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });

  it('refuses a planted join token that names another trust domain or a hash-tag-breaking task', async () => {
    const redis = await testRedis();
    try {
      const now = Math.floor(Date.now() / 1000);
      const plant = async (record: Record<string, unknown>) => {
        const token = `writ_jt_${randomBytes(32).toString('base64url')}`;
        await redis.set(
          `${prefix}jt:${hashJoinToken(token)}`,
          JSON.stringify({ createdAt: now, expiresAt: now + 600, ...record }),
        );
        return token;
      };
      const planted = [
        await plant({ spiffeId: 'spiffe://evil.org/admin' }),
        await plant({ spiffeId: `spiffe://${TD}/../admin` }),
        await plant({ spiffeId: `spiffe://${TD}/x`, task: 'a}{t:victim' }),
        await plant({
          spiffeId: `spiffe://${TD}/x`,
          task: 'x',
          selectors: [`join_token:spiffe_id:spiffe://${TD}/admin`],
        }),
        await plant({ spiffeId: `spiffe://${TD}/x`, expiresAt: 'never' }),
      ];
      for (const token of planted) {
        const res = await exchange(b, token);
        expectNoCredential(res);
        expect([401, 500]).toContain(res.status);
        if (res.status === 500)
          expect(res.body).toEqual({ error: 'server_error', error_description: 'internal error' });
      }
    } finally {
      redis.disconnect();
    }
  });

  it('answers a malformed stored entry with a bare 500 that leaks nothing', async () => {
    const redis = await testRedis();
    const field = randomUUID();
    try {
      await redis.hset(`${prefix}entries`, field, '{"id":"x","spiffeId":"secret-marker-123"');
      const res = await exchange(b, await joinToken(b, freshId('malformed')));
      expect(res.status).toBe(500);
      expect(res.body).toEqual({ error: 'server_error', error_description: 'internal error' });
      expect(res.text).not.toContain('secret-marker');
      expect(res.text).not.toContain('malformed');
    } finally {
      await redis.hdel(`${prefix}entries`, field);
      redis.disconnect();
    }
  });

  it('reports a token of a replica with another issuer (same Redis, same key) as inactive', async () => {
    const shared = uniquePrefix('attacks-issuers');
    const a = await startTestBroker({
      store: 'redis',
      config: { trustDomain: TD, issuer: 'https://writ-a.example', redis: { prefix: shared } },
    });
    const c = await startTestBroker({
      store: 'redis',
      config: { trustDomain: TD, issuer: 'https://writ-c.example', redis: { prefix: shared } },
    });
    try {
      expect(a.broker.deps.keys.current().kid).toBe(c.broker.deps.keys.current().kid);
      const res = await exchange(a, await joinToken(a, freshId('replica')));
      expect(res.status).toBe(200);
      expect((await introspect(a, res.body.token)).body.active).toBe(true);
      expect((await introspect(c, res.body.token)).body).toEqual({ active: false });
    } finally {
      await a.close();
      await c.close();
      const redis = await testRedis();
      await deleteKeys(redis, shared);
      redis.disconnect();
    }
  });
});

describe('secrets stay out of logs and error bodies', () => {
  let broker: Broker;
  const lines: string[] = [];
  const adminToken = `adm_${randomBytes(24).toString('base64url')}`;

  beforeAll(async () => {
    const config = configSchema.parse({
      trustDomain: TD,
      adminToken,
      logLevel: 'trace',
      server: { host: '127.0.0.1', port: 0 },
    });
    broker = await startBroker(
      { config, mode: 'dev', source: undefined },
      {
        logger: createLogger('trace', {
          write: (line: string) => {
            lines.push(line);
          },
        }),
        defaultMetrics: false,
      },
    );
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('never logs or echoes join tokens, the admin token, evidence or issued JWTs', async () => {
    const secrets: string[] = [adminToken];
    const bodies: string[] = [];
    const call = async (
      method: string,
      path: string,
      body?: string,
      headers: Record<string, string> = {},
    ) => {
      const res = await fetch(`${broker.url}${path}`, {
        method,
        headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
        ...(body === undefined ? {} : { body }),
      });
      const text = await res.text();
      bodies.push(text);
      return { status: res.status, text };
    };
    const admin = { authorization: `Bearer ${adminToken}` };
    const mint = async () => {
      const res = await call(
        'POST',
        '/v1/admin/join-tokens',
        JSON.stringify({ spiffeId: freshId('logs') }),
        admin,
      );
      const token = JSON.parse(res.text).token as string;
      bodies.pop(); // the join-token response legitimately carries the token
      secrets.push(token);
      return token;
    };
    // A near miss of the admin token (a typo of the real one) is a secret too.
    const nearMiss = `${adminToken.slice(0, -1)}X`;
    secrets.push(nearMiss);
    await call('GET', '/v1/admin/entries', undefined, { authorization: `Bearer ${nearMiss}` });
    await call('GET', `/v1/admin/entries?token=${nearMiss}`);
    // Successful exchange: the JWT it returns must not be logged.
    const t1 = await mint();
    const ok = await call('POST', '/v1/svid/jwt', JSON.stringify(svidBody(t1)));
    const jwt = JSON.parse(ok.text).token as string;
    bodies.pop(); // the issuance response legitimately carries the JWT
    secrets.push(jwt.split('.')[2]!);
    // Replay, wrong places, unknown fields named after the token, invalid JSON around it.
    await call('POST', '/v1/svid/jwt', JSON.stringify(svidBody(t1)));
    const t2 = await mint();
    await call('POST', '/v1/svid/jwt', JSON.stringify({ ...svidBody(t2), [t2]: 1 }));
    await call('POST', '/v1/svid/jwt', `{"attestor":"join_token","evidence":{"token":"${t2}"`);
    await call(
      'POST',
      '/v1/svid/jwt',
      JSON.stringify({ attestor: 'join_token', evidence: { secret: t2 }, audience: [AUD] }),
    );
    await call('POST', '/v1/svid/jwt', JSON.stringify({ ...svidBody(t2), ttl: '1' }));
    await call('POST', '/v1/svid/jwt', JSON.stringify({ ...svidBody(t2), spiffeId: 'spiffe://other.org/x' }));
    await call('POST', `/v1/svid/jwt?token=${t2}`, JSON.stringify(svidBody('nope')));
    await call('GET', `/v1/introspect?token=${jwt}`, undefined, admin);
    await call('POST', '/v1/introspect', JSON.stringify({ token: jwt }), admin);
    await call('POST', '/v1/introspect', JSON.stringify({ token: `${jwt}x` }), admin);
    // A store outage (logged at error level with its cause) with a live token in flight.
    const t3 = await mint();
    await broker.deps.store.close();
    const down = await call('POST', '/v1/svid/jwt', JSON.stringify(svidBody(t3)));
    expect(down.status).toBe(503);

    const log = lines.join('');
    expect(log.length).toBeGreaterThan(0);
    for (const secret of secrets) {
      expect(log, 'a secret appears in the log').not.toContain(secret);
    }
    // Error bodies never echo secrets presented in the request (t2 appears only as a field name once; see below).
    for (const text of bodies) {
      expect(text).not.toContain(adminToken);
      expect(text).not.toContain(nearMiss);
      expect(text).not.toContain(t1);
      expect(text).not.toContain(t3);
      expect(text).not.toContain(jwt);
    }
  });
});
