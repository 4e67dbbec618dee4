// Config schemas of the optional attestors, keyed by the plugin name (`attestors.<name>` in the YAML).
// A section present enables the attestor.
import { githubActionsConfigSchema } from './github_actions/config.ts';
import { k8sPsatConfigSchema } from './k8s_psat/config.ts';
import { oidcConfigSchema } from './oidc/config.ts';
import { staticKeyConfigSchema } from './static_key/config.ts';
import { x509PopConfigSchema } from './x509pop/config.ts';

export const OPTIONAL_ATTESTOR_CONFIGS = {
  static_key: staticKeyConfigSchema.optional(),
  x509pop: x509PopConfigSchema.optional(),
  github_actions: githubActionsConfigSchema.optional(),
  oidc: oidcConfigSchema.optional(),
  k8s_psat: k8sPsatConfigSchema.optional(),
} as const;
