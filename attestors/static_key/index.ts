// The static_key attestor (legacy): a pre-shared API key, checked against configured SHA-256 hashes.
import { createHash, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import {
  AttestationError,
  type AttestationResult,
  type Attestor,
  type AttestorPlugin,
} from '../../src/attestation/types.ts';
import { digestBytes, NAME, type StaticKeyConfig, staticKeyConfigSchema } from './config.ts';

export { NAME } from './config.ts';

const evidenceSchema = z.strictObject({ key: z.string().min(1).max(1024) });

interface KeySlot {
  id: string;
  digest: Buffer;
  selectors: string[];
  ttlCap: number;
}

/** SHA-256 of a presented key: what the configuration holds, and what is compared. */
export function hashStaticKey(key: string): Buffer {
  return createHash('sha256').update(key, 'utf8').digest();
}

class StaticKeyAttestor implements Attestor {
  readonly name = NAME;
  // Every credential it yields is marked legacy, so that policy and operators can fence static secrets.
  readonly legacy = true;
  // It defines no tasks; the caller names one or the broker generates one.
  readonly taskNamespace = NAME;
  readonly #slots: KeySlot[];

  constructor(config: StaticKeyConfig) {
    this.#slots = config.keys.map((k) => ({
      id: k.id,
      // The schema checked every digest; a bad one would have stopped the broker at start.
      digest: digestBytes(k.sha256) as Buffer,
      selectors: [
        `${NAME}:id:${k.id}`,
        ...Object.entries(k.selectors ?? {}).map(([key, value]) => `${NAME}:${key}:${value}`),
      ],
      ttlCap: Math.min(k.ttlCap ?? config.ttlCap, config.ttlCap),
    }));
  }

  async attest(evidence: unknown): Promise<AttestationResult> {
    const parsed = evidenceSchema.safeParse(evidence);
    if (!parsed.success) throw new AttestationError('evidence must be {"key": "<static key>"}');
    const slot = this.#match(hashStaticKey(parsed.data.key));
    if (!slot) throw new AttestationError('the key is not accepted');
    return { selectors: [...slot.selectors], posture: { legacy: true }, ttlCap: slot.ttlCap };
  }

  /**
   * Compares the digest with every configured one in constant time and never stops early, so the time
   * taken tells nothing about which key matched, or how many were tried before it.
   */
  #match(digest: Buffer): KeySlot | undefined {
    let found: KeySlot | undefined;
    for (const slot of this.#slots) {
      const equal = timingSafeEqual(digest, slot.digest);
      found = equal ? slot : found;
    }
    return found;
  }
}

export const staticKeyPlugin: AttestorPlugin<StaticKeyConfig> = {
  name: NAME,
  configSchema: staticKeyConfigSchema,
  create: (config) => new StaticKeyAttestor(config),
};
