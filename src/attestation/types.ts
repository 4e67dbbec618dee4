// The attestor plugin contract: evidence in, verified selectors (and optionally a task and identity) out.
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Clock, CredentialStore } from '../store/types.ts';

export type PostureValue = string | number | boolean;

export interface AttestationContext {
  /** Aborted when the facade's timeout passes; long-running plugins should honour it. */
  signal: AbortSignal;
  /** The caller's network address, as the HTTP layer determined it. */
  sourceIp?: string | undefined;
}

export interface AttestationResult {
  /** Verified selectors, each `<attestor>:<key>:<value>` with this attestor's own name as prefix. */
  selectors: string[];
  /** A task the platform defines (a CI run, a pod); credentials of the same task end together. */
  task?: string | undefined;
  /** An identity the evidence binds directly (a join token is made for one SPIFFE ID). */
  spiffeId?: string | undefined;
  /** Posture facts about the workload, for policy. */
  posture?: Record<string, PostureValue> | undefined;
  /** The evidence's own expiry (epoch seconds), when it has one. */
  expiresAt?: number | undefined;
  /** A cap (seconds) on the lifetime of any credential this evidence yields (legacy attestors set one). */
  ttlCap?: number | undefined;
}

export interface Attestor {
  readonly name: string;
  /** Legacy attestors (static shared secrets) mark every credential they yield. */
  readonly legacy: boolean;
  /**
   * The namespace of the task ids this attestor defines (`github` for `github:...`); '*' when the task ids
   * come from an admin (join tokens), which may name any platform namespace.
   */
  readonly taskNamespace: string;
  attest(evidence: unknown, ctx: AttestationContext): Promise<AttestationResult>;
}

/** What the broker lends a plugin. */
export interface AttestorHost {
  store: CredentialStore;
  clock: Clock;
  logger: Logger;
  trustDomain: string;
  /** The broker's issuer URL (`iss` of its JWT-SVIDs), e.g. the default audience of Kubernetes tokens. */
  issuer?: string | undefined;
}

export interface AttestorPlugin<C> {
  readonly name: string;
  readonly configSchema: z.ZodType<C>;
  create(config: C, host: AttestorHost): Attestor;
}

/** Thrown by a plugin when evidence does not verify. `reason` is shown to the caller: keep it free of secrets. */
export class AttestationError extends Error {
  readonly reason: string;
  constructor(reason: string, options?: { cause?: unknown }) {
    super(reason, options);
    this.name = 'AttestationError';
    this.reason = reason;
  }
}
