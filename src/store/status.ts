// The derived status of a credential, one definition for both store adapters and the HTTP layer.
import type { CredentialStatus, CredentialView } from './types.ts';

/**
 * What a credential is worth at `now` (epoch seconds):
 * - `revoked`: it was revoked on its own (revokedAt set), or its task ended as completed or revoked (a task's
 *   end revokes every credential of it at once, before the fan-out has marked them one by one);
 * - `expired`: not revoked, and its expiry has passed (expiresAt <= now) or its task expired (ended with
 *   status expired, or still stored active past its deadline: the task view's status is derived already);
 * - `active` otherwise.
 */
export function credentialStatus(view: CredentialView, now: number): CredentialStatus {
  const taskStatus = view.task?.status;
  if (view.credential.revokedAt !== undefined || taskStatus === 'completed' || taskStatus === 'revoked') {
    return 'revoked';
  }
  if (view.credential.expiresAt <= now || taskStatus === 'expired') return 'expired';
  // A task view read through a store is derived already; derive again for views built by hand.
  if (view.task !== null && view.task.status === 'active' && now >= view.task.deadline) return 'expired';
  return 'active';
}
