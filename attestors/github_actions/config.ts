// Configuration of the github_actions attestor (and of the GitHub webhook that ends run tasks).
import { z } from 'zod';
import {
  algorithmsSchema,
  clockSkewSchema,
  maxTokenLifetimeSchema,
  secureUrlSchema,
} from '../../src/attestation/jwt-evidence.ts';

export const GITHUB_ISSUER = 'https://token.actions.githubusercontent.com';

const secretSchema = z.string().min(16, 'a webhook secret must have at least 16 characters').max(256);

export const githubActionsConfigSchema = z
  .strictObject({
    issuer: secureUrlSchema
      .default(GITHUB_ISSUER)
      .describe('`iss` of the OIDC tokens (GitHub Enterprise Server: https://HOST/_services/token).'),
    jwksUri: secureUrlSchema
      .optional()
      .describe(
        "The issuer's JWKS URL; unset: found by OIDC discovery at <issuer>/.well-known/openid-configuration.",
      ),
    audience: z
      .string()
      .min(1)
      .max(512)
      .describe('The `aud` the tokens must carry (the workflow asks for it); e.g. the broker URL.'),
    algorithms: algorithmsSchema.default(['RS256']).describe('Signature algorithms accepted.'),
    singleUse: z
      .boolean()
      .default(true)
      .describe('Accept each token (by jti) once; GitHub mints a fresh token for every request.'),
    clockSkew: clockSkewSchema,
    maxTokenLifetime: maxTokenLifetimeSchema,
    webhookSecret: z
      .union([secretSchema, z.array(secretSchema).min(1).max(4)])
      .optional()
      .describe(
        'Secret of the GitHub webhook that ends run tasks (POST /v1/webhooks/github); a list during rotation. ' +
          'Unset: the webhook endpoint answers 404.',
      ),
    webhookEvents: z
      .array(z.enum(['workflow_run', 'workflow_job']))
      .min(1)
      .default(['workflow_run', 'workflow_job'])
      .describe(
        'Completed events that end the run task. workflow_job ends the run at its first finished job: ' +
          'keep only workflow_run for workflows with several jobs.',
      ),
  })
  .describe('The github_actions attestor: GitHub Actions OIDC tokens; tasks are workflow runs.');

export type GithubActionsConfig = z.output<typeof githubActionsConfigSchema>;
