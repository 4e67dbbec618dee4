// The oidc attestor: an ID token of a configured issuer in, selectors from a claim mapping and a task out.
import type { JSONWebKeySet, JWTPayload } from 'jose';
import {
  JwtEvidenceVerifier,
  parseTokenEvidence,
  selector,
  unverifiedIssuer,
} from '../../src/attestation/jwt-evidence.ts';
import {
  AttestationError,
  type AttestationResult,
  type Attestor,
  type AttestorHost,
  type AttestorPlugin,
} from '../../src/attestation/types.ts';
import {
  ISSUER_KEY,
  type OidcConfig,
  oidcConfigSchema,
  type ResolvedIssuer,
  resolveIssuers,
  taskNamespaceOf,
} from './config.ts';
import { expandTaskTemplate } from './template.ts';

export const NAME = 'oidc';
const MAX_ARRAY_VALUES = 32;

export function tokenIssuers(config: OidcConfig): string[] {
  return resolveIssuers(config).map((i) => i.issuer);
}

/**
 * Selector values of one claim: strings, numbers and booleans as text; an array yields one selector per
 * element (e.g. groups). Absent, null and empty claims yield none; objects fail the attestation.
 */
function claimValues(claims: JWTPayload, claim: string): string[] {
  const value = claims[claim];
  const scalar = (v: unknown): string | undefined => {
    if (typeof v === 'string') return v === '' ? undefined : v;
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
    if (typeof v === 'boolean') return String(v);
    throw new AttestationError(`the token's ${claim} claim has an unsupported type`);
  };
  if (value === undefined || value === null) return [];
  if (Array.isArray(value)) {
    if (value.length > MAX_ARRAY_VALUES)
      throw new AttestationError(`the token's ${claim} claim has too many values`);
    return value.map(scalar).filter((v): v is string => v !== undefined);
  }
  const v = scalar(value);
  return v === undefined ? [] : [v];
}

interface Issuer {
  config: ResolvedIssuer;
  verifier: JwtEvidenceVerifier;
}

class OidcAttestor implements Attestor {
  readonly name = NAME;
  readonly legacy = false;
  readonly taskNamespace: string;
  readonly #issuers: Map<string, Issuer>;

  constructor(config: OidcConfig, host: AttestorHost) {
    const resolved = resolveIssuers(config);
    this.taskNamespace = taskNamespaceOf(resolved);
    this.#issuers = new Map(
      resolved.map((c) => [
        c.issuer,
        {
          config: c,
          verifier: new JwtEvidenceVerifier(
            {
              attestor: NAME,
              issuer: c.issuer,
              audience: c.audience,
              jwksUri: c.jwksUri,
              jwks: c.jwks as JSONWebKeySet | undefined,
              algorithms: c.algorithms,
              clockSkew: c.clockSkew,
              maxTokenLifetime: c.maxTokenLifetime,
              singleUse: c.singleUse,
              replayScope: 'oidc_jti',
            },
            host,
          ),
        },
      ]),
    );
  }

  async attest(evidence: unknown): Promise<AttestationResult> {
    const token = parseTokenEvidence(evidence);
    // The unverified iss only picks whose keys verify the token; verification then checks iss itself.
    const iss = unverifiedIssuer(token);
    const issuer = iss === undefined ? undefined : this.#issuers.get(iss);
    if (!issuer) throw new AttestationError('the token issuer is not accepted');
    const verified = await issuer.verifier.verify(token);
    const { claims } = verified;
    const { config } = issuer;

    const selectors = [selector(NAME, ISSUER_KEY, config.name)];
    for (const [claim, key] of Object.entries(config.claimSelectors)) {
      for (const value of claimValues(claims, claim)) selectors.push(selector(NAME, key, value, claim));
    }
    const task = config.template ? expandTaskTemplate(config.template, claims) : undefined;
    await issuer.verifier.consume(verified);
    return { selectors, task, expiresAt: claims.exp };
  }
}

export const oidcPlugin: AttestorPlugin<OidcConfig> = {
  name: NAME,
  configSchema: oidcConfigSchema,
  create: (config, host) => new OidcAttestor(config, host),
};
