// The GitHub webhook: signature over the exact bytes, which events end which run task, and what never changes.
import { createHmac, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker, type TestResponse } from '../../test/helpers/broker.ts';
import { FakeOidcIssuer, githubClaims } from '../../test/helpers/oidc-issuer.ts';
import { introspectActive } from '../../test/helpers/workload.ts';
import { interpretWebhook, parseWebhookPayload, verifyWebhookSignature } from './webhook.ts';

const TD = 'example.org';
const AUD = 'https://writ.example';
const SECRET = 'whsec-test-0123456789abcdef';
const ID = `spiffe://${TD}/ci/acme/api`;

const sign = (secret: string, body: string | Buffer) =>
  `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;

function runCompleted(runId: number, attempt = 1, repo = 'acme/api', action = 'completed') {
  return {
    action,
    workflow_run: { id: runId, run_attempt: attempt, name: 'deploy', status: action, conclusion: 'success' },
    repository: { id: 2002, full_name: repo, private: true },
    sender: { login: 'octocat' },
  };
}

function jobCompleted(runId: number, attempt = 1, repo = 'acme/api') {
  return {
    action: 'completed',
    workflow_job: { id: 77, run_id: runId, run_attempt: attempt, status: 'completed' },
    repository: { full_name: repo },
  };
}

describe('webhook signature and payload (unit)', () => {
  const body = Buffer.from('{"zen":"Keep it logically awesome."}');

  it('accepts exactly sha256=<hex HMAC of the bytes> under any configured secret', () => {
    expect(verifyWebhookSignature([SECRET], body, sign(SECRET, body))).toBe(true);
    expect(verifyWebhookSignature(['old-secret-0123456789', SECRET], body, sign(SECRET, body))).toBe(true);
    expect(verifyWebhookSignature([SECRET], Buffer.from(`${body} `), sign(SECRET, body))).toBe(false);
    expect(verifyWebhookSignature([SECRET], body, sign('another-secret-0123', body))).toBe(false);
    expect(verifyWebhookSignature([SECRET], body, sign(SECRET, body).toUpperCase())).toBe(false);
    expect(verifyWebhookSignature([SECRET], body, sign(SECRET, body).replace('sha256=', 'sha1='))).toBe(
      false,
    );
    expect(verifyWebhookSignature([SECRET], body, undefined)).toBe(false);
    expect(verifyWebhookSignature([], body, sign(SECRET, body))).toBe(false);
  });

  it('maps completed workflow_run and workflow_job events to the run task, and ignores the rest', () => {
    const both = ['workflow_run', 'workflow_job'];
    expect(interpretWebhook('workflow_run', runCompleted(42, 2), both)).toEqual({
      kind: 'end',
      task: 'github:acme/api/42/2',
    });
    expect(interpretWebhook('workflow_job', jobCompleted(42), both)).toEqual({
      kind: 'end',
      task: 'github:acme/api/42/1',
    });
    expect(interpretWebhook('workflow_job', jobCompleted(42), ['workflow_run'])).toEqual({ kind: 'ignored' });
    expect(interpretWebhook('workflow_run', runCompleted(42, 1, 'acme/api', 'requested'), both).kind).toBe(
      'ignored',
    );
    expect(interpretWebhook('push', runCompleted(42), both).kind).toBe('ignored');
    expect(interpretWebhook(undefined, runCompleted(42), both).kind).toBe('ignored');
    expect(interpretWebhook('workflow_run', { action: 'completed' }, both).kind).toBe('ignored');
    expect(interpretWebhook('workflow_run', runCompleted(42, 1, 'acme/{bad}'), both).kind).toBe('ignored');
  });

  it('reads JSON and form-encoded deliveries', () => {
    const json = JSON.stringify(runCompleted(1));
    expect(parseWebhookPayload('application/json', Buffer.from(json))).toEqual(runCompleted(1));
    const form = `payload=${encodeURIComponent(json)}`;
    expect(parseWebhookPayload('application/x-www-form-urlencoded', Buffer.from(form))).toEqual(
      runCompleted(1),
    );
    expect(parseWebhookPayload('text/plain', Buffer.from(json))).toBeUndefined();
    expect(parseWebhookPayload('application/json', Buffer.from('{'))).toBeUndefined();
  });
});

describe('POST /v1/webhooks/github', () => {
  let gh: FakeOidcIssuer;
  let b: TestBroker;
  let runs = 5000;

  beforeAll(async () => {
    gh = await FakeOidcIssuer.start();
    b = await startTestBroker({
      config: {
        trustDomain: TD,
        attestors: {
          github_actions: { issuer: gh.issuer, jwksUri: gh.jwksUri, audience: AUD, webhookSecret: SECRET },
        },
      },
    });
    await b.admin('POST', '/v1/admin/entries', {
      spiffeId: ID,
      selectors: ['github_actions:repository:acme/api'],
    });
  });
  afterAll(async () => {
    await b?.close();
    await gh?.close();
  });

  /** A credential of a fresh run; returns its token and the run id. */
  async function credentialOfRun(): Promise<{ token: string; runId: number; task: string }> {
    const runId = ++runs;
    const res = await b.request('POST', '/v1/svid/jwt', {
      body: {
        attestor: 'github_actions',
        evidence: { token: await gh.mint(githubClaims(AUD, { run_id: String(runId) })) },
        audience: ['https://api.example'],
      },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return { token: res.body.token, runId, task: res.body.task };
  }

  function deliver(
    event: string,
    payload: unknown,
    opts: {
      secret?: string;
      signature?: string | null;
      delivery?: string;
      contentType?: string;
      raw?: string;
    } = {},
  ): Promise<TestResponse> {
    const raw = opts.raw ?? JSON.stringify(payload);
    const headers: Record<string, string> = {
      'content-type': opts.contentType ?? 'application/json',
      'x-github-event': event,
      'x-github-delivery': opts.delivery ?? randomUUID(),
    };
    if (opts.signature !== null)
      headers['x-hub-signature-256'] = opts.signature ?? sign(opts.secret ?? SECRET, raw);
    return b.request('POST', '/v1/webhooks/github', { raw, headers });
  }

  const taskOf = async (task: string) =>
    (await b.admin('GET', `/v1/admin/tasks/${encodeURIComponent(task)}`)).body;

  it('ends the run task on workflow_run completed: every credential of the run reads inactive', async () => {
    const { token, runId, task } = await credentialOfRun();
    const res = await deliver('workflow_run', runCompleted(runId));
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ status: 'accepted' });
    expect(await introspectActive(b, token)).toBe(false);
    expect(await taskOf(task)).toMatchObject({ status: 'completed', endReason: 'task_completed' });
  });

  it('ends the run task on workflow_job completed, and reads a form-encoded delivery', async () => {
    const { token, runId } = await credentialOfRun();
    const raw = `payload=${encodeURIComponent(JSON.stringify(jobCompleted(runId)))}`;
    const res = await deliver('workflow_job', undefined, {
      raw,
      contentType: 'application/x-www-form-urlencoded',
    });
    expect(res.status).toBe(202);
    expect(await introspectActive(b, token)).toBe(false);
  });

  it('changes nothing on a bad, missing or foreign signature (401 ERR_WEBHOOK_SIGNATURE_INVALID)', async () => {
    const { token, runId, task } = await credentialOfRun();
    const feedBefore = (await b.request('GET', '/v1/revocations?limit=1000')).body.cursor;
    const payload = runCompleted(runId);
    const raw = JSON.stringify(payload);
    const attempts = [
      deliver('workflow_run', payload, { secret: 'not-the-secret-0123456789' }),
      deliver('workflow_run', payload, { signature: null }),
      deliver('workflow_run', payload, { signature: sign(SECRET, raw).slice(0, -2) }),
      // Signed bytes differ from the bytes sent (whitespace): the exact body is what counts.
      deliver('workflow_run', payload, { raw: `${raw} `, signature: sign(SECRET, raw) }),
      deliver('workflow_run', payload, {
        signature: `sha1=${createHmac('sha1', SECRET).update(raw).digest('hex')}`,
      }),
    ];
    for (const res of await Promise.all(attempts)) {
      expect(res.status).toBe(401);
      expect(res.body.error).toBe('ERR_WEBHOOK_SIGNATURE_INVALID');
    }
    expect(await introspectActive(b, token)).toBe(true);
    expect(await taskOf(task)).toMatchObject({ status: 'active' });
    expect((await b.request('GET', '/v1/revocations?limit=1000')).body.cursor).toBe(feedBefore);
  });

  it('ignores other events and actions (202), and gives one answer for unknown, ended and duplicate runs', async () => {
    const { token, runId } = await credentialOfRun();
    for (const [event, payload] of [
      ['ping', { zen: 'hi', hook_id: 1 }],
      ['push', { ref: 'refs/heads/main' }],
      ['workflow_run', runCompleted(runId, 1, 'acme/api', 'in_progress')],
      ['workflow_run', runCompleted(runId, 2)], // another attempt of the run
    ] as const) {
      const res = await deliver(event, payload);
      expect(res.status).toBe(202);
    }
    expect(await introspectActive(b, token)).toBe(true);

    const unknown = await deliver('workflow_run', runCompleted(999_999_999));
    expect(unknown.status).toBe(202);
    expect(unknown.body).toEqual({ status: 'accepted' });

    const delivery = randomUUID();
    const first = await deliver('workflow_run', runCompleted(runId), { delivery });
    const duplicate = await deliver('workflow_run', runCompleted(runId), { delivery });
    const ended = await deliver('workflow_run', runCompleted(runId));
    for (const res of [first, duplicate, ended])
      expect([res.status, res.body]).toEqual([202, { status: 'accepted' }]);
    expect(await introspectActive(b, token)).toBe(false);
  });

  it('refuses a signed delivery without a delivery id or with a body that is not JSON (400)', async () => {
    const noId = await b.request('POST', '/v1/webhooks/github', {
      raw: '{}',
      headers: {
        'content-type': 'application/json',
        'x-github-event': 'workflow_run',
        'x-hub-signature-256': sign(SECRET, '{}'),
      },
    });
    expect(noId.status).toBe(400);
    const notJson = await deliver('workflow_run', undefined, { raw: 'not json', contentType: 'text/plain' });
    expect(notJson.status).toBe(400);
    expect(notJson.body.error).toBe('invalid_request');
  });

  it('refuses a body over the limit with 413 before checking anything', async () => {
    const raw = JSON.stringify({ ...runCompleted(1), pad: 'x'.repeat(1024 * 1024) });
    const res = await deliver('workflow_run', undefined, { raw });
    expect(res.status).toBe(413);
    expect(res.body.error).toBe('ERR_BODY_TOO_LARGE');
  });

  it('does not exist without a webhook secret', async () => {
    const other = await startTestBroker({
      config: { attestors: { github_actions: { issuer: gh.issuer, audience: AUD } } },
    });
    try {
      const res = await other.request('POST', '/v1/webhooks/github', {
        body: runCompleted(1),
        headers: { 'x-github-event': 'workflow_run', 'x-hub-signature-256': sign(SECRET, '{}') },
      });
      expect(res.status).toBe(404);
      expect(res.body.error).toBe('ERR_NOT_FOUND');
    } finally {
      await other.close();
    }
  });
});
