// The attestor plugins this build ships, beyond join_token (which is on by default). Each is enabled by
// its section under `attestors.<name>` in the configuration. Add a plugin here and its config schema in
// OPTIONAL_ATTESTOR_CONFIGS; src/attestation/registry.ts does the rest.
import type { AttestorPlugin } from '../src/attestation/types.ts';
import { githubActionsPlugin } from './github_actions/index.ts';
import { k8sPsatPlugin } from './k8s_psat/index.ts';
import { oidcPlugin } from './oidc/index.ts';
import { staticKeyPlugin } from './static_key/index.ts';
import { x509PopPlugin } from './x509pop/index.ts';

// biome-ignore lint/suspicious/noExplicitAny: each plugin has its own config type, checked by its schema
export const OPTIONAL_PLUGINS: ReadonlyArray<AttestorPlugin<any>> = [
  staticKeyPlugin,
  x509PopPlugin,
  githubActionsPlugin,
  oidcPlugin,
  k8sPsatPlugin,
];

/**
 * Attestors whose Attestor has `legacy = true` (static shared secrets). The issuance routes log and count
 * each credential they yield (`writ_legacy_issuance_total`); a test keeps this set and the flag in step.
 */
export const LEGACY_ATTESTORS: ReadonlySet<string> = new Set([staticKeyPlugin.name]);
