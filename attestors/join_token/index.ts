// The join_token attestor: a single-use, expiring secret an admin made for exactly one SPIFFE ID.
import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import {
  AttestationError,
  type AttestationResult,
  type Attestor,
  type AttestorHost,
  type AttestorPlugin,
} from '../../src/attestation/types.ts';
import { WritError } from '../../src/errors.ts';
import { seconds } from '../../src/store/types.ts';
import { type JoinTokenConfig, joinTokenConfigSchema } from './config.ts';

export const NAME = 'join_token';
const TOKEN_PREFIX = 'writ_jt_';
// 32 random bytes, base64url: 43 characters.
const TOKEN_PATTERN = /^writ_jt_[A-Za-z0-9_-]{43}$/;

const evidenceSchema = z.strictObject({ token: z.string().max(256) });

/** The store keeps only this hash, so a leaked store does not leak usable tokens. */
export function hashJoinToken(token: string): string {
  return createHash('sha256').update(token).digest('base64url');
}

export interface CreatedJoinToken {
  token: string;
  expiresAt: number;
}

/** Mints a join token for one SPIFFE ID (the caller validated it and the task id). */
export async function createJoinToken(
  host: Pick<AttestorHost, 'store' | 'clock'>,
  config: JoinTokenConfig,
  req: { spiffeId: string; ttl?: number | undefined; task?: string | undefined },
): Promise<CreatedJoinToken> {
  const ttl = req.ttl ?? config.defaultTtl;
  if (ttl > config.maxTtl) {
    throw new WritError('ERR_TTL_INVALID', `a join token may live at most ${config.maxTtl} seconds`);
  }
  const token = `${TOKEN_PREFIX}${randomBytes(32).toString('base64url')}`;
  const now = seconds(host.clock);
  const expiresAt = now + ttl;
  await host.store.putJoinToken(hashJoinToken(token), {
    spiffeId: req.spiffeId,
    task: req.task,
    createdAt: now,
    expiresAt,
  });
  return { token, expiresAt };
}

class JoinTokenAttestor implements Attestor {
  readonly name = NAME;
  readonly legacy = false;
  // Tasks come from the admin who made the token: any platform namespace.
  readonly taskNamespace = '*';
  readonly #host: AttestorHost;

  constructor(host: AttestorHost) {
    this.#host = host;
  }

  async attest(evidence: unknown): Promise<AttestationResult> {
    const parsed = evidenceSchema.safeParse(evidence);
    if (!parsed.success) throw new AttestationError('evidence must be {"token": "<join token>"}');
    const { token } = parsed.data;
    // A malformed token cannot exist in the store; refusing it early saves a round trip.
    if (!TOKEN_PATTERN.test(token)) throw new AttestationError('the join token is invalid, used or expired');
    const record = await this.#host.store.consumeJoinToken(hashJoinToken(token));
    // One message for unknown, used and expired tokens: the caller learns nothing about which.
    if (!record || record.expiresAt <= seconds(this.#host.clock)) {
      throw new AttestationError('the join token is invalid, used or expired');
    }
    return {
      selectors: [`${NAME}:spiffe_id:${record.spiffeId}`],
      spiffeId: record.spiffeId,
      task: record.task,
      expiresAt: record.expiresAt,
    };
  }
}

export const joinTokenPlugin: AttestorPlugin<JoinTokenConfig> = {
  name: NAME,
  configSchema: joinTokenConfigSchema,
  create: (_config, host) => new JoinTokenAttestor(host),
};
