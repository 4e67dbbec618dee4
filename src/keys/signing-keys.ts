// JWT-SVID signing keys: a PEM file, or a ring generated once and shared through the store (rotated).
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { calculateJwkThumbprint, exportJWK, type JWK } from 'jose';
import type { Logger } from 'pino';
import type { JwtAlgorithm } from '../config/schema.ts';
import { type Clock, type CredentialStore, seconds } from '../store/types.ts';
import { FixedRing, LiveRing, type Ring } from './key-ring.ts';
import { type RotationConfig, ringSpec, ringTiming } from './rotation.ts';

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

/** Holds the key that signs and the keys that are published (a ring shared through the store, or a file). */
export class KeyManager {
  readonly #ring: Ring<SigningKey>;
  readonly #refreshHint: number;

  constructor(ring: Ring<SigningKey>, opts: { refreshHint: number }) {
    this.#ring = ring;
    this.#refreshHint = opts.refreshHint;
  }

  /** The ring behind the keys: rotation status, refresh after a rotation. */
  get ring(): Ring<SigningKey> {
    return this.#ring;
  }

  current(): SigningKey {
    return this.#ring.current();
  }

  /** The bundle sequence of the keys held (0 for a key given as a file). */
  get sequence(): number {
    return this.#ring.sequence;
  }

  /** Algorithms a verifier of our tokens must accept (the allow-list). */
  algorithms(): JwtAlgorithm[] {
    return [...new Set(this.#ring.published().map((k) => k.alg))];
  }

  /** A published key: the current key, the next one, or a retired one whose tokens may still be alive. */
  publicKey(kid: string): SigningKey | undefined {
    return this.#ring.published().find((k) => k.kid === kid);
  }

  jwks(): JsonWebKeySet {
    return { keys: this.#ring.published().map((k) => ({ ...k.publicJwk, use: 'sig' })) };
  }

  /** The JWT-SVID part of the SPIFFE bundle; the route adds the X.509 authorities and the sequence. */
  bundle(): SpiffeBundle {
    const keys = this.#ring.published().map((k) => {
      const { alg: _alg, ...rest } = k.publicJwk;
      return { ...rest, use: 'jwt-svid' };
    });
    return { keys, spiffe_sequence: Math.max(1, this.sequence), spiffe_refresh_hint: this.#refreshHint };
  }

  close(): void {
    this.#ring.close();
  }
}

export interface LoadKeysOptions {
  config: RotationConfig;
  /** Dev mode and production both keep the ring in the store (dev: the in-memory one). */
  store: CredentialStore;
  clock: Clock;
  logger: Logger;
  /** How often the ring is re-read; default keys.rotation.refreshInterval. */
  refreshMs?: number | undefined;
}

function readKeyFile(file: string): KeyObject {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch {
    throw new KeyError(`cannot read keys.jwtPrivateKeyFile ${file}`);
  }
  try {
    return createPrivateKey(pem);
  } catch {
    throw new KeyError(`keys.jwtPrivateKeyFile ${file} is not a PEM private key`);
  }
}

export async function loadKeyManager(opts: LoadKeysOptions): Promise<KeyManager> {
  const { config } = opts;
  const alg = config.keys.jwtAlgorithm;
  const refreshHint = config.keys.bundleRefreshHint;
  const file = config.keys.jwtPrivateKeyFile;
  if (file !== undefined) {
    const key = await toSigningKey(readKeyFile(file), alg);
    return new KeyManager(new FixedRing(key, seconds(opts.clock)), { refreshHint });
  }
  const ring = await LiveRing.open<SigningKey>({
    spec: ringSpec(opts, 'jwt'),
    logger: opts.logger,
    ...ringTiming(config, opts.refreshMs),
    decode: async (slot) => {
      let key: KeyObject;
      try {
        key = createPrivateKey(slot.pem);
      } catch {
        throw new KeyError('a signing key stored in the key ring is not a PEM private key');
      }
      return toSigningKey(key, alg);
    },
  });
  return new KeyManager(ring, { refreshHint });
}
