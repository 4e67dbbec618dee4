// The attestor plugins this build knows, and the enabled set built from configuration.

import { joinTokenPlugin } from '../../attestors/join_token/index.ts';
import { OPTIONAL_PLUGINS } from '../../attestors/plugins.ts';
import type { WritConfig } from '../config/schema.ts';
import type { Attestor, AttestorHost } from './types.ts';

export function createAttestors(config: WritConfig, host: AttestorHost): Attestor[] {
  const attestors: Attestor[] = [];
  const jt = config.attestors.join_token;
  if (jt.enabled) attestors.push(joinTokenPlugin.create(jt, host));
  const sections = config.attestors as unknown as Record<string, unknown>;
  for (const plugin of OPTIONAL_PLUGINS) {
    const section = sections[plugin.name];
    // The section was validated by the plugin's schema as part of the configuration.
    if (section !== undefined) attestors.push(plugin.create(section, host));
  }
  return attestors;
}
