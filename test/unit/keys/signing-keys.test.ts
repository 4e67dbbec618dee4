import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, jwtVerify, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { JWT_ALGORITHMS } from '../../../src/config/schema.ts';
import { KeyError, loadKeyManager, toSigningKey } from '../../../src/keys/signing-keys.ts';
import { MemoryStore } from '../../../src/store/memory/memory.store.ts';

function pemFile(pem: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'writ-keys-')), 'key.pem');
  writeFileSync(file, pem);
  return file;
}

describe('signing keys', () => {
  it.each(JWT_ALGORITHMS)(
    'generates a %s key whose kid is its RFC 7638 thumbprint and which signs',
    async (alg) => {
      const km = await loadKeyManager({ alg, mode: 'dev', store: new MemoryStore({}), refreshHint: 300 });
      const key = km.current();
      const { kid: _kid, alg: _alg, ...jwk } = key.publicJwk;
      expect(key.kid).toBe(await calculateJwkThumbprint(jwk, 'sha256'));
      expect(km.jwks().keys[0]).toMatchObject({ kid: key.kid, alg, use: 'sig' });
      expect(JSON.stringify(km.jwks())).not.toMatch(/"(d|p|q|dp|dq|qi)":/);
      const token = await new SignJWT({}).setProtectedHeader({ alg, kid: key.kid }).sign(key.privateKey);
      await expect(jwtVerify(token, key.publicKey, { algorithms: [alg] })).resolves.toBeDefined();
    },
  );

  it('loads a PEM key file', async () => {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const file = pemFile(privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
    const km = await loadKeyManager({
      alg: 'ES256',
      privateKeyFile: file,
      mode: 'production',
      store: new MemoryStore({}),
      refreshHint: 300,
    });
    expect(km.current().kid).toBe((await toSigningKey(privateKey, 'ES256')).kid);
  });

  it.each([
    ['an RSA key for ES256', 'ES256', () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey],
    [
      'a P-384 key for ES256',
      'ES256',
      () => generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey,
    ],
    [
      'an EC key for RS256',
      'RS256',
      () => generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey,
    ],
    ['a 1024-bit RSA key', 'PS256', () => generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey],
    ['an Ed25519 key', 'ES256', () => generateKeyPairSync('ed25519').privateKey],
  ] as const)('refuses %s', async (_name, alg, make) => {
    const file = pemFile(make().export({ format: 'pem', type: 'pkcs8' }).toString());
    await expect(
      loadKeyManager({
        alg,
        privateKeyFile: file,
        mode: 'production',
        store: new MemoryStore({}),
        refreshHint: 300,
      }),
    ).rejects.toBeInstanceOf(KeyError);
  });

  it('refuses a missing or non-PEM key file', async () => {
    const store = new MemoryStore({});
    await expect(
      loadKeyManager({
        alg: 'ES256',
        privateKeyFile: '/nonexistent.pem',
        mode: 'production',
        store,
        refreshHint: 1,
      }),
    ).rejects.toThrow(/cannot read/);
    await expect(
      loadKeyManager({
        alg: 'ES256',
        privateKeyFile: pemFile('not a key'),
        mode: 'production',
        store,
        refreshHint: 1,
      }),
    ).rejects.toThrow(/not a PEM private key/);
  });

  it('shares one generated key between replicas through the store', async () => {
    const store = new MemoryStore({});
    const [a, b] = await Promise.all([
      loadKeyManager({ alg: 'ES256', mode: 'production', store, refreshHint: 300 }),
      loadKeyManager({ alg: 'ES256', mode: 'production', store, refreshHint: 300 }),
    ]);
    expect(a.current().kid).toBe(b.current().kid);
    const c = await loadKeyManager({ alg: 'ES256', mode: 'production', store, refreshHint: 300 });
    expect(c.current().kid).toBe(a.current().kid);
  });
});
