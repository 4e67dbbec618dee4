import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { calculateJwkThumbprint, jwtVerify, SignJWT } from 'jose';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { configSchema, JWT_ALGORITHMS, type JwtAlgorithm } from '../../../src/config/schema.ts';
import { KeyError, loadKeyManager, toSigningKey } from '../../../src/keys/signing-keys.ts';
import { MemoryStore } from '../../../src/store/memory/memory.store.ts';
import { systemClock } from '../../../src/store/types.ts';

function load(opts: { alg: JwtAlgorithm; privateKeyFile?: string; store: MemoryStore }) {
  const config = configSchema.parse({
    keys: {
      jwtAlgorithm: opts.alg,
      ...(opts.privateKeyFile === undefined ? {} : { jwtPrivateKeyFile: opts.privateKeyFile }),
    },
  });
  return loadKeyManager({
    config,
    store: opts.store,
    clock: systemClock,
    logger: pino({ level: 'silent' }),
    refreshMs: 0,
  });
}

function pemFile(pem: string): string {
  const file = join(mkdtempSync(join(tmpdir(), 'writ-keys-')), 'key.pem');
  writeFileSync(file, pem);
  return file;
}

describe('signing keys', () => {
  it.each(JWT_ALGORITHMS)(
    'generates a %s key whose kid is its RFC 7638 thumbprint and which signs',
    async (alg) => {
      const km = await load({ alg, store: new MemoryStore({}) });
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
    const km = await load({ alg: 'ES256', privateKeyFile: file, store: new MemoryStore({}) });
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
    await expect(load({ alg, privateKeyFile: file, store: new MemoryStore({}) })).rejects.toBeInstanceOf(
      KeyError,
    );
  });

  it('refuses a missing or non-PEM key file', async () => {
    const store = new MemoryStore({});
    await expect(load({ alg: 'ES256', privateKeyFile: '/nonexistent.pem', store })).rejects.toThrow(
      /cannot read/,
    );
    await expect(load({ alg: 'ES256', privateKeyFile: pemFile('not a key'), store })).rejects.toThrow(
      /not a PEM private key/,
    );
  });

  it('shares one generated key between replicas through the store', async () => {
    const store = new MemoryStore({});
    const [a, b] = await Promise.all([load({ alg: 'ES256', store }), load({ alg: 'ES256', store })]);
    expect(a.current().kid).toBe(b.current().kid);
    const c = await load({ alg: 'ES256', store });
    expect(c.current().kid).toBe(a.current().kid);
  });
});
