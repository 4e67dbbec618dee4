// What the relying party knows is revoked: credential ids and ended tasks, each until it would expire anyway.
import { z } from 'zod';

const nonEmpty = z.string().min(1);
const common = {
  id: nonEmpty,
  task: nonEmpty,
  expiresAt: z.number().int().nonnegative(),
  reason: z.string(),
  revokedAt: z.number().int().nonnegative(),
};

/** A `revocation` event of the broker's feed, as the wire must carry it (extra fields are dropped). */
export const revocationEventSchema = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('credential'),
    credential: nonEmpty,
    credentialType: z.enum(['jwt', 'x509']).optional(),
    ...common,
  }),
  z.object({
    kind: z.literal('task'),
    credential: nonEmpty.optional(),
    credentialType: z.enum(['jwt', 'x509']).optional(),
    ...common,
  }),
]);

export type RevocationEvent = z.infer<typeof revocationEventSchema>;

/**
 * Two maps from id to the epoch second after which the entry no longer matters (every credential it
 * covers has expired by then). Lookups are O(1) and synchronous so that they cost nothing beside a
 * signature check.
 */
export class RevocationSet {
  readonly #credentials = new Map<string, number>();
  readonly #tasks = new Map<string, number>();

  /** Records an event. A later event for the same id can only extend how long it is kept. */
  apply(event: RevocationEvent): void {
    const map = event.kind === 'task' ? this.#tasks : this.#credentials;
    const key = event.kind === 'task' ? event.task : event.credential;
    const known = map.get(key);
    if (known === undefined || known < event.expiresAt) map.set(key, event.expiresAt);
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
