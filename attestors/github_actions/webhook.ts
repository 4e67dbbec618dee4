// GitHub webhook deliveries: signature check over the exact body bytes, and which run task an event ends.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { isTaskId } from '../../src/lifecycle/task-id.ts';
import type { GithubActionsConfig } from './config.ts';
import { githubRunTask } from './index.ts';

const SIGNATURE = /^sha256=([0-9a-f]{64})$/;

export function webhookSecrets(config: GithubActionsConfig): string[] {
  const s = config.webhookSecret;
  if (s === undefined) return [];
  return typeof s === 'string' ? [s] : s;
}

/**
 * `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`, compared in constant time against every
 * configured secret (several during a rotation; all are computed, whichever matches).
 */
export function verifyWebhookSignature(secrets: string[], body: Buffer, header: string | undefined): boolean {
  const match = SIGNATURE.exec(header ?? '');
  if (!match || secrets.length === 0) return false;
  const presented = Buffer.from(match[1]!, 'hex');
  let ok = false;
  for (const secret of secrets) {
    const expected = createHmac('sha256', secret).update(body).digest();
    ok = timingSafeEqual(expected, presented) || ok;
  }
  return ok;
}

const repository = z.looseObject({ full_name: z.string().max(201) });
const positiveInt = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

const workflowRunEvent = z.looseObject({
  action: z.string(),
  workflow_run: z.looseObject({ id: positiveInt, run_attempt: positiveInt }),
  repository,
});

const workflowJobEvent = z.looseObject({
  action: z.string(),
  workflow_job: z.looseObject({ run_id: positiveInt, run_attempt: positiveInt }),
  repository,
});

export type WebhookOutcome = { kind: 'ignored' } | { kind: 'end'; task: string };

const IGNORED: WebhookOutcome = { kind: 'ignored' };

/** The run task a (signature-verified) delivery ends, if any. Unknown events and actions are ignored. */
export function interpretWebhook(
  event: string | undefined,
  payload: unknown,
  endOn: readonly string[],
): WebhookOutcome {
  if (event === undefined || !endOn.includes(event)) return IGNORED;
  let task: string | undefined;
  if (event === 'workflow_run') {
    const p = workflowRunEvent.safeParse(payload);
    if (!p.success || p.data.action !== 'completed') return IGNORED;
    task = githubRunTask(
      p.data.repository.full_name,
      p.data.workflow_run.id,
      p.data.workflow_run.run_attempt,
    );
  } else if (event === 'workflow_job') {
    const p = workflowJobEvent.safeParse(payload);
    if (!p.success || p.data.action !== 'completed') return IGNORED;
    task = githubRunTask(
      p.data.repository.full_name,
      p.data.workflow_job.run_id,
      p.data.workflow_job.run_attempt,
    );
  }
  // A name that cannot be a task id cannot be one of ours.
  return task !== undefined && isTaskId(task) ? { kind: 'end', task } : IGNORED;
}

/**
 * The JSON payload of a delivery: `application/json`, or `application/x-www-form-urlencoded` with the JSON in
 * `payload=` (GitHub offers both). Undefined when the body is neither.
 */
export function parseWebhookPayload(contentType: string | undefined, body: Buffer): unknown {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  let json: string | undefined;
  if (type === 'application/json') json = body.toString('utf8');
  else if (type === 'application/x-www-form-urlencoded') {
    json = new URLSearchParams(body.toString('utf8')).get('payload') ?? undefined;
  }
  if (json === undefined) return undefined;
  try {
    return JSON.parse(json) as unknown;
  } catch {
    return undefined;
  }
}
