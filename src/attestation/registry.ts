// The attestor plugins this build knows, and the enabled set built from configuration.
import { joinTokenPlugin } from '../../attestors/join_token/index.ts';
import type { WritConfig } from '../config/schema.ts';
import type { Attestor, AttestorHost } from './types.ts';

export function createAttestors(config: WritConfig, host: AttestorHost): Attestor[] {
  const attestors: Attestor[] = [];
  const jt = config.attestors.join_token;
  if (jt.enabled) attestors.push(joinTokenPlugin.create(jt, host));
  return attestors;
}
