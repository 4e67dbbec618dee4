// JWT-SVID signing keys: load from PEM, generate (dev), or generate once and share through the store.
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';
import type { JwtAlgorithm } from '../config/schema.ts';
import type { CredentialStore } from '../store/types.ts';

export interface SigningKey {
  readonly kid: string;
  readonly alg: JwtAlgorithm;
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  /** Public JWK with kid and alg, ready to publish. */
  readonly publicJwk: Readonly<JWK>;
}

export interface JsonWebKeySet {
  keys: JWK[];
}

/** A SPIFFE trust bundle in its JWKS form. */
export interface SpiffeBundle extends JsonWebKeySet {
  spiffe_sequence: number;
  spiffe_refresh_hint: number;
}

export class KeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyError';
  }
}

const EC_CURVE: Partial<Record<JwtAlgorithm, string>> = { ES256: 'prime256v1', ES384: 'secp384r1' };

function generatePrivateKey(alg: JwtAlgorithm): KeyObject {
  const curve = EC_CURVE[alg];
  if (curve) return generateKeyPairSync('ec', { namedCurve: curve }).privateKey;
  return generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
}

/** Refuses a key that does not fit the algorithm (wrong type, curve or a weak RSA modulus). */
export function checkKeyFitsAlgorithm(key: KeyObject, alg: JwtAlgorithm): void {
  if (key.type !== 'private') throw new KeyError('the signing key must be a private key');
  const curve = EC_CURVE[alg];
  const details = key.asymmetricKeyDetails ?? {};
  if (curve) {
    if (key.asymmetricKeyType !== 'ec' || details.namedCurve !== curve) {
      throw new KeyError(`${alg} needs an EC ${alg === 'ES256' ? 'P-256' : 'P-384'} key`);
    }
    return;
  }
  if (key.asymmetricKeyType !== 'rsa') throw new KeyError(`${alg} needs an RSA key`);
  if ((details.modulusLength ?? 0) < 2048)
    throw new KeyError(`${alg} needs an RSA key of at least 2048 bits`);
}

export async function toSigningKey(privateKey: KeyObject, alg: JwtAlgorithm): Promise<SigningKey> {
  checkKeyFitsAlgorithm(privateKey, alg);
  const publicKey = createPublicKey(privateKey);
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk, 'sha256');
  return { kid, alg, privateKey, publicKey, publicJwk: Object.freeze({ ...jwk, kid, alg }) };
}

/** Holds the keys that sign and the keys that are published. */
export class KeyManager {
  readonly #signing: SigningKey;
  readonly #published: SigningKey[];
  readonly #sequence: number;
  readonly #refreshHint: number;

  constructor(signing: SigningKey, opts: { sequence?: number; refreshHint: number }) {
    this.#signing = signing;
    this.#published = [signing];
    this.#sequence = opts.sequence ?? 1;
    this.#refreshHint = opts.refreshHint;
  }

  current(): SigningKey {
    return this.#signing;
  }

  /** Algorithms a verifier of our tokens must accept (the allow-list). */
  algorithms(): JwtAlgorithm[] {
    return [...new Set(this.#published.map((k) => k.alg))];
  }

  publicKey(kid: string): SigningKey | undefined {
    return this.#published.find((k) => k.kid === kid);
  }

  jwks(): JsonWebKeySet {
    return { keys: this.#published.map((k) => ({ ...k.publicJwk, use: 'sig' })) };
  }

  bundle(): SpiffeBundle {
    const keys = this.#published.map((k) => {
      const { alg: _alg, ...rest } = k.publicJwk;
      return { ...rest, use: 'jwt-svid' };
    });
    return { keys, spiffe_sequence: this.#sequence, spiffe_refresh_hint: this.#refreshHint };
  }
}

export interface LoadKeysOptions {
  alg: JwtAlgorithm;
  privateKeyFile?: string | undefined;
  /** Dev mode generates a fresh key; production shares one through the store. */
  mode: 'dev' | 'production';
  store: CredentialStore;
  refreshHint: number;
}

export async function loadKeyManager(opts: LoadKeysOptions): Promise<KeyManager> {
  let privateKey: KeyObject;
  if (opts.privateKeyFile) {
    let pem: string;
    try {
      pem = readFileSync(opts.privateKeyFile, 'utf8');
    } catch {
      throw new KeyError(`cannot read keys.jwtPrivateKeyFile ${opts.privateKeyFile}`);
    }
    try {
      privateKey = createPrivateKey(pem);
    } catch {
      throw new KeyError(`keys.jwtPrivateKeyFile ${opts.privateKeyFile} is not a PEM private key`);
    }
  } else if (opts.mode === 'dev') {
    privateKey = generatePrivateKey(opts.alg);
  } else {
    // Generate a candidate; the first replica to store its key wins and every replica uses the stored one.
    const candidate = generatePrivateKey(opts.alg).export({ format: 'pem', type: 'pkcs8' }).toString();
    const stored = await opts.store.putKeyMaterialIfAbsent(`jwt-signing:${opts.alg}`, candidate);
    try {
      privateKey = createPrivateKey(stored);
    } catch {
      throw new KeyError('the signing key stored in Redis is not a PEM private key');
    }
  }
  const key = await toSigningKey(privateKey, opts.alg);
  return new KeyManager(key, { refreshHint: opts.refreshHint });
}
