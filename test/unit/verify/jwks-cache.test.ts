// The SDK's JWKS cache under attack: unknown-kid floods, keys removed after a compromise, alg confusion,
// symmetric and private members, duplicate kids, a failing JWKS endpoint, prototype-named kids. Real HTTP to
// a fake broker over loopback, real keys; time moves only through the injected clock (no timed assertions).
import { generateKeyPairSync, sign } from 'node:crypto';
import { type CryptoKey, exportJWK, generateKeyPair, type JSONWebKeySet, type JWK, SignJWT } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createVerifier,
  type Verifier,
  type VerifierOptions,
  VerifyError,
} from '../../../src/verify/index.ts';
import { FakeClock } from '../../helpers/clock.ts';
import { AUDIENCE, type Fixture, makeKey, mint, startFixture, type TestKey } from './fixtures.ts';

const COOLDOWN = 10_000;
const MAX_AGE = 120_000;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Setup {
  fx: Fixture;
  verifier: Verifier;
  clock: FakeClock;
  /** JWKS requests the fake broker has served since setup (start() included). */
  requests(): number;
  /** A token of `key` minted at the clock's current time. */
  token(key: TestKey, header?: Record<string, unknown>): Promise<string>;
}

/** Signature-only mode: the JWKS cache is the only state, and the fake clock cannot make a feed stale. */
async function setup(
  jwks?: (fx: Fixture) => JSONWebKeySet,
  options: Partial<VerifierOptions> = {},
): Promise<Setup> {
  const fx = await startFixture();
  cleanups.push(() => fx.close());
  if (jwks) fx.broker.jwks = jwks(fx);
  const clock = new FakeClock();
  const verifier = createVerifier({
    issuer: fx.broker.url,
    audience: AUDIENCE,
    revocationFeed: false,
    now: clock.clock,
    jwks: { cooldownMs: COOLDOWN, cacheMaxAgeMs: MAX_AGE },
    ...options,
  });
  cleanups.push(() => verifier.close());
  const base = fx.broker.jwksRequests;
  return {
    fx,
    verifier,
    clock,
    requests: () => fx.broker.jwksRequests - base,
    token: (key, header) =>
      mint({ key, issuer: fx.broker.url, at: clock.seconds(), ...(header ? { header } : {}) }),
  };
}

/** The VerifyError a verification fails with. */
async function failure(verifier: Verifier, token: string): Promise<VerifyError> {
  try {
    await verifier.verify(token);
  } catch (e) {
    expect(e).toBeInstanceOf(VerifyError);
    return e as VerifyError;
  }
  throw new Error('the token was accepted');
}

function withoutAlg({ alg: _, ...jwk }: JWK): JWK {
  return jwk;
}

const NO_KEY = { code: 'ERR_TOKEN_INVALID', claim: 'kid', message: 'no key of the jwks matches the token' };
const SEVERAL = {
  code: 'ERR_TOKEN_INVALID',
  claim: 'kid',
  message: 'several keys of the jwks match the token',
};

describe('unknown kid flood', () => {
  it('refetches at most once per cooldown, however many unknown kids arrive, sequential or concurrent', async () => {
    const s = await setup();
    await s.verifier.start();
    expect(s.requests()).toBe(1);
    const flood = (n: number, tag: string) =>
      Promise.all(Array.from({ length: n }, (_, i) => s.token(s.fx.stranger, { kid: `${tag}-${i}` }))).then(
        (tokens) => Promise.all(tokens.map((t) => failure(s.verifier, t))),
      );

    // Within the cooldown of start()'s fetch: none.
    for (const error of await flood(200, 'a')) expect(error).toMatchObject(NO_KEY);
    for (let i = 0; i < 50; i++)
      expect(await failure(s.verifier, await s.token(s.fx.stranger))).toMatchObject(NO_KEY);
    expect(s.requests()).toBe(1);

    // Past it: the whole concurrent flood shares one refetch, and the next flood none.
    s.clock.advance(COOLDOWN);
    for (const error of await flood(200, 'b')) expect(error).toMatchObject(NO_KEY);
    expect(s.requests()).toBe(2);
    for (const error of await flood(200, 'c')) expect(error).toMatchObject(NO_KEY);
    expect(s.requests()).toBe(2);

    // Known keys are served from the cache throughout.
    await expect(s.verifier.verify(await s.token(s.fx.es))).resolves.toMatchObject({ kid: 'es-1' });
    expect(s.requests()).toBe(2);
  });

  it('a failing JWKS endpoint does not lift the cooldown (jose measured it from the last success only)', async () => {
    const s = await setup();
    await s.verifier.start();
    s.fx.broker.jwksStatus = 500;
    s.clock.advance(COOLDOWN);
    const tokens = await Promise.all(
      Array.from({ length: 100 }, (_, i) => s.token(s.fx.stranger, { kid: `x-${i}` })),
    );
    // The flood that triggered the failed refetch learns the keys are unavailable...
    const first = await Promise.all(tokens.map((t) => failure(s.verifier, t)));
    for (const error of first) expect(error).toMatchObject({ code: 'ERR_JWKS_UNAVAILABLE', temporary: true });
    expect(s.requests()).toBe(2);
    // ...the next ones, within the cooldown of that attempt, are refused without a request.
    for (const t of tokens) expect(await failure(s.verifier, t)).toMatchObject(NO_KEY);
    expect(s.requests()).toBe(2);
  });

  it('many concurrent first verifications (no start()) share one fetch', async () => {
    const s = await setup();
    const tokens = await Promise.all(Array.from({ length: 50 }, () => s.token(s.fx.es)));
    const svids = await Promise.all(tokens.map((t) => s.verifier.verify(t)));
    expect(svids.every((v) => v.kid === 'es-1')).toBe(true);
    expect(s.requests()).toBe(1);
  });
});

describe('a key removed from the JWKS (compromise response)', () => {
  async function removedAfter(refetch: (s: Setup, fresh: TestKey) => Promise<void>): Promise<void> {
    const s = await setup();
    await s.verifier.start();
    const old = await s.token(s.fx.es);
    // Verified twice: the second time through the memo of its encoded header.
    await s.verifier.verify(old);
    await s.verifier.verify(old);
    const fresh = await makeKey('ES256', 'es-2');
    s.fx.broker.jwks = { keys: [fresh.publicJwk] };
    await refetch(s, fresh);
    expect(await failure(s.verifier, old)).toMatchObject(NO_KEY);
    expect(await failure(s.verifier, await s.token(s.fx.es))).toMatchObject(NO_KEY);
    await expect(s.verifier.verify(await s.token(fresh))).resolves.toMatchObject({ kid: 'es-2' });
    // The RSA key was dropped too: the whole set was replaced, not merged.
    expect(await failure(s.verifier, await s.token(s.fx.rsa))).toMatchObject(NO_KEY);
  }

  it('stops verifying right after a refetch caused by an unknown kid', async () => {
    await removedAfter(async (s, fresh) => {
      s.clock.advance(COOLDOWN);
      await expect(s.verifier.verify(await s.token(fresh))).resolves.toMatchObject({ kid: 'es-2' });
      expect(s.requests()).toBe(2);
    });
  });

  it('stops verifying right after the refetch at cacheMaxAgeMs', async () => {
    await removedAfter(async (s) => {
      s.clock.advance(MAX_AGE);
      expect(await failure(s.verifier, await s.token(s.fx.es))).toMatchObject(NO_KEY);
      expect(s.requests()).toBe(2);
    });
  });
});

describe('alg confusion and keys that must never match', () => {
  it("an RS256 key's kid on an ES256 token (and the reverse) matches nothing", async () => {
    const ec = await makeKey('ES256', 'rsa-1'); // the attacker's EC key, named after the published RSA key
    const s = await setup((fx) => ({ keys: [fx.rsa.publicJwk, withoutAlg(fx.es.publicJwk)] }));
    await s.verifier.start();
    expect(await failure(s.verifier, await s.token(ec))).toMatchObject(NO_KEY);
    // The same without an `alg` on the RSA member: its kty alone rules it out.
    s.fx.broker.jwks = { keys: [withoutAlg(s.fx.rsa.publicJwk)] };
    s.clock.advance(MAX_AGE);
    expect(await failure(s.verifier, await s.token(ec))).toMatchObject(NO_KEY);
    // An RSA-signed token naming the EC key's kid.
    const rsa = await makeKey('RS256', 'es-1');
    s.fx.broker.jwks = { keys: [s.fx.es.publicJwk] };
    s.clock.advance(MAX_AGE);
    expect(await failure(s.verifier, await s.token(rsa))).toMatchObject(NO_KEY);
  });

  it("a member's alg, curve and use are honoured: ES384 on a P-256 key, PS256 on an RS256 key, use enc", async () => {
    const s = await setup((fx) => ({
      keys: [
        withoutAlg(fx.es.publicJwk), // P-256, no alg
        fx.rsa.publicJwk, // alg RS256
        { ...fx.stranger.publicJwk, kid: 'enc', use: 'enc' },
        { ...fx.stranger.publicJwk, kid: 'ops', key_ops: ['encrypt'] },
        { ...fx.stranger.publicJwk, kid: 'dup-ops', key_ops: ['verify', 'verify'] },
      ],
    }));
    await s.verifier.start();
    const es384 = await generateKeyPair('ES384');
    const sign = (alg: string, kid: string, key: CryptoKey) =>
      new SignJWT({ sub: 'spiffe://example.org/x', aud: [AUDIENCE], jti: 'j', task: 't' })
        .setProtectedHeader({ alg, kid, typ: 'JWT' })
        .setIssuer(s.fx.broker.url)
        .setIssuedAt(s.clock.seconds())
        .setExpirationTime(s.clock.seconds() + 300)
        .sign(key);
    expect(await failure(s.verifier, await sign('ES384', 'es-1', es384.privateKey))).toMatchObject(NO_KEY);
    const ps = await generateKeyPair('PS256');
    expect(await failure(s.verifier, await sign('PS256', 'rsa-1', ps.privateKey))).toMatchObject(NO_KEY);
    for (const kid of ['enc', 'ops', 'dup-ops']) {
      expect(await failure(s.verifier, await s.token(s.fx.stranger, { kid }))).toMatchObject(NO_KEY);
    }
    // The usable members still verify.
    await expect(s.verifier.verify(await s.token(s.fx.es))).resolves.toMatchObject({ kid: 'es-1' });
    await expect(s.verifier.verify(await s.token(s.fx.rsa))).resolves.toMatchObject({ kid: 'rsa-1' });
  });

  it("a symmetric 'oct' member is never a key: HS256 is refused, ES256 with its kid finds nothing", async () => {
    const secret = new Uint8Array(32).fill(7);
    const oct = { kty: 'oct', k: Buffer.from(secret).toString('base64url'), kid: 'shared', use: 'sig' };
    // Also one named like the EC key: the EC key must stay the only match for its kid.
    const s = await setup((fx) => ({ keys: [oct, { ...oct, kid: 'es-1' }, fx.es.publicJwk] as JWK[] }));
    await s.verifier.start();
    for (const kid of ['shared', 'es-1']) {
      const hs = await new SignJWT({ sub: 'spiffe://example.org/x', aud: [AUDIENCE], jti: 'j', task: 't' })
        .setProtectedHeader({ alg: 'HS256', kid, typ: 'JWT' })
        .setIssuer(s.fx.broker.url)
        .setIssuedAt(s.clock.seconds())
        .setExpirationTime(s.clock.seconds() + 300)
        .sign(secret);
      expect(await failure(s.verifier, hs)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'alg' });
    }
    expect(await failure(s.verifier, await s.token(s.fx.stranger, { kid: 'shared' }))).toMatchObject(NO_KEY);
    await expect(s.verifier.verify(await s.token(s.fx.es))).resolves.toMatchObject({ kid: 'es-1' });
  });

  it('a member with private material, or one that does not import, makes only its own kid unavailable', async () => {
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const priv = { ...(await exportJWK(privateKey)), kid: 'leaked', alg: 'ES256' };
    const broken: JWK = { kty: 'EC', crv: 'P-256', x: 'AAAA', y: 'AAAA', alg: 'ES256', kid: 'broken' };
    const s = await setup((fx) => ({ keys: [priv, broken, fx.es.publicJwk] }));
    await s.verifier.start();
    for (const kid of ['leaked', 'broken']) {
      expect(await failure(s.verifier, await s.token(s.fx.stranger, { kid }))).toMatchObject({
        code: 'ERR_JWKS_UNAVAILABLE',
      });
    }
    await expect(s.verifier.verify(await s.token(s.fx.es))).resolves.toMatchObject({ kid: 'es-1' });
  });

  it('an RSA member shorter than 2048 bits is refused with a code (jose threw a bare TypeError)', async () => {
    // jose will not sign with such a key either: node:crypto does.
    const pair = generateKeyPairSync('rsa', { modulusLength: 1024 });
    const jwk = { ...(pair.publicKey.export({ format: 'jwk' }) as JWK), kid: 'short', alg: 'RS256' };
    const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const s = await setup((fx) => ({ keys: [jwk, fx.es.publicJwk] }));
    await s.verifier.start();
    const at = s.clock.seconds();
    const claims = {
      sub: 'spiffe://example.org/x',
      aud: [AUDIENCE],
      iss: s.fx.broker.url,
      jti: 'j',
      task: 't',
    };
    const input = `${enc({ alg: 'RS256', kid: 'short', typ: 'JWT' })}.${enc({ ...claims, iat: at, exp: at + 300 })}`;
    const token = `${input}.${sign('sha256', Buffer.from(input), pair.privateKey).toString('base64url')}`;
    expect(await failure(s.verifier, token)).toMatchObject({ code: 'ERR_JWKS_UNAVAILABLE' });
  });
});

describe('duplicate kids', () => {
  it('two members that fit the same (kid, alg) refuse the kid, whichever signed (as jose)', async () => {
    const twin = await makeKey('ES256', 'es-1');
    const s = await setup((fx) => ({ keys: [fx.es.publicJwk, twin.publicJwk, fx.rsa.publicJwk] }));
    await s.verifier.start();
    expect(await failure(s.verifier, await s.token(s.fx.es))).toMatchObject(SEVERAL);
    expect(await failure(s.verifier, await s.token(twin))).toMatchObject(SEVERAL);
    await expect(s.verifier.verify(await s.token(s.fx.rsa))).resolves.toMatchObject({ kid: 'rsa-1' });
  });

  it('one kid on an EC and an RSA member: each alg finds its own member only (as jose)', async () => {
    const rsa = await makeKey('RS256', 'es-1');
    const s = await setup((fx) => ({ keys: [fx.es.publicJwk, rsa.publicJwk] }));
    await s.verifier.start();
    await expect(s.verifier.verify(await s.token(s.fx.es))).resolves.toMatchObject({ kid: 'es-1' });
    await expect(s.verifier.verify(await s.token(rsa))).resolves.toMatchObject({ kid: 'es-1' });
  });
});

describe('a failing JWKS endpoint', () => {
  it('serves the cached keys until cacheMaxAgeMs, then fails closed, and recovers with the endpoint', async () => {
    const s = await setup();
    await s.verifier.start();
    s.fx.broker.jwksStatus = 500;
    // An unknown kid past the cooldown triggers a refetch, which fails: that token learns it...
    s.clock.advance(COOLDOWN);
    expect(await failure(s.verifier, await s.token(s.fx.stranger))).toMatchObject({
      code: 'ERR_JWKS_UNAVAILABLE',
    });
    expect(s.requests()).toBe(2);
    // ...while the keys already held keep verifying.
    await expect(s.verifier.verify(await s.token(s.fx.es))).resolves.toMatchObject({ kid: 'es-1' });
    s.clock.advance(MAX_AGE - COOLDOWN - 1);
    await expect(s.verifier.verify(await s.token(s.fx.es))).resolves.toMatchObject({ kid: 'es-1' });
    expect(s.requests()).toBe(2);

    // At cacheMaxAgeMs the set is no longer used: fail closed, with one request per retry interval (1 s).
    s.clock.advance(1);
    const token = await s.token(s.fx.es);
    for (let i = 0; i < 20; i++) {
      expect(await failure(s.verifier, token)).toMatchObject({
        code: 'ERR_JWKS_UNAVAILABLE',
        temporary: true,
      });
    }
    expect(s.requests()).toBe(3);
    s.clock.advance(1_000);
    expect(await failure(s.verifier, token)).toMatchObject({ code: 'ERR_JWKS_UNAVAILABLE' });
    expect(s.requests()).toBe(4);

    s.fx.broker.jwksStatus = 200;
    s.clock.advance(1_000);
    await expect(s.verifier.verify(token)).resolves.toMatchObject({ kid: 'es-1' });
    expect(s.requests()).toBe(5);
  });

  it('a refetched body that is not a JWKS keeps the previous set (as jose)', async () => {
    const s = await setup();
    await s.verifier.start();
    s.fx.broker.jwks = { keys: 'nope' } as unknown as JSONWebKeySet;
    s.clock.advance(COOLDOWN);
    expect(await failure(s.verifier, await s.token(s.fx.stranger))).toMatchObject({
      code: 'ERR_JWKS_UNAVAILABLE',
    });
    await expect(s.verifier.verify(await s.token(s.fx.es))).resolves.toMatchObject({ kid: 'es-1' });
  });
});

describe('kids named like Object.prototype members', () => {
  const NAMES = ['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'];

  it('match nothing when unpublished, and cause no refetch within the cooldown', async () => {
    const s = await setup();
    await s.verifier.start();
    for (const kid of NAMES) {
      expect(await failure(s.verifier, await s.token(s.fx.stranger, { kid }))).toMatchObject(NO_KEY);
      expect(await failure(s.verifier, await s.token(s.fx.es, { kid }))).toMatchObject(NO_KEY);
    }
    expect(s.requests()).toBe(1);
  });

  it('are ordinary kids when published', async () => {
    const keys = await Promise.all(NAMES.map((kid) => makeKey('ES256', kid)));
    const s = await setup(() => ({ keys: keys.map((k) => k.publicJwk) }));
    await s.verifier.start();
    for (const key of keys) {
      await expect(s.verifier.verify(await s.token(key))).resolves.toMatchObject({ kid: key.kid });
      expect(await failure(s.verifier, await s.token(s.fx.stranger, { kid: key.kid }))).toMatchObject({
        code: 'ERR_TOKEN_INVALID',
        message: 'signature verification failed',
      });
    }
  });
});
