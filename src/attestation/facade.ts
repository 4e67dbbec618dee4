// The core's wrapper around every attestor plugin: timeout, error mapping, and validation of what it returns.
import type { Logger } from 'pino';
import { z } from 'zod';
import { isWritError, WritError } from '../errors.ts';
import { isTaskId, PLATFORM_TASK_PATTERN } from '../lifecycle/task-id.ts';
import { isMemberOf, isTrustDomainId, validateSpiffeId } from '../spiffe/spiffe-id.ts';
import { SELECTOR_PATTERN } from './selectors.ts';
import { AttestationError, type AttestationResult, type Attestor, type PostureValue } from './types.ts';

export interface VerifiedAttestation {
  attestor: string;
  legacy: boolean;
  selectors: string[];
  task?: string | undefined;
  spiffeId?: string | undefined;
  posture: Record<string, PostureValue>;
  expiresAt?: number | undefined;
  ttlCap?: number | undefined;
}

const MAX_SELECTORS = 128;

const resultSchema = z.strictObject({
  selectors: z.array(z.string().max(2200).regex(SELECTOR_PATTERN)).max(MAX_SELECTORS),
  task: z.string().optional(),
  spiffeId: z.string().optional(),
  posture: z
    .record(
      z.string().regex(/^[a-z][a-z0-9_]{0,63}$/),
      z.union([z.string().max(256), z.number(), z.boolean()]),
    )
    .optional(),
  expiresAt: z.number().int().positive().optional(),
  ttlCap: z.number().int().min(1).max(86_400).optional(),
});

export class AttestorFacade {
  readonly #attestors: Map<string, Attestor>;
  readonly #timeoutMs: number;
  readonly #trustDomain: string;
  readonly #logger: Logger;

  constructor(opts: { attestors: Attestor[]; timeoutMs: number; trustDomain: string; logger: Logger }) {
    this.#attestors = new Map(opts.attestors.map((a) => [a.name, a]));
    this.#timeoutMs = opts.timeoutMs;
    this.#trustDomain = opts.trustDomain;
    this.#logger = opts.logger;
  }

  names(): string[] {
    return [...this.#attestors.keys()];
  }

  has(name: string): boolean {
    return this.#attestors.has(name);
  }

  async attest(name: string, evidence: unknown, sourceIp?: string): Promise<VerifiedAttestation> {
    const attestor = this.#attestors.get(name);
    if (!attestor)
      throw new WritError('ERR_ATTESTOR_UNKNOWN', `no attestor named "${name.slice(0, 64)}" is enabled`);

    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new WritError('ERR_ATTESTOR_UNAVAILABLE', `${name}: attestation timed out`));
      }, this.#timeoutMs);
    });
    let raw: AttestationResult;
    try {
      raw = await Promise.race([attestor.attest(evidence, { signal: controller.signal, sourceIp }), timeout]);
    } catch (e) {
      if (e instanceof AttestationError) {
        throw new WritError('ERR_ATTESTATION_FAILED', `${name}: ${e.reason}`);
      }
      if (isWritError(e)) throw e;
      this.#logger.error({ err: e, attestor: name }, 'attestor failed unexpectedly');
      throw new WritError('ERR_ATTESTATION_FAILED', `${name}: attestation failed`);
    } finally {
      clearTimeout(timer);
    }
    return this.#validate(attestor, raw);
  }

  /** Trust nothing a plugin returns: shape, selector prefixes, task id and identity are all checked. */
  #validate(attestor: Attestor, raw: unknown): VerifiedAttestation {
    const invalid = (why: string): never => {
      this.#logger.error({ attestor: attestor.name, why }, 'attestor returned an invalid result');
      throw new WritError('ERR_ATTESTATION_FAILED', `${attestor.name}: attestation failed`);
    };
    const parsed = resultSchema.safeParse(raw);
    if (!parsed.success) return invalid(parsed.error.issues[0]?.message ?? 'bad shape');
    const result = parsed.data;
    const prefix = `${attestor.name}:`;
    for (const s of result.selectors) {
      if (!s.startsWith(prefix)) invalid(`selector outside the plugin's namespace: ${s.slice(0, 64)}`);
    }
    if (result.task !== undefined) {
      if (!isTaskId(result.task) || !PLATFORM_TASK_PATTERN.test(result.task)) invalid('invalid task id');
      const ns = attestor.taskNamespace;
      if (ns !== '*' && !result.task.startsWith(`${ns}:`))
        invalid(`task outside the plugin's namespace ${ns}:`);
    }
    if (result.spiffeId !== undefined) {
      const why = validateSpiffeId(result.spiffeId);
      if (why) invalid(`invalid SPIFFE ID: ${why}`);
      if (!isMemberOf(result.spiffeId, this.#trustDomain)) invalid('SPIFFE ID outside the trust domain');
      if (isTrustDomainId(result.spiffeId)) invalid('the trust domain ID is not a workload ID');
    }
    return {
      attestor: attestor.name,
      legacy: attestor.legacy,
      selectors: [...new Set(result.selectors)],
      task: result.task,
      spiffeId: result.spiffeId,
      posture: { ...(result.posture ?? {}) },
      expiresAt: result.expiresAt,
      ttlCap: result.ttlCap,
    };
  }
}
