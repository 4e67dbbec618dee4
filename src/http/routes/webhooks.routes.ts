// Platform webhooks: GitHub tells the broker that a workflow run (or job) completed, and its task ends.
import { createHash } from 'node:crypto';
import express, { type RequestHandler, Router } from 'express';
import type { GithubActionsConfig } from '../../../attestors/github_actions/config.ts';
import {
  interpretWebhook,
  parseWebhookPayload,
  verifyWebhookSignature,
  webhookSecrets,
} from '../../../attestors/github_actions/webhook.ts';
import type { Deps } from '../../deps.ts';
import { isWritError, WritError } from '../../errors.ts';
import { REASON_COMPLETED } from '../../lifecycle/jobs.ts';
import { seconds } from '../../store/types.ts';

/** workflow_run payloads carry whole repository objects: tens of KiB; GitHub caps deliveries at 25 MB. */
const WEBHOOK_BODY_LIMIT = 1024 * 1024;
/** A delivery id is remembered this long; a replay after it only re-ends an ended task (a no-op). */
const DELIVERY_MEMORY = 86_400;
const DELIVERY_ID = /^[A-Za-z0-9-]{1,64}$/;

function githubConfig(deps: Deps): GithubActionsConfig | undefined {
  return deps.config.attestors.github_actions;
}

/** Without the attestor or a secret, the endpoint does not exist (and no body is read). */
function githubWebhookEnabled(deps: Deps): RequestHandler {
  const config = githubConfig(deps);
  const enabled =
    config !== undefined && webhookSecrets(config).length > 0 && deps.attestors.has('github_actions');
  return function githubWebhookEnabledStep(_req, _res, next) {
    next(enabled ? undefined : new WritError('ERR_NOT_FOUND'));
  };
}

/** Checked before anything else is read or written: an unsigned delivery changes nothing. */
function githubSignature(deps: Deps): RequestHandler {
  const config = githubConfig(deps);
  const secrets = config ? webhookSecrets(config) : [];
  return function githubSignatureStep(req, res, next) {
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    if (!verifyWebhookSignature(secrets, body, req.get('x-hub-signature-256'))) {
      deps.logger.warn({ reqId: res.locals.reqId }, 'github webhook with a missing or wrong signature');
      next(new WritError('ERR_WEBHOOK_SIGNATURE_INVALID'));
      return;
    }
    res.locals.rawBody = body;
    next();
  };
}

function githubDelivery(deps: Deps): RequestHandler {
  const endOn = githubConfig(deps)?.webhookEvents ?? [];
  return async function githubDeliveryStep(req, res) {
    const event = req.get('x-github-event');
    const delivery = req.get('x-github-delivery');
    if (delivery === undefined || !DELIVERY_ID.test(delivery)) {
      throw new WritError('invalid_request', 'the X-GitHub-Delivery header is missing or malformed');
    }
    const payload = parseWebhookPayload(req.get('content-type'), res.locals.rawBody as Buffer);
    if (payload === undefined) throw new WritError('invalid_request', 'the delivery is not a JSON payload');
    const outcome = interpretWebhook(event, payload, endOn);
    if (outcome.kind === 'ignored') {
      res.status(202).json({ status: 'ignored' });
      return;
    }
    const deliveryKey = createHash('sha256').update(delivery).digest('base64url');
    const seen = (await deps.store.getEphemeral('github_delivery', deliveryKey)) !== null;
    // Marked only once the task end succeeded: a delivery that failed (5xx) must work when GitHub
    // redelivers it. Ending a task is idempotent, so two concurrent deliveries are harmless.
    if (!seen) {
      await endRunTask(deps, outcome.task);
      await deps.store.putEphemeral(
        'github_delivery',
        deliveryKey,
        '1',
        seconds(deps.clock) + DELIVERY_MEMORY,
      );
    }
    const first = !seen;
    deps.logger.info(
      { reqId: res.locals.reqId, delivery, event, task: outcome.task, duplicate: !first },
      'github webhook: run completed',
    );
    // The same answer whether the task existed, had ended already, or the delivery is a duplicate.
    res.status(202).json({ status: 'accepted' });
  };
}

/** Idempotent: an unknown or already ended task is not an error (deliveries race with issuance). */
async function endRunTask(deps: Deps, task: string): Promise<void> {
  try {
    await deps.lifecycle.endTask(task, 'completed', REASON_COMPLETED, 'platform:github');
  } catch (e) {
    if (isWritError(e) && (e.code === 'ERR_NOT_FOUND' || e.code === 'ERR_TASK_ENDED')) return;
    throw e;
  }
}

/**
 * Mounted before the JSON body parser: the signature covers the exact bytes, so the body is read raw here
 * (size-limited) and parsed only once it has verified.
 */
export function webhooksRoutes(deps: Deps): Router {
  const router = Router();
  router.post(
    '/v1/webhooks/github',
    githubWebhookEnabled(deps),
    express.raw({ type: () => true, limit: WEBHOOK_BODY_LIMIT }),
    githubSignature(deps),
    githubDelivery(deps),
  );
  return router;
}
