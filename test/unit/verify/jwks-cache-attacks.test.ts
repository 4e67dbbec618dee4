// An attacker's view of the SDK's own JWKS cache (src/verify/jwks-cache.ts) and of its use by the verifier: the
// memo of encoded headers (byte-level header tricks must never hand out another kid's or alg's key), removed keys
// and refetch races (a JWKS server whose every answer the test holds and releases by hand), fail-closed fetches
// (redirects, slow bodies, empty sets), refetch floods against a hanging endpoint, `none`/HS256 with the public key
// as the secret, a kid whose kty changes between fetches, and the bounds of the memo. Real HTTP over loopback,
// real keys; time moves only through the injected clock.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { exportSPKI, type JWK, type JWSHeaderParameters } from 'jose';
import { afterEach, describe, expect, it } from 'vitest';
import { createVerifier, type Verifier, VerifyError } from '../../../src/verify/index.ts';
import { JwksCache } from '../../../src/verify/jwks-cache.ts';
import { FakeClock } from '../../helpers/clock.ts';
import { AUDIENCE, makeKey, mint, SPIFFE_ID, type TestKey } from './fixtures.ts';

const COOLDOWN = 10_000;
const MAX_AGE = 120_000;
const NO_KEY = { code: 'ERR_TOKEN_INVALID', claim: 'kid', message: 'no key of the jwks matches the token' };
const BAD_SIGNATURE = { code: 'ERR_TOKEN_INVALID', message: 'signature verification failed' };
const ALG_REFUSED = { code: 'ERR_TOKEN_INVALID', claim: 'alg' };

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Held {
  res: ServerResponse;
  /** Answers this request with `body` (JSON) or a status. */
  answer(body: unknown, status?: number): void;
}

/**
 * A JWKS endpoint under the test's control: `auto` answers every request with `jwks` at once; `hold` keeps each
 * request until the test answers it. Counts requests and the most that were ever in flight at once.
 */
class KeyServer {
  jwks: { keys: JWK[] } = { keys: [] };
  mode: 'auto' | 'hold' = 'auto';
  requests = 0;
  inFlight = 0;
  maxInFlight = 0;
  readonly held: Held[] = [];
  #waiters: Array<() => void> = [];
  /** Replaces the default answer for one request (a redirect, a slow body...). */
  custom: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;

  private constructor(
    readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<KeyServer> {
    let ks: KeyServer | undefined;
    const server = createServer((req, res) => ks?.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    ks = new KeyServer(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const started = ks;
    cleanups.push(
      () =>
        new Promise<void>((resolve) => {
          started.server.closeAllConnections();
          started.server.close(() => resolve());
        }),
    );
    return ks;
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests++;
    if (this.custom !== undefined) {
      this.custom(req, res);
      return;
    }
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const answer = (body: unknown, status = 200) => {
      this.inFlight--;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (this.mode === 'auto') {
      answer(this.jwks);
      return;
    }
    this.held.push({ res, answer });
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Resolves once `n` requests are held. */
  async heldCount(n: number): Promise<void> {
    while (this.held.length < n) await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }
}

interface Setup {
  ks: KeyServer;
  verifier: Verifier;
  clock: FakeClock;
  es: TestKey;
  rsa: TestKey;
  token(key: TestKey, header?: Record<string, unknown>): Promise<string>;
}

async function setup(options: { cooldownMs?: number; timeoutMs?: number } = {}): Promise<Setup> {
  const ks = await KeyServer.start();
  const [es, rsa] = await Promise.all([makeKey('ES256', 'es-1'), makeKey('RS256', 'rsa-1')]);
  ks.jwks = { keys: [es.publicJwk, rsa.publicJwk] };
  const clock = new FakeClock();
  const verifier = createVerifier({
    issuer: ks.url,
    audience: AUDIENCE,
    revocationFeed: false,
    now: clock.clock,
    jwks: {
      cooldownMs: options.cooldownMs ?? COOLDOWN,
      cacheMaxAgeMs: MAX_AGE,
      ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
    },
  });
  cleanups.push(() => verifier.close());
  return {
    ks,
    verifier,
    clock,
    es,
    rsa,
    token: (key, header) => mint({ key, issuer: ks.url, at: clock.seconds(), ...(header ? { header } : {}) }),
  };
}

async function failure(verifier: Verifier, token: string): Promise<VerifyError> {
  try {
    await verifier.verify(token);
  } catch (e) {
    expect(e).toBeInstanceOf(VerifyError);
    return e as VerifyError;
  }
  throw new Error('the token was accepted');
}

const b64 = (s: string | Uint8Array) => Buffer.from(s).toString('base64url');

/** A compact JWS over exactly `headerB64` (any bytes) and these claims, signed by `key` as `alg` says. */
async function rawToken(s: Setup, headerB64: string, key: TestKey, claims: Record<string, unknown> = {}) {
  const at = s.clock.seconds();
  const payload = b64(
    JSON.stringify({
      sub: SPIFFE_ID,
      aud: [AUDIENCE],
      iss: s.ks.url,
      iat: at,
      exp: at + 300,
      jti: `j-${Math.random()}`,
      task: 'task-1',
      ...claims,
    }),
  );
  const input = new TextEncoder().encode(`${headerB64}.${payload}`);
  const algorithm =
    key.alg === 'ES256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  const sig = new Uint8Array(await crypto.subtle.sign(algorithm, key.privateKey, input));
  return `${headerB64}.${payload}.${b64(sig)}`;
}

/** Swaps the last base64url character for another that decodes to the same bytes (other unused low bits). */
function nonCanonical(encoded: string): string | undefined {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const unused = encoded.length % 4 === 2 ? 4 : encoded.length % 4 === 3 ? 2 : 0;
  if (unused === 0) return undefined;
  const last = alphabet.indexOf(encoded.at(-1) as string);
  return encoded.slice(0, -1) + (alphabet[last ^ 1] as string);
}

describe('the memo of encoded headers never hands out another header’s key', () => {
  it('headers that differ only in duplicate members, whitespace or member order resolve on their own', async () => {
    const s = await setup();
    await s.verifier.start();
    const good = '{"alg":"ES256","kid":"es-1","typ":"JWT"}';
    const token = await rawToken(s, b64(good), s.es);
    // Verified twice: the second through the memo.
    await expect(s.verifier.verify(token)).resolves.toMatchObject({ kid: 'es-1' });
    await expect(s.verifier.verify(token)).resolves.toMatchObject({ kid: 'es-1' });

    // JSON.parse keeps the last duplicate: these name another kid or alg than their first members say.
    const dupKid = '{"alg":"ES256","kid":"es-1","typ":"JWT","kid":"rsa-1"}';
    expect(await failure(s.verifier, await rawToken(s, b64(dupKid), s.es))).toMatchObject(NO_KEY);
    for (const dupAlg of [
      '{"alg":"ES256","kid":"es-1","typ":"JWT","alg":"none"}',
      '{"alg":"ES256","kid":"es-1","typ":"JWT","alg":"HS256"}',
    ]) {
      expect(await failure(s.verifier, await rawToken(s, b64(dupAlg), s.es))).toMatchObject(ALG_REFUSED);
    }
    const dupAlgRs = '{"alg":"ES256","kid":"es-1","typ":"JWT","alg":"RS256"}';
    expect(await failure(s.verifier, await rawToken(s, b64(dupAlgRs), s.es))).toMatchObject(NO_KEY);
    // The RSA key signs a header whose last kid is the RSA kid: verifies with the RSA key, as the header says.
    const rsaLast = '{"alg":"RS256","kid":"es-1","typ":"JWT","kid":"rsa-1"}';
    await expect(s.verifier.verify(await rawToken(s, b64(rsaLast), s.rsa))).resolves.toMatchObject({
      kid: 'rsa-1',
    });
    // Same members, other bytes (spaces, order): the published key verifies, a stranger's does not.
    const stranger = await makeKey('ES256', 'es-1');
    for (const variant of [
      '{"alg": "ES256", "kid": "es-1", "typ": "JWT"}',
      '{"kid":"es-1","typ":"JWT","alg":"ES256"}',
    ]) {
      await expect(s.verifier.verify(await rawToken(s, b64(variant), s.es))).resolves.toMatchObject({
        kid: 'es-1',
      });
      expect(await failure(s.verifier, await rawToken(s, b64(variant), stranger))).toMatchObject(
        BAD_SIGNATURE,
      );
    }
    // The memoized header itself, signed by a stranger (a primed memo is no authority).
    expect(await failure(s.verifier, await rawToken(s, b64(good), stranger))).toMatchObject(BAD_SIGNATURE);
  });

  it('a non-canonical base64url header (other padding bits, same bytes) gets no reuse of a signature', async () => {
    const s = await setup();
    await s.verifier.start();
    // 41 bytes: the encoding ends in a partial group, whose unused bits an attacker may set.
    const header = '{"alg":"ES256","kid":"es-1","typ":"JWT"} ';
    const canonical = b64(header);
    const other = nonCanonical(canonical);
    expect(other).toBeDefined();
    expect(Buffer.from(other as string, 'base64url').toString()).toBe(header);
    const token = await rawToken(s, canonical, s.es);
    await expect(s.verifier.verify(token)).resolves.toMatchObject({ kid: 'es-1' });
    await expect(s.verifier.verify(token)).resolves.toMatchObject({ kid: 'es-1' });
    // The signature covers the encoded text: swapping the header encoding breaks it, memo or not.
    const [, payload, sig] = token.split('.');
    const swapped = `${other}.${payload}.${sig}`;
    const code = (await failure(s.verifier, swapped)).code;
    expect(['ERR_TOKEN_INVALID', 'ERR_TOKEN_MALFORMED']).toContain(code);
    expect(await failure(s.verifier, swapped)).toMatchObject({ code });
    // A stranger signing the non-canonical form with the published kid is refused too.
    const stranger = await makeKey('ES256', 'es-1');
    expect((await failure(s.verifier, await rawToken(s, other as string, stranger))).code).toBe(code);
    await expect(s.verifier.verify(token)).resolves.toMatchObject({ kid: 'es-1' });
  });

  it('a token without a kid never verifies, even after a header with one was memoized', async () => {
    const s = await setup();
    await s.verifier.start();
    await s.verifier.verify(await s.token(s.es));
    for (const header of ['{"alg":"ES256","typ":"JWT"}', '{"alg":"ES256","kid":"","typ":"JWT"}']) {
      expect(await failure(s.verifier, await rawToken(s, b64(header), s.es))).toMatchObject({
        code: 'ERR_TOKEN_MALFORMED',
        claim: 'kid',
      });
    }
    const numeric = '{"alg":"ES256","kid":1,"typ":"JWT"}';
    expect((await failure(s.verifier, await rawToken(s, b64(numeric), s.es))).code).toMatch(/^ERR_TOKEN_/);
  });
});

describe('`none` and HS256 with the public key as the secret', () => {
  it('are refused by alg, before and after the key’s header is memoized', async () => {
    const s = await setup();
    await s.verifier.start();
    const at = s.clock.seconds();
    const claims = b64(
      JSON.stringify({
        sub: SPIFFE_ID,
        aud: [AUDIENCE],
        iss: s.ks.url,
        iat: at,
        exp: at + 300,
        jti: 'j',
        task: 't',
      }),
    );
    const jwkJson = JSON.stringify(s.es.publicJwk);
    const pem = await exportSPKI(
      await crypto.subtle.importKey('jwk', s.es.publicJwk, { name: 'ECDSA', namedCurve: 'P-256' }, true, [
        'verify',
      ]),
    );
    const secrets = [
      new TextEncoder().encode(jwkJson),
      new TextEncoder().encode(pem),
      Buffer.from(s.es.publicJwk.x as string, 'base64url'),
    ];
    const forged: string[] = [`${b64('{"alg":"none","kid":"es-1","typ":"JWT"}')}.${claims}.`];
    for (const secret of secrets) {
      const h = b64('{"alg":"HS256","kid":"es-1","typ":"JWT"}');
      const key = await crypto.subtle.importKey('raw', secret, { name: 'HMAC', hash: 'SHA-256' }, false, [
        'sign',
      ]);
      const mac = new Uint8Array(
        await crypto.subtle.sign('HMAC', key, new TextEncoder().encode(`${h}.${claims}`)),
      );
      forged.push(`${h}.${claims}.${b64(mac)}`);
    }
    for (const round of [0, 1]) {
      if (round === 1) await s.verifier.verify(await s.token(s.es)); // the ES256 header memoized
      for (const t of forged) {
        const e = await failure(s.verifier, t);
        expect(e.code).toBe('ERR_TOKEN_INVALID');
        expect(e.claim).toBe('alg');
      }
    }
    expect(s.ks.requests).toBe(1);
  });
});

describe('a removed or changed key after a refetch, with fetches the test holds', () => {
  it('at cacheMaxAgeMs, while the refetch is in flight, the stale set (and its memo) verify nothing', async () => {
    const s = await setup();
    await s.verifier.start();
    const old = await s.token(s.es);
    await s.verifier.verify(old);
    await s.verifier.verify(old); // memoized
    s.ks.mode = 'hold';
    s.clock.advance(MAX_AGE);
    const pending = [s.verifier.verify(old), s.verifier.verify(await s.token(s.es)), s.verifier.verify(old)];
    await s.ks.heldCount(1);
    // Still in flight: one request, however many verifications wait.
    expect(s.ks.held).toHaveLength(1);
    const fresh = await makeKey('ES256', 'es-2');
    s.ks.held[0]?.answer({ keys: [fresh.publicJwk] });
    for (const p of pending) {
      await expect(p).rejects.toMatchObject(NO_KEY);
    }
    expect(s.ks.maxInFlight).toBe(1);
    s.ks.mode = 'auto';
    s.ks.jwks = { keys: [fresh.publicJwk] };
    await expect(s.verifier.verify(await s.token(fresh))).resolves.toMatchObject({ kid: 'es-2' });
  });

  it('a refetch that fails at cacheMaxAgeMs fails closed, memo included, and never swaps an older set back', async () => {
    const s = await setup();
    await s.verifier.start();
    const old = await s.token(s.es);
    await s.verifier.verify(old);
    await s.verifier.verify(old);
    s.ks.mode = 'hold';
    s.clock.advance(MAX_AGE);
    const first = s.verifier.verify(old);
    await s.ks.heldCount(1);
    s.ks.held[0]?.answer({ error: 'down' }, 503);
    await expect(first).rejects.toMatchObject({ code: 'ERR_JWKS_UNAVAILABLE' });
    // Within the retry interval: refused without a request; the memoized header does not revive the old set.
    await expect(s.verifier.verify(old)).rejects.toMatchObject({ code: 'ERR_JWKS_UNAVAILABLE' });
    expect(s.ks.requests).toBe(2);
    // Next attempt: a set without es-1 lands; then a later failure must not bring es-1 back.
    s.clock.advance(1_000);
    const fresh = await makeKey('ES256', 'es-2');
    const second = s.verifier.verify(old);
    await s.ks.heldCount(2);
    s.ks.held[1]?.answer({ keys: [fresh.publicJwk] });
    await expect(second).rejects.toMatchObject(NO_KEY);
    s.clock.advance(COOLDOWN);
    const third = s.verifier.verify(await s.token(s.es, { kid: 'unknown' }));
    await s.ks.heldCount(3);
    s.ks.held[2]?.answer({ error: 'down' }, 500);
    await expect(third).rejects.toMatchObject({ code: 'ERR_JWKS_UNAVAILABLE' });
    expect(await failure(s.verifier, old)).toMatchObject(NO_KEY);
    expect(s.ks.maxInFlight).toBe(1);
  });

  it('a kid whose member changes kty between fetches: the memoized ES256 header finds nothing', async () => {
    const s = await setup();
    const ecK = await makeKey('ES256', 'k');
    const rsaK = await makeKey('RS256', 'k');
    s.ks.jwks = { keys: [ecK.publicJwk] };
    await s.verifier.start();
    const es = await s.token(ecK);
    await s.verifier.verify(es);
    await s.verifier.verify(es);
    s.ks.jwks = { keys: [rsaK.publicJwk] };
    s.clock.advance(MAX_AGE);
    expect(await failure(s.verifier, es)).toMatchObject(NO_KEY);
    expect(await failure(s.verifier, await s.token(ecK))).toMatchObject(NO_KEY);
    await expect(s.verifier.verify(await s.token(rsaK))).resolves.toMatchObject({ kid: 'k' });
    // An ES256 header naming k, signed by anyone, has no key to confuse with the RSA one.
    const attacker = await makeKey('ES256', 'k');
    expect(await failure(s.verifier, await s.token(attacker))).toMatchObject(NO_KEY);
  });

  it('an unknown-kid flood against a hanging endpoint makes one request, then fails, then obeys the cooldown', async () => {
    const s = await setup();
    await s.verifier.start();
    s.ks.mode = 'hold';
    s.clock.advance(COOLDOWN);
    const tokens = await Promise.all(Array.from({ length: 300 }, (_, i) => s.token(s.es, { kid: `x-${i}` })));
    const all = tokens.map((t) => failure(s.verifier, t));
    // A known kid is served from the fresh set meanwhile.
    await expect(s.verifier.verify(await s.token(s.es))).resolves.toMatchObject({ kid: 'es-1' });
    await s.ks.heldCount(1);
    s.ks.held[0]?.answer(s.ks.jwks);
    for (const e of await Promise.all(all)) expect(e).toMatchObject(NO_KEY);
    expect(s.ks.requests).toBe(2);
    for (const t of tokens.slice(0, 50)) expect(await failure(s.verifier, t)).toMatchObject(NO_KEY);
    expect(s.ks.requests).toBe(2);
  });
});

describe('fetches that must fail closed', () => {
  it('a redirect to another key set is not followed', async () => {
    const s = await setup();
    const evil = await KeyServer.start();
    const attacker = await makeKey('ES256', 'es-1');
    evil.jwks = { keys: [attacker.publicJwk] };
    s.ks.custom = (_req, res) => {
      res.writeHead(302, { location: `${evil.url}/.well-known/jwks.json` });
      res.end();
    };
    await expect(s.verifier.start()).rejects.toMatchObject({ code: 'ERR_JWKS_UNAVAILABLE' });
    s.clock.advance(1_000);
    expect(await failure(s.verifier, await s.token(attacker))).toMatchObject({
      code: 'ERR_JWKS_UNAVAILABLE',
    });
    expect(evil.requests).toBe(0);
  });

  it('a body that never finishes is cut by the timeout: unavailable, not a hang', async () => {
    const s = await setup({ timeoutMs: 200 });
    s.ks.custom = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"keys":['); // and nothing more
    };
    await expect(s.verifier.start()).rejects.toMatchObject({ code: 'ERR_JWKS_UNAVAILABLE' });
  });

  it('an empty set, or members of the wrong shape, verify nothing', async () => {
    const s = await setup();
    const bodies: unknown[] = [
      { keys: [] },
      { keys: [{ ...s.es.publicJwk, alg: 7 }] }, // jose ignored a non-string alg: refused here
      { keys: [{ ...s.es.publicJwk, use: ['sig'] }] },
      { keys: [{ ...s.es.publicJwk, key_ops: 'verify' }] },
      { keys: [{ ...s.es.publicJwk, key_ops: ['sign'] }] },
      { keys: [{ ...s.es.publicJwk, ext: 'true' }] },
      { keys: [{ ...s.es.publicJwk, kid: 1 }] },
      { keys: [{ ...s.es.publicJwk, kty: 'OKP' }] },
      { keys: [{ ...s.es.publicJwk, crv: 'P-384' }] },
    ];
    let first = true;
    for (const body of bodies) {
      s.ks.jwks = body as { keys: JWK[] };
      if (first) await s.verifier.start();
      else s.clock.advance(MAX_AGE);
      first = false;
      expect(await failure(s.verifier, await s.token(s.es))).toMatchObject({
        code: 'ERR_TOKEN_INVALID',
        claim: 'kid',
      });
    }
  });

  it('a prototype-polluting JWKS body is read as plain data', async () => {
    const s = await setup();
    const body = `{"keys":[{"__proto__":{"kid":"es-1","alg":"ES256"},${JSON.stringify(s.es.publicJwk).slice(1).replace('"kid":"es-1"', '"kid":"other"')}]}`;
    s.ks.custom = (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(body);
    };
    await s.verifier.start();
    expect(await failure(s.verifier, await s.token(s.es))).toMatchObject(NO_KEY);
    await expect(s.verifier.verify(await s.token(s.es, { kid: 'other' }))).resolves.toMatchObject({
      kid: 'other',
    });
    expect(({} as Record<string, unknown>).kid).toBeUndefined();
  });
});

describe('bounds of what attacker-chosen headers can make the cache hold', () => {
  it('thousands of distinct headers of a published kid leave at most 32 remembered; long ones none', async () => {
    const ks = await KeyServer.start();
    const es = await makeKey('ES256', 'es-1');
    ks.jwks = { keys: [es.publicJwk] };
    const cache = new JwksCache({
      url: `${ks.url}/.well-known/jwks.json`,
      fetch,
      algorithms: ['ES256'],
      cooldownMs: COOLDOWN,
      cacheMaxAgeMs: MAX_AGE,
      timeoutMs: 5_000,
      now: () => 0,
    });
    await cache.refresh();
    const header: JWSHeaderParameters = { alg: 'ES256', kid: 'es-1' };
    const encoded = Array.from({ length: 5_000 }, (_, i) => b64(`{"alg":"ES256","kid":"es-1","n":${i}}`));
    for (const e of encoded) expect(cache.key(header, e)).toBeDefined();
    expect(encoded.filter((e) => cache.remembered(e) !== undefined).length).toBeLessThanOrEqual(32);
    const long = b64(`{"alg":"ES256","kid":"es-1","pad":"${'x'.repeat(600)}"}`);
    cache.key(header, long);
    expect(cache.remembered(long)).toBeUndefined();
    // Unknown kids and prototype names are looked up, never stored, and cause no fetch within the cooldown.
    for (const kid of ['__proto__', 'constructor', ...Array.from({ length: 1_000 }, (_, i) => `u-${i}`)]) {
      const enc = b64(`{"alg":"ES256","kid":"${kid}"}`);
      expect(() => cache.key({ alg: 'ES256', kid }, enc)).toThrow(VerifyError);
      expect(cache.remembered(enc)).toBeUndefined();
    }
    expect(ks.requests).toBe(1);
  });

  it('a header remembered for one key set is forgotten when the next set lands', async () => {
    const ks = await KeyServer.start();
    const es = await makeKey('ES256', 'es-1');
    ks.jwks = { keys: [es.publicJwk] };
    let now = 0;
    const cache = new JwksCache({
      url: `${ks.url}/.well-known/jwks.json`,
      fetch,
      algorithms: ['ES256'],
      cooldownMs: COOLDOWN,
      cacheMaxAgeMs: MAX_AGE,
      timeoutMs: 5_000,
      now: () => now,
    });
    await cache.refresh();
    const enc = b64('{"alg":"ES256","kid":"es-1"}');
    const key = cache.key({ alg: 'ES256', kid: 'es-1' }, enc);
    expect(cache.remembered(enc)).toBe(key);
    ks.jwks = { keys: [] };
    await cache.refresh();
    expect(cache.remembered(enc)).toBeUndefined();
    // And a stale set's memo is not served either.
    ks.jwks = { keys: [es.publicJwk] };
    await cache.refresh();
    cache.key({ alg: 'ES256', kid: 'es-1' }, enc);
    now = MAX_AGE;
    expect(cache.remembered(enc)).toBeUndefined();
  });
});
