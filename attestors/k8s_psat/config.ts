// Configuration of the k8s_psat attestor: the clusters whose projected service-account tokens are accepted.
import { z } from 'zod';
import {
  algorithmsSchema,
  clockSkewSchema,
  jwksSchema,
  maxTokenLifetimeSchema,
  secureUrlSchema,
} from '../../src/attestation/jwt-evidence.ts';

const clusterSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, 'a cluster name is a DNS label (a-z, 0-9, -)')
      .describe('Names the cluster in selectors (k8s_psat:cluster:<name>) and tasks (k8s:<name>/<pod uid>).'),
    issuer: secureUrlSchema.describe(
      "The cluster's service-account issuer (kube-apiserver --service-account-issuer).",
    ),
    jwksUri: secureUrlSchema
      .optional()
      .describe('JWKS URL of the cluster; unset (and no jwks): OIDC discovery at the issuer.'),
    jwks: jwksSchema.optional(),
    audience: z
      .string()
      .min(1)
      .max(512)
      .optional()
      .describe(
        "The `aud` the tokens must carry (the projected volume's audience); default: the broker's issuer URL.",
      ),
    algorithms: algorithmsSchema.default(['RS256', 'ES256']).describe('Signature algorithms accepted.'),
    singleUse: z
      .boolean()
      .default(false)
      .describe(
        'Accept each token once. Off by default: a pod reads the same token file until kubelet rotates it.',
      ),
    clockSkew: clockSkewSchema,
    maxTokenLifetime: maxTokenLifetimeSchema,
  })
  .refine((c) => !(c.jwksUri && c.jwks), { message: 'give jwksUri or jwks, not both', path: ['jwks'] });

export const k8sPsatConfigSchema = z
  .strictObject({
    clusters: z
      .array(clusterSchema)
      .min(1)
      .max(64)
      .refine((cs) => new Set(cs.map((c) => c.name)).size === cs.length, 'cluster names must be distinct'),
  })
  .describe('The k8s_psat attestor: Kubernetes projected service-account tokens; tasks are pods.');

export type K8sPsatConfig = z.output<typeof k8sPsatConfigSchema>;
export type K8sClusterConfig = K8sPsatConfig['clusters'][number];
