// The attestor plugins this build ships, beyond join_token (which is on by default). Each is enabled by
// its section under `attestors.<name>` in the configuration. Add a plugin here and its config schema in
// OPTIONAL_ATTESTOR_CONFIGS; src/attestation/registry.ts does the rest.
import type { AttestorPlugin } from '../src/attestation/types.ts';

// biome-ignore lint/suspicious/noExplicitAny: each plugin has its own config type, checked by its schema
export const OPTIONAL_PLUGINS: ReadonlyArray<AttestorPlugin<any>> = [];
