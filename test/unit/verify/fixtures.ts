// Shared by the verify tests: keys made here, a fake broker serving them, token minting, bounded waits.
import { randomUUID } from 'node:crypto';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { FakeBroker, type FakeBrokerOptions } from '../../helpers/sse-server.ts';

export const AUDIENCE = 'https://api.example';
export const SPIFFE_ID = 'spiffe://example.org/ci/deploy';

export interface TestKey {
  kid: string;
  alg: string;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export async function makeKey(alg: 'ES256' | 'RS256', kid: string): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicJwk };
}

export interface Fixture {
  broker: FakeBroker;
  es: TestKey;
  rsa: TestKey;
  /** A key the broker does not publish. */
  stranger: TestKey;
  close(): Promise<void>;
}

export async function startFixture(options: Partial<FakeBrokerOptions> = {}): Promise<Fixture> {
  const [es, rsa, stranger] = await Promise.all([
    makeKey('ES256', 'es-1'),
    makeKey('RS256', 'rsa-1'),
    makeKey('ES256', 'es-unpublished'),
  ]);
  const broker = await FakeBroker.start({ jwks: { keys: [es.publicJwk, rsa.publicJwk] }, ...options });
  return { broker, es, rsa, stranger, close: () => broker.close() };
}

export interface TokenSpec {
  key: TestKey;
  issuer: string;
  /** Epoch seconds the token is minted at. Default now. */
  at?: number;
  /** Claims to add or replace; a value of undefined removes the claim. */
  claims?: Record<string, unknown>;
  /** Header parameters to add or replace; a value of undefined removes the parameter. */
  header?: Record<string, unknown>;
}

/** Mints a JWT-SVID the way the broker does (or bent by `claims`/`header`). */
export async function mint(spec: TokenSpec): Promise<string> {
  const at = spec.at ?? Math.floor(Date.now() / 1000);
  const claims: Record<string, unknown> = {
    sub: SPIFFE_ID,
    aud: [AUDIENCE],
    iss: spec.issuer,
    iat: at,
    nbf: at - 5,
    exp: at + 300,
    jti: randomUUID(),
    task: 'task-1',
    ...spec.claims,
  };
  const header: Record<string, unknown> = {
    alg: spec.key.alg,
    kid: spec.key.kid,
    typ: 'JWT',
    ...spec.header,
  };
  return new SignJWT(dropUndefined(claims))
    .setProtectedHeader(dropUndefined(header) as { alg: string })
    .sign(spec.key.privateKey);
}

function dropUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));
}

/** The claims of a compact JWT, unverified (for tests only). */
export function claimsOf(token: string): { jti: string; task: string } {
  const payload = token.split('.')[1] ?? '';
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}

/** Polls `condition` until it holds; fails after `timeoutMs`. The only waiting the tests do. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The code of the VerifyError a promise rejects with ('resolved' when it does not reject). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (e) {
    return (e as { code?: string }).code ?? `not a coded error: ${String(e)}`;
  }
}
