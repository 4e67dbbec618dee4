// What the relying party knows is revoked: credential ids and ended tasks, each until it would expire anyway.
import { z } from 'zod';

// Bounded like the broker's own ids, so a forged feed cannot pin large strings in memory.
const credentialId = z.string().min(1).max(128);
const taskId = z.string().min(1).max(200);
const common = {
  id: z.string().min(1).max(64),
  task: taskId,
  expiresAt: z.number().int().nonnegative(),
  reason: z.string(),
  revokedAt: z.number().int().nonnegative(),
};

/** A `revocation` event of the broker's feed, as the wire must carry it (extra fields are dropped). */
export const revocationEventSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('credential'),
    credential: credentialId,
    credentialType: z.enum(['jwt', 'x509']).optional(),
    ...common,
  }),
  z.object({
    kind: z.literal('task'),
    credential: credentialId.optional(),
    credentialType: z.enum(['jwt', 'x509']).optional(),
    ...common,
  }),
]);

export type RevocationEvent = z.infer<typeof revocationEventSchema>;

/** The longest a Writ credential may live (the broker's hard cap), seconds. */
export const MAX_CREDENTIAL_LIFETIME = 86_400;

/**
 * Two maps from id to the epoch second after which the entry no longer matters (every credential it
 * covers has expired by then). Lookups are O(1) and synchronous so that they cost nothing beside a
 * signature check.
 */
export class RevocationSet {
  readonly #credentials = new Map<string, number>();
  readonly #tasks = new Map<string, number>();

  /**
   * Records an event. A later event for the same id can only extend how long it is kept. No entry is kept
   * longer than a JWT-SVID can live (24 h) after it arrived, whatever the event claims: a forged or broken
   * feed cannot pin memory forever (and the verifier refuses tokens that live longer than that).
   */
  apply(event: RevocationEvent, nowSeconds: number = Math.floor(Date.now() / 1000)): void {
    const map = event.kind === 'task' ? this.#tasks : this.#credentials;
    const key = event.kind === 'task' ? event.task : event.credential;
    const keepUntil = Math.min(event.expiresAt, nowSeconds + MAX_CREDENTIAL_LIFETIME + 300);
    const known = map.get(key);
    if (known === undefined || known < keepUntil) map.set(key, keepUntil);
  }

  /** True when the credential `id` (a jti or an X.509 serial in hex) was revoked. */
  hasCredential(id: string): boolean {
    return this.#credentials.has(id);
  }

  /** True when the task has ended, which revokes every credential whose `task` claim names it. */
  hasTask(task: string): boolean {
    return this.#tasks.has(task);
  }

  /**
   * Drops the entries whose `expiresAt` is before `before` (epoch seconds). Callers pass now minus the
   * clock tolerance, so an entry stays while a token it covers could still be accepted.
   */
  prune(before: number): number {
    let dropped = 0;
    for (const map of [this.#credentials, this.#tasks]) {
      for (const [key, expiresAt] of map) {
        if (expiresAt < before) {
          map.delete(key);
          dropped++;
        }
      }
    }
    return dropped;
  }

  get credentialCount(): number {
    return this.#credentials.size;
  }

  get taskCount(): number {
    return this.#tasks.size;
  }
}
