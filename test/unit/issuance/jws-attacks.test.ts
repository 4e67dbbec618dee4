// Attacks on src/issuance/jws.ts (node:crypto JWS signing and the mint-then-check re-verification): tokens a
// standard verifier must read exactly as the broker meant them, and a re-check that refuses what it did not sign.
import { constants, generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { decodeProtectedHeader, exportJWK, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import type { JwtAlgorithm } from '../../../src/config/schema.ts';
import { signJwt, verifyJwt } from '../../../src/issuance/jws.ts';
import { checkKeyFitsAlgorithm, type SigningKey } from '../../../src/keys/signing-keys.ts';

const pairs = {
  ES256: generateKeyPairSync('ec', { namedCurve: 'P-256' }),
  ES384: generateKeyPairSync('ec', { namedCurve: 'P-384' }),
  RSA: generateKeyPairSync('rsa', { modulusLength: 2048 }),
};
const pairOf = (alg: JwtAlgorithm) => (alg === 'ES256' || alg === 'ES384' ? pairs[alg] : pairs.RSA);

async function signingKey(alg: JwtAlgorithm, kid = `kid-${alg}`, pair = pairOf(alg)): Promise<SigningKey> {
  const { privateKey, publicKey } = pair;
  return { kid, alg, privateKey, publicKey, publicJwk: { ...(await exportJWK(publicKey)), kid, alg } };
}

const now = Math.floor(Date.now() / 1000);
const claims = {
  task: 'task-1',
  sub: 'spiffe://example.org/w',
  aud: ['https://api.example'],
  iss: 'https://writ.example.org',
  jti: 'c0ffee',
  iat: now,
  nbf: now - 5,
  exp: now + 300,
};

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64url');
const HASH: Record<JwtAlgorithm, string> = {
  ES256: 'sha256',
  ES384: 'sha384',
  RS256: 'sha256',
  PS256: 'sha256',
};

/** Signs any header and payload bytes with the key, as an attacker holding a signing oracle would. */
function rawSign(alg: JwtAlgorithm, key: KeyObject, h: string, c: string, der = false): string {
  const input = Buffer.from(`${h}.${c}`, 'latin1');
  const options =
    alg === 'PS256'
      ? { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }
      : alg === 'RS256'
        ? { key, padding: constants.RSA_PKCS1_PADDING }
        : { key, dsaEncoding: der ? ('der' as const) : ('ieee-p1363' as const) };
  return `${h}.${c}.${sign(HASH[alg], input, options).toString('base64url')}`;
}

describe.each(['ES256', 'ES384', 'RS256', 'PS256'] as const)('JWS attacks with %s', (alg) => {
  it('signature encoding is what RFC 7518 requires (ECDSA r||s of fixed size; PSS salt = hash length)', async () => {
    const key = await signingKey(alg);
    const token = await signJwt(key, claims);
    const [h, c, s] = token.split('.') as [string, string, string];
    const sig = Buffer.from(s, 'base64url');
    const input = Buffer.from(`${h}.${c}`);
    if (alg === 'ES256') expect(sig.length).toBe(64);
    if (alg === 'ES384') expect(sig.length).toBe(96);
    if (alg === 'RS256' || alg === 'PS256') expect(sig.length).toBe(256);
    if (alg === 'PS256') {
      // A strict verifier that insists on a 32-byte salt (Go, BoringSSL-based libraries) accepts it...
      expect(
        verify(
          'sha256',
          input,
          { key: key.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 },
          sig,
        ),
      ).toBe(true);
      // ...and it is not PKCS#1 v1.5 under another name.
      expect(verify('sha256', input, { key: key.publicKey, padding: constants.RSA_PKCS1_PADDING }, sig)).toBe(
        false,
      );
    }
    if (alg === 'RS256') {
      expect(
        verify('sha256', input, { key: key.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING }, sig),
      ).toBe(false);
    }
  });

  it('a standard verifier reads exactly what the re-check reads, also for awkward strings', async () => {
    const key = await signingKey(alg, 'kid "quoted" \\ \u2028 é');
    const awkward = {
      ...claims,
      task: 'task "quoted" \\ \u2028\u2029 \u0000 𝄞 é',
      aud: ['a,b', ' spaced ', 'https://api.example/</script>'],
      sub: 'spiffe://example.org/ü',
    };
    const token = await signJwt(key, awkward);
    expect(token).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(decodeProtectedHeader(token)).toEqual({ alg, kid: key.kid, typ: 'JWT' });
    const { payload, protectedHeader } = await jwtVerify(token, key.publicKey, { algorithms: [alg] });
    const mine = await verifyJwt(key, token);
    expect(payload).toEqual(awkward);
    expect(mine.payload).toEqual(awkward);
    expect(mine.header).toEqual(protectedHeader);
  });

  it('the re-check refuses non-canonical base64url, empty or extra parts and a stripped signature', async () => {
    const key = await signingKey(alg);
    const token = await signJwt(key, claims);
    const [h, c] = token.split('.') as [string, string, string];
    // Same decoded bytes, other text: a last character with non-zero unused bits, properly signed.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const bump = (seg: string) => {
      if (seg.length % 4 === 0) return null; // no unused bits
      const bytes = Buffer.from(seg, 'base64url');
      for (const ch of alphabet) {
        const other = `${seg.slice(0, -1)}${ch}`;
        if (other !== seg && Buffer.from(other, 'base64url').equals(bytes)) return other;
      }
      return null;
    };
    let json = JSON.stringify(claims);
    for (let pad = 'x'; Buffer.byteLength(json) % 3 === 0; pad += 'x')
      json = JSON.stringify({ ...claims, pad });
    const cc = b64(json);
    // The canonical form of that payload, signed by hand, passes: only the encoding differs below.
    await expect(verifyJwt(key, rawSign(alg, key.privateKey, h, cc))).resolves.toBeDefined();
    const c2 = bump(cc);
    const h2 = bump(h);
    expect(c2 ?? h2, 'at least one segment has unused bits').not.toBeNull();
    if (c2) await expect(verifyJwt(key, rawSign(alg, key.privateKey, h, c2))).rejects.toThrow(/base64url/);
    if (h2) await expect(verifyJwt(key, rawSign(alg, key.privateKey, h2, c))).rejects.toThrow(/base64url/);
    // Padding and standard-alphabet characters, properly signed.
    await expect(verifyJwt(key, rawSign(alg, key.privateKey, `${h}=`, c))).rejects.toThrow();
    const std = Buffer.from(JSON.stringify({ ...claims, sub: 'spiffe://example.org/w?>>>' })).toString(
      'base64',
    );
    if (/[+/=]/.test(std))
      await expect(verifyJwt(key, rawSign(alg, key.privateKey, h, std))).rejects.toThrow();
    await expect(verifyJwt(key, `${h}.${c}.`)).rejects.toThrow();
    await expect(verifyJwt(key, `${h}.${c}`)).rejects.toThrow();
    await expect(verifyJwt(key, `${token}.`)).rejects.toThrow();
    await expect(verifyJwt(key, ` ${token}`)).rejects.toThrow();
    await expect(verifyJwt(key, `${token}\n`)).rejects.toThrow();
  });

  it('the re-check refuses a signature made with another algorithm or encoding over the same key', async () => {
    const key = await signingKey(alg);
    const [h, c] = (await signJwt(key, claims)).split('.') as [string, string];
    if (alg === 'ES256' || alg === 'ES384') {
      // DER-encoded ECDSA (what X.509 uses) is not a JWS signature.
      await expect(verifyJwt(key, rawSign(alg, key.privateKey, h, c, true))).rejects.toThrow();
    } else {
      const other: JwtAlgorithm = alg === 'RS256' ? 'PS256' : 'RS256';
      await expect(verifyJwt(key, rawSign(other, key.privateKey, h, c))).rejects.toThrow(
        'signature verification failed',
      );
    }
  });

  it('the re-check refuses a token signed by a key other than the one it is given, even with its kid', async () => {
    const key = await signingKey(alg);
    const pair = alg.startsWith('ES')
      ? generateKeyPairSync('ec', { namedCurve: alg === 'ES256' ? 'P-256' : 'P-384' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
    const impostor = await signingKey(alg, key.kid, pair);
    await expect(verifyJwt(key, await signJwt(impostor, claims))).rejects.toThrow(
      'signature verification failed',
    );
  });
});

describe('JWS signer inputs', () => {
  it('keys whose type or curve does not fit the algorithm never become signing keys', () => {
    expect(() => checkKeyFitsAlgorithm(pairs.ES384.privateKey, 'ES256')).toThrow();
    expect(() => checkKeyFitsAlgorithm(pairs.ES256.privateKey, 'ES384')).toThrow();
    expect(() => checkKeyFitsAlgorithm(pairs.ES256.privateKey, 'RS256')).toThrow();
    expect(() => checkKeyFitsAlgorithm(pairs.RSA.privateKey, 'ES256')).toThrow();
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expect(() => checkKeyFitsAlgorithm(weak.privateKey, 'PS256')).toThrow();
  });

  it('duplicate member names in a signed payload are read the same way by jose and the re-check', async () => {
    const key = await signingKey('ES256');
    const h = b64(JSON.stringify({ alg: 'ES256', kid: key.kid, typ: 'JWT' }));
    const c = b64(
      `{"sub":"spiffe://example.org/admin","aud":["x"],"exp":${now + 60},"sub":"spiffe://example.org/w"}`,
    );
    const token = rawSign('ES256', key.privateKey, h, c);
    const mine = await verifyJwt(key, token);
    const theirs = await jwtVerify(token, key.publicKey, { algorithms: ['ES256'] });
    expect(mine.payload.sub).toBe(theirs.payload.sub);
  });

  it('the protected header is prepared per key object: a second key with another kid gets its own header', async () => {
    const k1 = await signingKey('ES256', 'one');
    const k2 = await signingKey('ES256', 'two');
    expect(decodeProtectedHeader(await signJwt(k1, claims)).kid).toBe('one');
    expect(decodeProtectedHeader(await signJwt(k2, claims)).kid).toBe('two');
    await expect(verifyJwt(k2, await signJwt(k1, claims))).resolves.toMatchObject({ header: { kid: 'one' } });
  });
});
