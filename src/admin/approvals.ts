// Approvals: issuance a policy marks `@approval("required")` waits for an admin's decision (given with MFA);
// the workload repeats its request naming the approval and gets the credential once.
import { createHash, randomBytes } from 'node:crypto';
import { z } from 'zod';
import { WritError } from '../errors.ts';
import { type Clock, type CredentialStore, seconds } from '../store/types.ts';

export const APPROVAL_ID = /^apr_[A-Za-z0-9_-]{22}$/;

const recordSchema = z.strictObject({
  id: z.string().regex(APPROVAL_ID),
  status: z.enum(['pending', 'approved', 'denied']),
  fingerprint: z.string(),
  spiffeId: z.string(),
  attestor: z.string(),
  audience: z.array(z.string()),
  credentialType: z.enum(['jwt', 'x509']),
  policies: z.array(z.string()),
  createdAt: z.number().int(),
  expiresAt: z.number().int(),
  decidedBy: z.string().optional(),
  decidedAt: z.number().int().optional(),
});

export type ApprovalRecord = z.output<typeof recordSchema>;

/** What must be the same when the workload comes back: the identity and what it asks for. */
export function approvalFingerprint(req: {
  attestor: string;
  spiffeId: string;
  audience: readonly string[];
  credentialType: 'jwt' | 'x509';
  ttl?: number | undefined;
  task?: string | undefined;
}): string {
  const canonical = JSON.stringify([
    req.attestor,
    req.spiffeId,
    [...req.audience].sort(),
    req.credentialType,
    req.ttl ?? null,
    req.task ?? null,
  ]);
  return createHash('sha256').update(canonical).digest('base64url');
}

export type Redemption = { outcome: 'issue' } | { outcome: 'pending' | 'denied'; record: ApprovalRecord };

export class Approvals {
  readonly #store: CredentialStore;
  readonly #clock: Clock;
  readonly #ttl: number;

  constructor(opts: { store: CredentialStore; clock: Clock; ttlSeconds: number }) {
    this.#store = opts.store;
    this.#clock = opts.clock;
    this.#ttl = opts.ttlSeconds;
  }

  async request(
    input: Omit<ApprovalRecord, 'id' | 'status' | 'createdAt' | 'expiresAt'>,
  ): Promise<ApprovalRecord> {
    const now = seconds(this.#clock);
    const record: ApprovalRecord = {
      ...input,
      id: `apr_${randomBytes(16).toString('base64url')}`,
      status: 'pending',
      createdAt: now,
      expiresAt: now + this.#ttl,
    };
    await this.#store.putEphemeral('approval', record.id, JSON.stringify(record), record.expiresAt);
    return record;
  }

  async get(id: string): Promise<ApprovalRecord | null> {
    return (await this.#read(id))?.record ?? null;
  }

  async #read(id: string): Promise<{ record: ApprovalRecord; json: string } | null> {
    if (!APPROVAL_ID.test(id)) return null;
    const json = await this.#store.getEphemeral('approval', id);
    if (json === null) return null;
    const parsed = recordSchema.safeParse(JSON.parse(json));
    if (!parsed.success) throw new WritError('server_error', undefined, { cause: parsed.error });
    return { record: parsed.data, json };
  }

  /** An admin's decision, once; a decided or expired approval cannot be decided again. */
  async decide(id: string, approve: boolean, by: string): Promise<ApprovalRecord> {
    const read = await this.#read(id);
    if (!read) throw new WritError('ERR_NOT_FOUND', 'no such approval (or it expired)');
    const { record, json } = read;
    if (record.status !== 'pending') throw new WritError('ERR_APPROVAL_DECIDED');
    const decided: ApprovalRecord = {
      ...record,
      status: approve ? 'approved' : 'denied',
      decidedBy: by,
      decidedAt: seconds(this.#clock),
    };
    // One decision wins: the record moves from pending to decided by compare-and-set (two admins, or two
    // replicas, cannot both decide). The grant is written only by the winner of an approve, and is a separate
    // key so that redeeming it is one atomic take: the credential is issued once.
    const won = await this.#store.swapEphemeral(
      'approval',
      id,
      json,
      JSON.stringify(decided),
      record.expiresAt,
    );
    if (!won) throw new WritError('ERR_APPROVAL_DECIDED');
    if (approve) await this.#store.putEphemeral('approval_grant', id, record.fingerprint, record.expiresAt);
    return decided;
  }

  /** The workload's repeat request: issue once if approved and the request is the same one. */
  async redeem(id: string, fingerprint: string): Promise<Redemption> {
    const record = await this.get(id);
    if (!record || record.fingerprint !== fingerprint) {
      throw new WritError('ERR_APPROVAL_INVALID');
    }
    if (record.status !== 'approved') return { outcome: record.status, record };
    const grant = await this.#store.takeEphemeral('approval_grant', id);
    if (grant !== fingerprint) throw new WritError('ERR_APPROVAL_INVALID', 'the approval was already used');
    return { outcome: 'issue' };
  }
}
