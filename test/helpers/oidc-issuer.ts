// A fake OIDC issuer on loopback for attestor tests: discovery + JWKS, and tokens signed with keys the test made.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  type CryptoKey,
  exportJWK,
  exportSPKI,
  generateKeyPair,
  type JSONWebKeySet,
  type JWK,
  type JWTPayload,
  SignJWT,
} from 'jose';

export type SigningAlg = 'RS256' | 'ES256';

interface IssuerKey {
  kid: string;
  alg: SigningAlg;
  privateKey: CryptoKey;
  publicKey: CryptoKey;
  jwk: JWK;
}

export interface MintOptions {
  /** Sign with this key instead of the issuer's current one (e.g. a foreign key under the issuer's kid). */
  key?: { privateKey: CryptoKey; alg: SigningAlg };
  kid?: string;
  /** Extra protected header members. */
  header?: Record<string, unknown>;
}

async function makeKey(alg: SigningAlg, kid: string): Promise<IssuerKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicKey, jwk };
}

const b64url = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

export class FakeOidcIssuer {
  /** The issuer URL (`iss`); the discovery document lives under it. */
  readonly issuer: string;
  readonly jwksUri: string;
  /** Served while not 200. */
  jwksStatus = 200;
  jwksRequests = 0;
  discoveryRequests = 0;
  /** What discovery says the issuer is (to test a mismatch). */
  discoveryIssuer: string;
  readonly #server: Server;
  readonly #path: string;
  #keys: IssuerKey[];
  #seq = 0;

  private constructor(server: Server, origin: string, path: string, keys: IssuerKey[]) {
    this.#server = server;
    this.#path = path;
    this.issuer = `${origin}${path}`;
    this.jwksUri = `${origin}${path}/jwks`;
    this.discoveryIssuer = this.issuer;
    this.#keys = keys;
  }

  /** `path` puts the issuer under a path, as GitLab on a sub-path or GitHub Enterprise do. */
  static async start(opts: { alg?: SigningAlg; path?: string } = {}): Promise<FakeOidcIssuer> {
    const keys = [await makeKey(opts.alg ?? 'RS256', 'key-1')];
    let issuer: FakeOidcIssuer | undefined;
    const server = createServer((req, res) => issuer?.handle(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    issuer = new FakeOidcIssuer(server, `http://127.0.0.1:${port}`, opts.path ?? '', keys);
    return issuer;
  }

  get current(): IssuerKey {
    return this.#keys[this.#keys.length - 1]!;
  }

  /** The published keys (a JWKS; every key has its kty, so it also fits an inline `jwks` config). */
  jwks(): JSONWebKeySet & { keys: Array<JWK & { kty: string }> } {
    return { keys: this.#keys.map((k) => ({ ...k.jwk, kty: k.jwk.kty ?? '' })) };
  }

  /** Adds a new current key (the old one stays published, as during a rotation). */
  async rotate(alg: SigningAlg = this.current.alg): Promise<void> {
    this.#keys.push(await makeKey(alg, `key-${this.#keys.length + 1}`));
  }

  /** A fresh key pair that this issuer does not publish. */
  static async foreignKey(alg: SigningAlg = 'RS256'): Promise<{ privateKey: CryptoKey; alg: SigningAlg }> {
    const k = await makeKey(alg, 'foreign');
    return { privateKey: k.privateKey, alg };
  }

  /** A signed token: `iss` this issuer, iat/nbf now, exp in 5 minutes and a fresh jti unless `claims` say otherwise. */
  async mint(claims: Record<string, unknown>, opts: MintOptions = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const signer = opts.key ?? this.current;
    const full: Record<string, unknown> = {
      iss: this.issuer,
      iat: now,
      nbf: now,
      exp: now + 300,
      jti: `jti-${++this.#seq}-${Math.random().toString(36).slice(2)}`,
      ...claims,
    };
    for (const [k, v] of Object.entries(full)) if (v === undefined) delete full[k];
    return new SignJWT(full)
      .setProtectedHeader({ alg: signer.alg, kid: opts.kid ?? this.current.kid, typ: 'JWT', ...opts.header })
      .sign(signer.privateKey);
  }

  /** `alg: none`: the claims with no signature at all. */
  unsigned(claims: Record<string, unknown>): string {
    const now = Math.floor(Date.now() / 1000);
    const payload = { iss: this.issuer, iat: now, exp: now + 300, jti: `none-${++this.#seq}`, ...claims };
    return `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(payload)}.`;
  }

  /**
   * The classic key-confusion forgery: HS256 with the issuer's *public* key (its PEM, as a verifier that lets
   * the token pick the algorithm would use it) as the HMAC secret.
   */
  async hmacWithPublicKey(claims: Record<string, unknown>): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    const pem = await exportSPKI(this.current.publicKey);
    return new SignJWT({ iss: this.issuer, iat: now, exp: now + 300, jti: `hs-${++this.#seq}`, ...claims })
      .setProtectedHeader({ alg: 'HS256', kid: this.current.kid, typ: 'JWT' })
      .sign(new TextEncoder().encode(pem));
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && path === `${this.#path}/.well-known/openid-configuration`) {
      this.discoveryRequests++;
      json(200, {
        issuer: this.discoveryIssuer,
        jwks_uri: this.jwksUri,
        response_types_supported: ['id_token'],
        subject_types_supported: ['public'],
        id_token_signing_alg_values_supported: ['RS256', 'ES256'],
      });
      return;
    }
    if (req.method === 'GET' && path === `${this.#path}/jwks`) {
      this.jwksRequests++;
      if (this.jwksStatus !== 200) json(this.jwksStatus, { error: 'unavailable' });
      else json(200, this.jwks());
      return;
    }
    json(404, { error: 'not_found' });
  }
}

/** Claims of a GitHub Actions OIDC token (the shape GitHub documents), for one run. */
export function githubClaims(
  audience: string,
  overrides: Record<string, unknown> = {},
): JWTPayload & Record<string, unknown> {
  return {
    aud: audience,
    sub: 'repo:acme/api:ref:refs/heads/main',
    ref: 'refs/heads/main',
    sha: 'd6a0c2a7f4b1e0c5b3a4d6e7f8091a2b3c4d5e6f',
    repository: 'acme/api',
    repository_owner: 'acme',
    repository_owner_id: '1001',
    repository_id: '2002',
    repository_visibility: 'private',
    run_id: '9000001',
    run_number: '17',
    run_attempt: '1',
    runner_environment: 'github-hosted',
    actor: 'octocat',
    actor_id: '3003',
    workflow: 'deploy',
    workflow_ref: 'acme/api/.github/workflows/deploy.yml@refs/heads/main',
    job_workflow_ref: 'acme/api/.github/workflows/deploy.yml@refs/heads/main',
    head_ref: '',
    base_ref: '',
    event_name: 'push',
    ref_type: 'branch',
    ref_protected: 'true',
    ...overrides,
  };
}

/** Claims of a GitLab CI ID token (`id_tokens:` in .gitlab-ci.yml). */
export function gitlabClaims(
  audience: string,
  overrides: Record<string, unknown> = {},
): JWTPayload & Record<string, unknown> {
  return {
    aud: audience,
    sub: 'project_path:acme/platform/api:ref_type:branch:ref:main',
    namespace_id: '72',
    namespace_path: 'acme/platform',
    project_id: '20',
    project_path: 'acme/platform/api',
    user_id: '1',
    user_login: 'alice',
    user_email: 'alice@example.com',
    pipeline_id: '5512',
    pipeline_source: 'push',
    job_id: '88001',
    ref: 'main',
    ref_type: 'branch',
    ref_path: 'refs/heads/main',
    ref_protected: 'true',
    environment: 'production',
    environment_protected: 'true',
    runner_environment: 'gitlab-hosted',
    ci_config_ref_uri: 'gitlab.com/acme/platform/api//.gitlab-ci.yml@refs/heads/main',
    ...overrides,
  };
}

/** Claims of a Kubernetes projected service-account token bound to a pod. */
export function k8sClaims(
  audience: string | string[],
  overrides: Record<string, unknown> = {},
  pod: {
    namespace?: string;
    serviceAccount?: string;
    name?: string;
    uid?: string;
    node?: string | null;
  } = {},
): JWTPayload & Record<string, unknown> {
  const namespace = pod.namespace ?? 'payments';
  const sa = pod.serviceAccount ?? 'api';
  return {
    aud: Array.isArray(audience) ? audience : [audience],
    sub: `system:serviceaccount:${namespace}:${sa}`,
    'kubernetes.io': {
      namespace,
      serviceaccount: { name: sa, uid: '7a1c7f5e-1b0d-4c3e-9f5a-2b8d6e4c1a90' },
      pod: {
        name: pod.name ?? 'api-7d9f8b6c5-x2x7z',
        uid: pod.uid ?? '3f2e1d0c-9b8a-4766-8544-332211009988',
      },
      ...(pod.node === null
        ? {}
        : { node: { name: pod.node ?? 'node-a', uid: 'b1a2c3d4-e5f6-4789-8abc-def012345678' } }),
    },
    ...overrides,
  };
}

export type AttackId =
  | 'foreign_key'
  | 'tampered'
  | 'wrong_issuer'
  | 'wrong_audience'
  | 'expired'
  | 'not_yet_valid'
  | 'future_iat'
  | 'too_long'
  | 'no_exp'
  | 'alg_none'
  | 'hmac_public_key'
  | 'garbage';

export interface AttackCase {
  id: AttackId;
  name: string;
  token: () => Promise<string>;
  /** What the error_description says after `<attestor>: `. */
  reason: RegExp;
}

/**
 * The forged, misdirected and stale tokens every JWT attestor must refuse (401, ERR_ATTESTATION_FAILED).
 * `valid()` gives claims the attestor would accept from the issuer; `reasons` overrides the expected reason
 * where an attestor refuses earlier (a legacy-token check, routing by issuer).
 */
export function standardAttacks(
  /** A getter: attack tables are built when tests are collected, before the issuer starts. */
  issuerOf: () => FakeOidcIssuer,
  valid: () => Record<string, unknown>,
  opts: { reasons?: Partial<Record<AttackId, RegExp>>; wrongAudience?: string | string[] } = {},
): AttackCase[] {
  const now = () => Math.floor(Date.now() / 1000);
  const cases: AttackCase[] = [
    {
      id: 'foreign_key',
      name: 'a signature by a key the issuer does not publish (under its kid)',
      token: async () =>
        issuerOf().mint(valid(), { key: await FakeOidcIssuer.foreignKey(issuerOf().current.alg) }),
      reason: /^the token signature is invalid$/,
    },
    {
      id: 'tampered',
      name: 'a valid signature over a tampered payload',
      token: async () => {
        const [h, , sig] = (await issuerOf().mint(valid())).split('.');
        const forged = {
          iss: issuerOf().issuer,
          iat: now(),
          exp: now() + 300,
          ...valid(),
          repository: 'acme/evil',
        };
        return `${h}.${b64url(forged)}.${sig}`;
      },
      reason: /^the token signature is invalid$/,
    },
    {
      id: 'wrong_issuer',
      name: 'a wrong issuer (signed by the right key)',
      token: () => issuerOf().mint({ ...valid(), iss: 'https://evil.example' }),
      reason: /^the token issuer is not accepted$/,
    },
    {
      id: 'wrong_audience',
      name: 'a wrong audience',
      token: () => issuerOf().mint({ ...valid(), aud: opts.wrongAudience ?? 'https://someone-else.example' }),
      reason: /^the token audience is not accepted$/,
    },
    {
      id: 'expired',
      name: 'an expired token',
      token: () => issuerOf().mint({ ...valid(), iat: now() - 900, nbf: now() - 900, exp: now() - 600 }),
      reason: /^the token has expired$/,
    },
    {
      id: 'not_yet_valid',
      name: 'a token not yet valid',
      token: () => issuerOf().mint({ ...valid(), nbf: now() + 600, exp: now() + 900 }),
      reason: /^the token is not yet valid$/,
    },
    {
      id: 'future_iat',
      name: 'a token issued in the future',
      token: () => issuerOf().mint({ ...valid(), iat: now() + 600, nbf: undefined, exp: now() + 900 }),
      reason: /^the token is issued in the future$/,
    },
    {
      id: 'too_long',
      name: 'a token that lives longer than allowed',
      token: () => issuerOf().mint({ ...valid(), exp: now() + 3 * 86_400 }),
      reason: /^the token lives longer than allowed$/,
    },
    {
      id: 'no_exp',
      name: 'a token without exp',
      token: () => issuerOf().mint({ ...valid(), exp: undefined }),
      reason: /^the token lacks the exp claim$/,
    },
    {
      id: 'alg_none',
      name: 'alg: none',
      token: async () => issuerOf().unsigned(valid()),
      reason: /^the token (algorithm is not allowed|is malformed)$/,
    },
    {
      id: 'hmac_public_key',
      name: 'HS256 keyed with the issuer public key',
      token: () => issuerOf().hmacWithPublicKey(valid()),
      reason: /^the token algorithm is not allowed$/,
    },
    {
      id: 'garbage',
      name: 'not a JWT',
      token: async () => 'not.a.jwt',
      reason: /^the token is malformed$/,
    },
  ];
  return cases.map((c) => ({ ...c, reason: opts.reasons?.[c.id] ?? c.reason }));
}
