// Configuration of the generic oidc attestor: issuers, claim-to-selector mappings, task templates, presets.
import { z } from 'zod';
import {
  algorithmsSchema,
  clockSkewSchema,
  type EvidenceAlgorithm,
  jwksSchema,
  maxTokenLifetimeSchema,
  secureUrlSchema,
} from '../../src/attestation/jwt-evidence.ts';
import { parseTaskTemplate, type TaskTemplate } from './template.ts';

/** Namespaces other attestors own: an oidc template may not name tasks in them. */
const RESERVED_NAMESPACES = new Set(['github', 'k8s']);
/** The selector key the attestor itself writes: `oidc:issuer:<name>`. */
export const ISSUER_KEY = 'issuer';

export interface Preset {
  issuer: string;
  algorithms: EvidenceAlgorithm[];
  claimSelectors: Record<string, string>;
  taskTemplate: string;
}

const GITLAB_CLAIMS = [
  'namespace_id',
  'namespace_path',
  'project_id',
  'project_path',
  'ref',
  'ref_type',
  'ref_protected',
  'environment',
  'environment_protected',
  'pipeline_source',
  'ci_config_ref_uri',
  'runner_environment',
  'user_login',
  'job_id',
  'pipeline_id',
];

export const PRESETS: Readonly<Record<'gitlab', Preset>> = {
  gitlab: {
    issuer: 'https://gitlab.com',
    algorithms: ['RS256'],
    claimSelectors: Object.fromEntries(GITLAB_CLAIMS.map((c) => [c, c])),
    taskTemplate: 'gitlab:{project_path}/{pipeline_id}',
  },
};

const claimName = z.string().regex(/^[A-Za-z0-9_.:/-]{1,128}$/, 'a claim name');
const selectorKey = z
  .string()
  .regex(/^[A-Za-z0-9_.-]{1,64}$/, 'a selector key is 1-64 of A-Z a-z 0-9 _ . -')
  .refine((k) => k !== ISSUER_KEY, `"${ISSUER_KEY}" is the attestor's own selector key`);

const issuerSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9_-]{0,31}$/, 'a name is 1-32 of a-z 0-9 _ -')
    .describe('Names the issuer in the selector oidc:issuer:<name>.'),
  preset: z
    .enum(['gitlab'])
    .optional()
    .describe('Defaults for a known platform (gitlab: GitLab CI ID tokens).'),
  issuer: secureUrlSchema.optional().describe('`iss` of the tokens (required unless a preset gives one).'),
  jwksUri: secureUrlSchema
    .optional()
    .describe('JWKS URL; unset (and no jwks): OIDC discovery at the issuer.'),
  jwks: jwksSchema.optional(),
  audience: z.string().min(1).max(512).describe('The `aud` the tokens must carry.'),
  algorithms: algorithmsSchema
    .optional()
    .describe('Signature algorithms accepted (default: the preset, else RS256 and ES256).'),
  claimSelectors: z
    .record(claimName, selectorKey)
    .optional()
    .describe('Claim -> selector key: claim `c` mapped to `k` yields oidc:k:<value> (added to the preset).'),
  taskTemplate: z
    .string()
    .max(200)
    .optional()
    .describe(
      'Task id template over claims, e.g. gitlab:{project_path}/{pipeline_id} (default: the preset).',
    ),
  singleUse: z
    .boolean()
    .default(true)
    .describe('Accept each token (jti, else its hash) once while it is valid.'),
  clockSkew: clockSkewSchema,
  maxTokenLifetime: maxTokenLifetimeSchema,
});

export type OidcIssuerInput = z.output<typeof issuerSchema>;

export interface ResolvedIssuer {
  name: string;
  issuer: string;
  jwksUri: string | undefined;
  jwks: z.output<typeof jwksSchema> | undefined;
  audience: string;
  algorithms: EvidenceAlgorithm[];
  claimSelectors: Record<string, string>;
  template: TaskTemplate | undefined;
  singleUse: boolean;
  clockSkew: number;
  maxTokenLifetime: number;
}

/** Applies the preset; a string is a problem for the config error. */
export function resolveIssuer(input: OidcIssuerInput): ResolvedIssuer | string {
  const preset = input.preset ? PRESETS[input.preset] : undefined;
  const issuer = input.issuer ?? preset?.issuer;
  if (issuer === undefined) return 'issuer is required (no preset gives one)';
  const source = input.taskTemplate ?? preset?.taskTemplate;
  let template: TaskTemplate | undefined;
  if (source !== undefined) {
    const parsed = parseTaskTemplate(source);
    if (typeof parsed === 'string') return `taskTemplate: ${parsed}`;
    if (RESERVED_NAMESPACES.has(parsed.namespace)) {
      return `taskTemplate: the ${parsed.namespace}: namespace belongs to another attestor`;
    }
    template = parsed;
  }
  return {
    name: input.name,
    issuer,
    jwksUri: input.jwksUri,
    jwks: input.jwks,
    audience: input.audience,
    algorithms: input.algorithms ?? preset?.algorithms ?? ['RS256', 'ES256'],
    claimSelectors: { ...(preset?.claimSelectors ?? {}), ...(input.claimSelectors ?? {}) },
    template,
    singleUse: input.singleUse,
    clockSkew: input.clockSkew,
    maxTokenLifetime: input.maxTokenLifetime,
  };
}

/**
 * Several issuers may name tasks only if their ids can never collide (a task of one issuer must not be
 * joinable by tokens of another): each template then needs a literal prefix after its namespace that ends
 * with '/', and no prefix may be a prefix of another.
 */
function templateProblems(issuers: ResolvedIssuer[]): string[] {
  const templated = issuers.filter((i) => i.template !== undefined);
  const namespaces = new Set(templated.map((i) => i.template!.namespace));
  if (namespaces.size > 1) {
    return [`every task template must use one namespace (found ${[...namespaces].join(', ')})`];
  }
  if (templated.length < 2) return [];
  const problems: string[] = [];
  for (const i of templated) {
    const prefix = i.template!.literalPrefix;
    if (!prefix.endsWith('/') || prefix.length <= i.template!.namespace.length + 2) {
      problems.push(
        `issuer ${i.name}: with several templated issuers, each template starts with its own literal ` +
          `path after the namespace, e.g. ${i.template!.namespace}:${i.name}/{...}`,
      );
    }
  }
  templated.forEach((a, i) => {
    for (const b of templated.slice(i + 1)) {
      const [pa, pb] = [a.template!.literalPrefix, b.template!.literalPrefix];
      if (pa.startsWith(pb) || pb.startsWith(pa)) {
        problems.push(`the task templates of issuers ${a.name} and ${b.name} could name the same task`);
      }
    }
  });
  return problems;
}

export const oidcConfigSchema = z
  .strictObject({
    issuers: z.array(issuerSchema).min(1).max(32).describe('The issuers whose tokens are accepted.'),
  })
  .superRefine((c, ctx) => {
    const resolved: ResolvedIssuer[] = [];
    c.issuers.forEach((input, index) => {
      if (input.jwks && input.jwksUri) {
        ctx.addIssue({
          code: 'custom',
          path: ['issuers', index, 'jwks'],
          message: 'give jwksUri or jwks, not both',
        });
      }
      const r = resolveIssuer(input);
      if (typeof r === 'string') ctx.addIssue({ code: 'custom', path: ['issuers', index], message: r });
      else resolved.push(r);
    });
    const names = c.issuers.map((i) => i.name);
    if (new Set(names).size !== names.length) {
      ctx.addIssue({ code: 'custom', path: ['issuers'], message: 'issuer names must be distinct' });
    }
    const urls = resolved.map((i) => i.issuer);
    if (new Set(urls).size !== urls.length) {
      ctx.addIssue({ code: 'custom', path: ['issuers'], message: 'each issuer URL may be configured once' });
    }
    for (const message of templateProblems(resolved))
      ctx.addIssue({ code: 'custom', path: ['issuers'], message });
  })
  .describe('The oidc attestor: OIDC ID tokens of any issuer (GitLab CI with preset: gitlab).');

export type OidcConfig = z.output<typeof oidcConfigSchema>;

/** The resolved issuers of a validated configuration. */
export function resolveIssuers(config: OidcConfig): ResolvedIssuer[] {
  return config.issuers.map((input) => {
    const r = resolveIssuer(input);
    if (typeof r === 'string') throw new TypeError(`attestors.oidc: ${r}`);
    return r;
  });
}

/** The task namespace of the attestor: the one its templates share ('oidc' when none names tasks). */
export function taskNamespaceOf(issuers: ResolvedIssuer[]): string {
  return issuers.find((i) => i.template)?.template?.namespace ?? 'oidc';
}
