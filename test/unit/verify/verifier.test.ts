import { base64url } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVerifier, isVerifyError, type Verifier, VerifyError } from '../../../src/verify/index.ts';
import {
  AUDIENCE,
  codeOf,
  type Fixture,
  makeKey,
  mint,
  SPIFFE_ID,
  startFixture,
  waitFor,
} from './fixtures.ts';

let fx: Fixture;
let verifier: Verifier;
const now = (): number => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  // Heartbeats keep the feed current however long the file takes.
  fx = await startFixture({ heartbeatMs: 1000 });
  verifier = createVerifier({ issuer: fx.broker.url, audience: AUDIENCE });
  await verifier.start();
});

afterAll(async () => {
  verifier.close();
  await fx.close();
});

/** Verifies and returns the error, asserting it is a VerifyError that does not carry the token. */
async function rejection(token: string, v: Verifier = verifier): Promise<VerifyError> {
  try {
    await v.verify(token);
  } catch (e) {
    expect(e).toBeInstanceOf(VerifyError);
    const error = e as VerifyError;
    for (const part of token.split('.').filter((p) => p.length > 8)) {
      expect(error.message).not.toContain(part);
      expect(String(error.stack)).not.toContain(part);
    }
    return error;
  }
  throw new Error('the token was accepted');
}

describe('verify: a valid JWT-SVID', () => {
  it('verifies and returns the SVID', async () => {
    const at = now();
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at, claims: { jti: 'j-1', task: 't-1' } });
    const svid = await verifier.verify(token);
    expect(svid).toMatchObject({
      spiffeId: SPIFFE_ID,
      trustDomain: 'example.org',
      audience: [AUDIENCE],
      issuedAt: at,
      expiresAt: at + 300,
      jti: 'j-1',
      task: 't-1',
      kid: 'es-1',
    });
    expect(svid.claims.iss).toBe(fx.broker.url);
  });

  it('accepts a string aud and a token of an allowed RSA key', async () => {
    const token = await mint({ key: fx.rsa, issuer: fx.broker.url, claims: { aud: AUDIENCE } });
    await expect(verifier.verify(token)).resolves.toMatchObject({ audience: [AUDIENCE], kid: 'rsa-1' });
  });

  it('accepts a token within the clock tolerance of its exp', async () => {
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at: now() - 302 });
    await expect(verifier.verify(token)).resolves.toBeDefined();
  });
});

describe('verify: rejections', () => {
  it('wrong audience -> ERR_TOKEN_INVALID (aud); the per-call audience overrides', async () => {
    const token = await mint({
      key: fx.es,
      issuer: fx.broker.url,
      claims: { aud: ['https://other.example'] },
    });
    expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'aud' });
    await expect(verifier.verify(token, { audience: 'https://other.example' })).resolves.toBeDefined();
  });

  it('wrong issuer -> ERR_TOKEN_INVALID (iss)', async () => {
    const token = await mint({ key: fx.es, issuer: 'https://evil.example' });
    expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'iss' });
  });

  it('expired -> ERR_TOKEN_EXPIRED', async () => {
    const token = await mint({ key: fx.es, issuer: fx.broker.url, at: now() - 400 });
    expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_EXPIRED', claim: 'exp' });
  });

  it('not yet valid (nbf) or minted in the future (iat) -> ERR_TOKEN_INVALID', async () => {
    const nbf = await mint({ key: fx.es, issuer: fx.broker.url, claims: { nbf: now() + 60 } });
    expect(await rejection(nbf)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'nbf' });
    const iat = await mint({ key: fx.es, issuer: fx.broker.url, at: now() + 60, claims: { nbf: undefined } });
    expect(await rejection(iat)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'iat' });
  });

  it('no kid -> ERR_TOKEN_MALFORMED, although the only ES256 key of the JWKS would verify it', async () => {
    const token = await mint({ key: fx.es, issuer: fx.broker.url, header: { kid: undefined } });
    expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_MALFORMED', claim: 'kid' });
  });

  it('unknown kid -> ERR_TOKEN_INVALID (kid)', async () => {
    const token = await mint({ key: fx.stranger, issuer: fx.broker.url });
    expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'kid' });
  });

  it('a published kid with a signature of another key -> ERR_TOKEN_INVALID', async () => {
    const token = await mint({ key: fx.stranger, issuer: fx.broker.url, header: { kid: 'es-1' } });
    expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_INVALID' });
  });

  it('alg none -> ERR_TOKEN_INVALID (alg)', async () => {
    const enc = (o: object): string => base64url.encode(JSON.stringify(o));
    const claims = { sub: SPIFFE_ID, aud: [AUDIENCE], iss: fx.broker.url, iat: now(), exp: now() + 300 };
    const token = `${enc({ alg: 'none', kid: 'es-1', typ: 'JWT' })}.${enc({ ...claims, jti: 'x', task: 't' })}.`;
    expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'alg' });
  });

  it('HS256 signed with the public JWK as the secret -> ERR_TOKEN_INVALID (alg)', async () => {
    const { SignJWT } = await import('jose');
    const secret = new TextEncoder().encode(JSON.stringify(fx.es.publicJwk));
    const token = await new SignJWT({ sub: SPIFFE_ID, aud: [AUDIENCE], jti: 'x', task: 't' })
      .setProtectedHeader({ alg: 'HS256', kid: 'es-1', typ: 'JWT' })
      .setIssuer(fx.broker.url)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(secret);
    expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'alg' });
  });

  it('RS256 token when the allow-list is ES256 -> ERR_TOKEN_INVALID; allowed, the same token passes', async () => {
    const token = await mint({ key: fx.rsa, issuer: fx.broker.url });
    const es256 = createVerifier({ issuer: fx.broker.url, audience: AUDIENCE, algorithms: ['ES256'] });
    const both = createVerifier({
      issuer: fx.broker.url,
      audience: AUDIENCE,
      algorithms: ['ES256', 'RS256'],
    });
    try {
      await Promise.all([es256.start(), both.start()]);
      expect(await rejection(token, es256)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'alg' });
      await expect(both.verify(token)).resolves.toBeDefined();
    } finally {
      es256.close();
      both.close();
    }
  });

  it.each(['sub', 'aud', 'exp', 'iat', 'jti', 'task'])(
    'missing %s claim -> ERR_TOKEN_INVALID',
    async (claim) => {
      const token = await mint({ key: fx.es, issuer: fx.broker.url, claims: { [claim]: undefined } });
      expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim });
    },
  );

  it('a task or jti that is not a non-empty string -> ERR_TOKEN_INVALID', async () => {
    for (const claims of [{ task: 42 }, { task: '' }, { jti: 7 }]) {
      const token = await mint({ key: fx.es, issuer: fx.broker.url, claims });
      expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_INVALID' });
    }
  });

  it('typ missing or not JWT -> ERR_TOKEN_INVALID (typ)', async () => {
    for (const typ of [undefined, 'at+jwt']) {
      const token = await mint({ key: fx.es, issuer: fx.broker.url, header: { typ } });
      expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'typ' });
    }
  });

  it('sub not a SPIFFE ID -> ERR_TOKEN_INVALID (sub)', async () => {
    for (const sub of ['https://example.org/a', 'spiffe://Example.org/a', 'spiffe://example.org/a/']) {
      const token = await mint({ key: fx.es, issuer: fx.broker.url, claims: { sub } });
      expect(await rejection(token)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'sub' });
    }
  });

  it('trustDomain: a sub of another trust domain -> ERR_TOKEN_INVALID; of the same passes', async () => {
    const v = createVerifier({ issuer: fx.broker.url, audience: AUDIENCE, trustDomain: 'example.org' });
    try {
      await v.start();
      const other = await mint({
        key: fx.es,
        issuer: fx.broker.url,
        claims: { sub: 'spiffe://example.org.evil/a' },
      });
      expect(await rejection(other, v)).toMatchObject({ code: 'ERR_TOKEN_INVALID', claim: 'sub' });
      await expect(v.verify(await mint({ key: fx.es, issuer: fx.broker.url }))).resolves.toBeDefined();
    } finally {
      v.close();
    }
  });

  it('a tampered payload or signature -> ERR_TOKEN_INVALID', async () => {
    const token = await mint({ key: fx.es, issuer: fx.broker.url });
    const [h, p, s] = token.split('.') as [string, string, string];
    const forged = base64url.encode(
      JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString('utf8')), task: 'x' }),
    );
    expect(await rejection(`${h}.${forged}.${s}`)).toMatchObject({ code: 'ERR_TOKEN_INVALID' });
    const flipped = `${s.slice(0, 10)}${s[10] === 'A' ? 'B' : 'A'}${s.slice(11)}`;
    expect(await rejection(`${h}.${p}.${flipped}`)).toMatchObject({ code: 'ERR_TOKEN_INVALID' });
  });

  it('garbage -> ERR_TOKEN_MALFORMED', async () => {
    for (const token of ['', 'abc', 'a.b', 'a.b.c', '....', `eyJ${'A'.repeat(20_000)}.e30.`]) {
      expect(await codeOf(verifier.verify(token))).toBe('ERR_TOKEN_MALFORMED');
    }
  });
});

describe('verify: keys', () => {
  it('refetches the JWKS for an unknown kid once the cooldown allows, not before', async () => {
    const fresh = await makeKey('ES256', 'es-2');
    const patient = createVerifier({ issuer: fx.broker.url, audience: AUDIENCE, jwks: { cooldownMs: 0 } });
    const strict = createVerifier({ issuer: fx.broker.url, audience: AUDIENCE });
    try {
      await Promise.all([patient.start(), strict.start()]);
      fx.broker.jwks = { keys: [...fx.broker.jwks.keys, fresh.publicJwk] };
      const token = await mint({ key: fresh, issuer: fx.broker.url });
      const before = fx.broker.jwksRequests;
      expect(await codeOf(strict.verify(token))).toBe('ERR_TOKEN_INVALID');
      expect(fx.broker.jwksRequests).toBe(before);
      await expect(patient.verify(token)).resolves.toMatchObject({ kid: 'es-2' });
      expect(fx.broker.jwksRequests).toBe(before + 1);
    } finally {
      patient.close();
      strict.close();
      fx.broker.jwks = { keys: fx.broker.jwks.keys.filter((k) => k.kid !== 'es-2') };
    }
  });

  it('an unreachable JWKS -> start() and verify() fail with ERR_JWKS_UNAVAILABLE', async () => {
    const v = createVerifier({ issuer: fx.broker.url, audience: AUDIENCE, jwks: { cooldownMs: 0 } });
    fx.broker.jwksStatus = 500;
    try {
      expect(await codeOf(v.start())).toBe('ERR_JWKS_UNAVAILABLE');
      // The feed comes up regardless; only the keys are missing.
      await waitFor(() => v.status().current);
      const error = await rejection(await mint({ key: fx.es, issuer: fx.broker.url }), v);
      expect(error).toMatchObject({ code: 'ERR_JWKS_UNAVAILABLE', temporary: true });
    } finally {
      fx.broker.jwksStatus = 200;
      v.close();
    }
  });
});

describe('createVerifier options', () => {
  it('refuses none, HMAC, EdDSA and empty algorithm lists', () => {
    for (const algorithms of [['none'], ['HS256'], ['ES256', 'EdDSA'], []]) {
      expect(() =>
        createVerifier({
          issuer: 'https://writ.example',
          audience: AUDIENCE,
          algorithms: algorithms as ['ES256'],
        }),
      ).toThrow(TypeError);
    }
  });

  it('refuses a missing issuer or audience and a bad trust domain', () => {
    const bad = [
      { issuer: '', audience: AUDIENCE },
      { issuer: 'not a url', audience: AUDIENCE },
      { issuer: 'https://writ.example', audience: [] },
      { issuer: 'https://writ.example', audience: AUDIENCE, trustDomain: 'Example.org' },
      { issuer: 'https://writ.example', audience: AUDIENCE, maxStalenessMs: 0 },
    ];
    for (const options of bad) expect(() => createVerifier(options)).toThrow(TypeError);
  });
});

describe('signature-only mode (revocationFeed: false)', () => {
  it('verifies without a feed and never connects to one', async () => {
    const v = createVerifier({ issuer: fx.broker.url, audience: AUDIENCE, revocationFeed: false });
    const streams = fx.broker.streamRequests.length;
    try {
      await expect(v.verify(await mint({ key: fx.es, issuer: fx.broker.url }))).resolves.toBeDefined();
      await v.start();
      expect(v.status()).toMatchObject({ revocationFeed: false, current: true, feed: null });
      expect(fx.broker.streamRequests.length).toBe(streams);
    } finally {
      v.close();
    }
    expect(isVerifyError(await v.verify('x').catch((e: unknown) => e))).toBe(true);
  });
});
