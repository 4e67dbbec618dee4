// The JWS signer and re-check of the issuance hot path: standard tokens (jose verifies them) and a re-check that
// refuses anything that is not exactly what the key signed.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { decodeProtectedHeader, exportJWK, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import type { JwtAlgorithm } from '../../../src/config/schema.ts';
import { signJwt, verifyJwt } from '../../../src/issuance/jws.ts';
import type { SigningKey } from '../../../src/keys/signing-keys.ts';

function keyPair(alg: JwtAlgorithm): { privateKey: KeyObject; publicKey: KeyObject } {
  switch (alg) {
    case 'ES256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' });
    case 'ES384':
      return generateKeyPairSync('ec', { namedCurve: 'P-384' });
    default:
      return generateKeyPairSync('rsa', { modulusLength: 2048 });
  }
}

async function signingKey(alg: JwtAlgorithm, kid = `kid-${alg}`): Promise<SigningKey> {
  const { privateKey, publicKey } = keyPair(alg);
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

describe.each(['ES256', 'ES384', 'RS256', 'PS256'] as const)('JWS with %s', (alg) => {
  it('signs a compact JWS that jose verifies with the public key and the algorithm allow-list', async () => {
    const key = await signingKey(alg);
    const token = await signJwt(key, claims);
    expect(decodeProtectedHeader(token)).toEqual({ alg, kid: key.kid, typ: 'JWT' });
    const { payload } = await jwtVerify(token, key.publicKey, {
      algorithms: [alg],
      issuer: claims.iss,
      audience: claims.aud,
      typ: 'JWT',
    });
    expect(payload).toEqual(claims);
    expect(await verifyJwt(key, token)).toEqual({
      header: { alg, kid: key.kid, typ: 'JWT' },
      payload: claims,
    });
  });

  it('re-check refuses a changed payload, a foreign signature and a malformed token', async () => {
    const key = await signingKey(alg);
    const other = await signingKey(alg);
    const token = await signJwt(key, claims);
    const [h, , s] = token.split('.');
    const forged = Buffer.from(JSON.stringify({ ...claims, sub: 'spiffe://example.org/admin' })).toString(
      'base64url',
    );
    await expect(verifyJwt(key, `${h}.${forged}.${s}`)).rejects.toThrow('signature verification failed');
    await expect(verifyJwt(key, await signJwt(other, claims))).rejects.toThrow();
    await expect(verifyJwt(key, `${token}.x`)).rejects.toThrow('not a compact JWS');
    await expect(verifyJwt(key, `${token}=`)).rejects.toThrow('malformed signature encoding');
  });
});
