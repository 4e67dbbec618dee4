// Compact JWS signing of JWT-SVIDs with node:crypto on the key's KeyObject, and the independent check of what
// was signed. On the issuance hot path this replaces jose's SignJWT and jwtVerify (WebCrypto key conversions,
// one threadpool job each plus their bookkeeping, ~6 % of the broker's main thread): the same standard JWS
// (RFC 7515 compact, RFC 7518 algorithms), verified by jose and any other library (tests check both).
import { constants, type KeyObject, sign, verify } from 'node:crypto';
import type { JwtAlgorithm } from '../config/schema.ts';
import type { SigningKey } from '../keys/signing-keys.ts';

/** How node:crypto signs and verifies each JWS algorithm (ECDSA signatures are r || s, not DER). */
const ALGORITHMS: Record<
  JwtAlgorithm,
  { digest: string; options: { dsaEncoding?: 'ieee-p1363'; padding?: number; saltLength?: number } }
> = {
  ES256: { digest: 'sha256', options: { dsaEncoding: 'ieee-p1363' } },
  ES384: { digest: 'sha384', options: { dsaEncoding: 'ieee-p1363' } },
  RS256: { digest: 'sha256', options: { padding: constants.RSA_PKCS1_PADDING } },
  PS256: {
    digest: 'sha256',
    options: { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST },
  },
};

/** What is computed once per signing key: the encoded protected header and the key options. */
interface PreparedKey {
  header: string;
  digest: string;
  signWith: { key: KeyObject } & (typeof ALGORITHMS)[JwtAlgorithm]['options'];
  verifyWith: { key: KeyObject } & (typeof ALGORITHMS)[JwtAlgorithm]['options'];
}

// Keyed by the SigningKey object itself: a rotated-out key's entry goes with it.
const prepared = new WeakMap<SigningKey, PreparedKey>();

function prepare(key: SigningKey): PreparedKey {
  let p = prepared.get(key);
  if (p === undefined) {
    const alg = ALGORITHMS[key.alg];
    if (alg === undefined) throw new TypeError(`unsupported JWS algorithm ${String(key.alg)}`);
    p = {
      header: b64(JSON.stringify({ alg: key.alg, kid: key.kid, typ: 'JWT' })),
      digest: alg.digest,
      signWith: { key: key.privateKey, ...alg.options },
      verifyWith: { key: key.publicKey, ...alg.options },
    };
    prepared.set(key, p);
  }
  return p;
}

function b64(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}

/** Signs `payload` as a compact JWS with `key` (header `{alg, kid, typ: "JWT"}`); off the event loop. */
export async function signJwt(key: SigningKey, payload: Record<string, unknown>): Promise<string> {
  const p = prepare(key);
  const input = `${p.header}.${b64(JSON.stringify(payload))}`;
  const signature = await new Promise<Buffer>((resolve, reject) => {
    sign(p.digest, Buffer.from(input, 'latin1'), p.signWith, (error, sig) =>
      error ? reject(error) : resolve(sig),
    );
  });
  return `${input}.${signature.toString('base64url')}`;
}

/**
 * Reads back a compact JWS minted with `key`: checks its signature with the public key (node:crypto, off the
 * event loop) and returns its decoded header and payload, for the caller to compare with what it meant to sign.
 * Throws on anything malformed or a signature that does not verify.
 */
export async function verifyJwt(
  key: SigningKey,
  token: string,
): Promise<{ header: Record<string, unknown>; payload: Record<string, unknown> }> {
  const p = prepare(key);
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('not a compact JWS');
  const [h, c, s] = parts as [string, string, string];
  const signature = Buffer.from(s, 'base64url');
  // Base64url that does not round-trip (padding, stray characters) is not what we signed.
  if (signature.toString('base64url') !== s) throw new Error('malformed signature encoding');
  const ok = await new Promise<boolean>((resolve, reject) => {
    verify(p.digest, Buffer.from(`${h}.${c}`, 'latin1'), p.verifyWith, signature, (error, valid) =>
      error ? reject(error) : resolve(valid),
    );
  });
  if (!ok) throw new Error('signature verification failed');
  return { header: decodeSegment(h), payload: decodeSegment(c) };
}

function decodeSegment(segment: string): Record<string, unknown> {
  const bytes = Buffer.from(segment, 'base64url');
  if (bytes.toString('base64url') !== segment) throw new Error('malformed base64url segment');
  const value: unknown = JSON.parse(bytes.toString('utf8'));
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error('a JWS segment is not a JSON object');
  }
  return value as Record<string, unknown>;
}
